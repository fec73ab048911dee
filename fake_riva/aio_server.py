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

import grpc
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc

from fake_riva.protocol import ConfigRejected, make_recognizer, response
from fake_riva.recognizers import get_factory
from fake_riva.recognizers.base import RecognizerFactory
from fake_riva.server import ServerStats

log = logging.getLogger("fake_riva.aio")
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class AioRivaASRServicer(asr_grpc.RivaSpeechRecognitionServicer):  # type: ignore[misc]
    def __init__(self, factory: RecognizerFactory) -> None:
        self._factory = factory
        self.stats = ServerStats()  # one event loop updates it; its lock is only for snapshot()

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
                recognizer = make_recognizer(self._factory, streaming.config, interim_results=streaming.interim_results)
            except ConfigRejected as exc:
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
                    await write(response(results))
            results = recognizer.finish()
            if results:
                await write(response(results))
            outcome = "completed"
        finally:
            stats.active -= 1
            setattr(stats, outcome, getattr(stats, outcome) + 1)


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
    log.info("fake_riva (aio) stopping: %s", servicer.stats.snapshot())
    with contextlib.suppress(asyncio.CancelledError):
        await server.stop(0.5)


def run(recognizer: str, host: str, port: int, max_streams: int) -> None:
    asyncio.run(serve(recognizer, host, port, max_streams))
