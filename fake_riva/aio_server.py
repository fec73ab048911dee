"""A lean fake Riva on ``grpc.aio`` for load tests: ``python -m fake_riva --aio --recognizer tagged``.

The default server (``fake_riva.server``) runs one thread per stream, which is what
its protocol tests want but costs a thread wake-up per message and a thread per
stream. For hundreds of concurrent benchmark streams this one runs every stream as a
coroutine on one asyncio loop, reading requests with ``context.read()`` and answering
with ``context.write()``. It checks configs as the default server does (config first,
a known language and model, a sample rate of 8-48 kHz, an encoding the recognizer
can decode) but injects no faults: it is for measuring, not for failure tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc
from riva.client.proto import riva_audio_pb2 as audio_pb

from fake_riva.models import LANGUAGES, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, find_model
from fake_riva.recognizers import get_factory
from fake_riva.recognizers.base import Hypothesis, Recognizer, RecognizerFactory, StreamSettings, UnsupportedAudio

log = logging.getLogger("fake_riva.aio")
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class AioStats:
    started: int = 0
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    chunks: int = 0


class _Invalid(Exception):
    pass


class AioRivaASRServicer(asr_grpc.RivaSpeechRecognitionServicer):  # type: ignore[misc]
    def __init__(self, factory: RecognizerFactory) -> None:
        self._factory = factory
        self.stats = AioStats()

    async def StreamingRecognize(  # noqa: N802 - gRPC method name
        self, request_iterator: object, context: grpc.aio.ServicerContext
    ) -> None:
        stats = self.stats
        stats.started += 1
        stats.active += 1
        outcome = "cancelled"
        try:
            first = await context.read()
            if first is grpc.aio.EOF or not first.HasField("streaming_config"):
                outcome = "failed"
                await context.abort(INVALID, "the first StreamingRecognizeRequest must carry streaming_config")
            streaming = first.streaming_config
            try:
                recognizer = self._recognizer(streaming.config, streaming.interim_results)
            except _Invalid as exc:
                outcome = "failed"
                await context.abort(INVALID, str(exc))
            read, write = context.read, context.write
            while True:
                request = await read()
                if request is grpc.aio.EOF:
                    break
                stats.chunks += 1
                results = recognizer.accept(request.audio_content)
                if results:
                    await write(_response(results))
            results = recognizer.finish()
            if results:
                await write(_response(results))
            outcome = "completed"
        finally:
            stats.active -= 1
            setattr(stats, outcome, getattr(stats, outcome) + 1)

    def _recognizer(self, config: asr.RecognitionConfig, interim_results: bool) -> Recognizer:
        if config.encoding == audio_pb.ENCODING_UNSPECIFIED:
            raise _Invalid("Error: audio encoding must be specified")
        if not MIN_SAMPLE_RATE_HZ <= config.sample_rate_hertz <= MAX_SAMPLE_RATE_HZ:
            raise _Invalid(f"Error: sample_rate_hertz={config.sample_rate_hertz} is not supported")
        if config.language_code not in LANGUAGES or find_model(config.model, config.language_code) is None:
            raise _Invalid(
                "Error: Unavailable model requested given these parameters: "
                f"language_code={config.language_code}; model={config.model or '(any)'}; type=online"
            )
        settings = StreamSettings(
            encoding=audio_pb.AudioEncoding.Name(config.encoding),
            sample_rate_hertz=config.sample_rate_hertz,
            language_code=config.language_code,
            interim_results=interim_results,
            word_time_offsets=config.enable_word_time_offsets,
            automatic_punctuation=config.enable_automatic_punctuation,
            custom_configuration=dict(config.custom_configuration),
        )
        try:
            return self._factory(settings)
        except UnsupportedAudio as exc:
            raise _Invalid(f"Error: {exc}") from exc


def _response(results: list[Hypothesis]) -> asr.StreamingRecognizeResponse:
    return asr.StreamingRecognizeResponse(
        results=[
            asr.StreamingRecognitionResult(
                alternatives=[asr.SpeechRecognitionAlternative(transcript=h.text, confidence=h.confidence)],
                is_final=h.is_final,
                stability=h.stability,
                audio_processed=h.audio_processed_s,
                channel_tag=1,
            )
            for h in results
        ]
    )


async def serve(recognizer: str, host: str, port: int, max_streams: int) -> None:
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_streams,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    servicer = AioRivaASRServicer(get_factory(recognizer))
    asr_grpc.add_RivaSpeechRecognitionServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"fake_riva ready on {host}:{bound} (aio)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("fake_riva (aio) stopping: %s", servicer.stats)
    with contextlib.suppress(asyncio.CancelledError):
        await server.stop(0.5)


def run(recognizer: str, host: str, port: int, max_streams: int) -> None:
    asyncio.run(serve(recognizer, host, port, max_streams))
