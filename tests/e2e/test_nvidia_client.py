"""NVIDIA's own client (riva.client.ASRService) works against fake_riva unchanged."""

from __future__ import annotations

import grpc
import pytest
import riva.client
from riva.client.proto import riva_asr_pb2 as asr

from fake_riva import FakeRiva


def streaming_config(**custom: str) -> riva.client.StreamingRecognitionConfig:
    return riva.client.StreamingRecognitionConfig(
        config=riva.client.RecognitionConfig(
            encoding=riva.client.AudioEncoding.LINEAR_PCM,
            sample_rate_hertz=16000,
            language_code="en-US",
            enable_word_time_offsets=True,
            custom_configuration=custom,
        ),
        interim_results=True,
    )


def test_streaming_recognize_with_nvidia_client(fake_riva: FakeRiva) -> None:
    service = riva.client.ASRService(riva.client.Auth(uri=fake_riva.target))
    chunks = [bytes(3200)] * 8
    config = streaming_config(**{"fake.transcript": "hello there|general kenobi"})
    results = [r for response in service.streaming_response_generator(chunks, config) for r in response.results]
    finals = [r.alternatives[0].transcript for r in results if r.is_final]
    assert finals == ["hello there", "general kenobi"]
    assert any(not r.is_final for r in results)
    last = results[-1]
    assert [(w.word, w.start_time, w.end_time) for w in last.alternatives[0].words] == [
        ("general", 400, 600),
        ("kenobi", 600, 800),
    ]
    assert last.audio_processed == pytest.approx(0.8)


def test_offline_recognize_and_model_listing(fake_riva: FakeRiva) -> None:
    service = riva.client.ASRService(riva.client.Auth(uri=fake_riva.target))
    config = streaming_config(**{"fake.transcript": "offline works"}).config
    response = service.offline_recognize(bytes(16000), config)
    assert [r.alternatives[0].transcript for r in response.results] == ["offline works"]
    models = service.stub.GetRivaSpeechRecognitionConfig(asr.RivaSpeechRecognitionConfigRequest())
    by_name = {m.model_name: dict(m.parameters) for m in models.model_config}
    assert by_name["conformer-en-US-asr-streaming"]["type"] == "online"
    assert by_name["conformer-en-US-asr-streaming"]["language_code"] == "en-US"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"language_code": "xx-XX"}, "language_code=xx-XX"),
        ({"model": "no-such-model"}, "model=no-such-model"),
        ({"sample_rate_hertz": 1000}, "sample_rate_hertz=1000"),
        ({"encoding": riva.client.AudioEncoding.OGGOPUS}, "OGGOPUS"),
    ],
)
def test_bad_configs_get_invalid_argument(fake_riva: FakeRiva, change: dict[str, object], message: str) -> None:
    service = riva.client.ASRService(riva.client.Auth(uri=fake_riva.target))
    config = streaming_config()
    for key, value in change.items():
        setattr(config.config, key, value)
    with pytest.raises(grpc.RpcError) as caught:
        list(service.streaming_response_generator([bytes(3200)], config))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_first_request_must_be_the_config(fake_riva: FakeRiva) -> None:
    service = riva.client.ASRService(riva.client.Auth(uri=fake_riva.target))
    requests = iter([asr.StreamingRecognizeRequest(audio_content=bytes(320))])
    with pytest.raises(grpc.RpcError) as caught:
        list(service.stub.StreamingRecognize(requests))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
