"""The pure parts: control messages, SSE framing, the state table, settings -> Riva, error mapping."""

from __future__ import annotations

import grpc
import pytest
from riva.client.proto import riva_asr_pb2 as asr

from service import errors
from service.events import sse
from service.events.log import MemoryEventLog
from service.protocol import Control, parse_control
from service.sessions.config import RecognitionSettings
from service.sessions.state import TRANSITIONS, InvalidTransition, State, Trigger, next_state


@pytest.mark.parametrize(
    ("text", "control"),
    [
        ('{"type":"end"}', Control.END),
        ('{"type":"finalize","x":1}', Control.FINALIZE),
        ('{"type":"keepalive"}', Control.KEEPALIVE),
    ],
)
def test_control_messages(text: str, control: Control) -> None:
    assert parse_control(text) is control


@pytest.mark.parametrize("text", ["", "end", "{}", '{"type": 3}', '{"type": "End"}', "[]", "x" * 5000])
def test_bad_control_messages(text: str) -> None:
    with pytest.raises(errors.BadMessage):
        parse_control(text)


def test_sse_frame_and_resume_ids() -> None:
    assert sse.frame(7, "transcript", b'{"a":1}') == b'id: 7\nevent: transcript\ndata: {"a":1}\n\n'
    assert sse.parse_last_event_id("12", "3") == 12
    assert sse.parse_last_event_id(None, "3") == 3
    assert sse.parse_last_event_id("", None) == 0
    for bad in ("-1", "1.5", "abc", "9" * 30):
        with pytest.raises(errors.BadRequest):
            sse.parse_last_event_id(bad, None)


async def test_memory_log_reads_after_a_cursor_and_wakes_waiters() -> None:
    import trio

    log = MemoryEventLog()
    for n in range(5):
        log.append("transcript", b'{"n":%d}' % n)
    assert [e.id for e in log.read_after(2)] == [3, 4, 5]
    assert log.read_after(5) == []
    assert [e.id for e in log.read_after(0, limit=2)] == [1, 2]
    woke = trio.Event()

    async def waiter() -> None:
        await log.wait_after(5)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.01)
        assert not woke.is_set()
        log.append("end", b"{}")
    assert woke.is_set()
    log.close()
    await log.wait_after(6)  # closed: returns at once
    assert [e.id for e in await log.read(4)] == [5, 6]
    with pytest.raises(RuntimeError):
        log.append("late", b"{}")


def test_state_table() -> None:
    assert next_state(State.WAITING, Trigger.ATTACH) is State.STREAMING
    assert next_state(State.STREAMING, Trigger.END_OF_AUDIO) is State.FINISHING
    assert next_state(State.FINISHING, Trigger.FLUSHED) is State.FINISHED
    for state in State:
        if state.terminal:
            assert not any(s is state for s, _ in TRANSITIONS), f"{state} must have no way out"
        else:
            assert next_state(state, Trigger.FAIL) is State.FAILED
            assert next_state(state, Trigger.CANCEL) is State.CANCELLED
    with pytest.raises(InvalidTransition):
        next_state(State.WAITING, Trigger.FLUSHED)


def test_settings_become_the_riva_config() -> None:
    settings = RecognitionSettings.model_validate(
        {
            "encoding": "MULAW",
            "sample_rate_hertz": 8000,
            "language_code": "es-US",
            "word_time_offsets": True,
            "boosted_words": [{"phrases": ["Reserve"], "boost": 20}],
            "endpointing": {"stop_history": 800, "stop_threshold": 0.3},
            "speaker_diarization": {"enabled": True, "max_speakers": 4},
            "custom_configuration": {"a": "b"},
        }
    )
    streaming = settings.to_riva()
    config = streaming.config
    assert streaming.interim_results is True
    assert (config.encoding, config.sample_rate_hertz, config.language_code) == (3, 8000, "es-US")
    assert config.enable_word_time_offsets and config.enable_automatic_punctuation
    assert list(config.speech_contexts[0].phrases) == ["Reserve"] and config.speech_contexts[0].boost == 20
    assert config.endpointing_config.stop_history == 800
    assert config.endpointing_config.HasField("stop_threshold") or config.endpointing_config.stop_threshold
    assert config.diarization_config.max_speaker_count == 4
    assert dict(config.custom_configuration) == {"a": "b"}
    assert settings.bytes_per_second == 8000
    assert RecognitionSettings(encoding="FLAC").bytes_per_second is None
    assert not RecognitionSettings().to_riva().config.HasField("endpointing_config")


class _Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call as grpc raises it: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "details"


@pytest.mark.parametrize(
    ("code", "expected", "ws_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidConfig, 4422),
        (grpc.StatusCode.UNAVAILABLE, errors.UpstreamUnavailable, 1011),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.UpstreamTimeout, 1011),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.UpstreamBusy, 1013),
        (grpc.StatusCode.INTERNAL, errors.UpstreamError, 1011),
    ],
)
def test_grpc_codes_map_to_errors_by_meaning(code: grpc.StatusCode, expected: type, ws_code: int) -> None:
    error = errors.from_grpc(_Failed(code))
    assert type(error) is expected
    assert error.ws_close_code == ws_code
    assert error.to_json()["grpc_code"] == code.name


def test_streaming_config_fields_exist_in_riva_proto() -> None:
    names = {f.name for f in asr.EndpointingConfig.DESCRIPTOR.fields}
    from service.sessions.config import Endpointing

    assert set(Endpointing.model_fields) == names
