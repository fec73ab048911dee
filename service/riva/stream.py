"""What a session needs from a Riva stream, and the two transports that provide one.

``threads`` (the reference path, ``thread_bridge``) runs each session's blocking
``StreamingRecognize`` through ``trio.to_thread``: simple, and what gRPC's sync API
was made for, but two threads per live stream. ``aio`` (``aio_bridge``) runs every
stream on one ``grpc.aio`` event loop in a single long-lived thread, which carries
more streams per core. ``RESERVE_RIVA_TRANSPORT`` chooses; both pass the same
end-to-end tests and both are in the benchmark (docs/benchmark.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

import trio
from riva.client.proto import riva_asr_pb2 as asr

from service.riva.channel import RivaTarget
from service.riva.results import Result
from service.settings import Settings


class RivaStream(Protocol):
    """One ``StreamingRecognize`` call, owned by the trio task that awaits ``run``."""

    bytes_sent: int
    responses: int
    unanswered_since: float | None  # trio time audio went out that Riva has not answered yet

    @property
    def input_closed(self) -> bool: ...

    async def send(self, audio: bytes) -> None:
        """Queue audio for Riva, waiting while the stream's queue is full (backpressure)."""

    def try_send(self, audio: bytes) -> bool:
        """Queue audio for Riva if that needs no wait (the stream is open and its queue has
        room); False, and nothing queued, otherwise."""

    def close_input(self) -> None:
        """Half-close: Riva flushes its finals and ends the stream."""

    async def run(self) -> None:
        """Run the call to its end; raise a ReserveError if Riva fails it. Cancelling
        ``run`` cancels the call, and no thread or call outlives it."""


class Transport(Protocol):
    limiter: trio.CapacityLimiter  # bounds live Riva streams

    def open_stream(
        self,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        queue_chunks: int,
    ) -> RivaStream: ...

    async def probe(self, target: RivaTarget, *, timeout_s: float) -> asr.RivaSpeechRecognitionConfigResponse:
        """Is Riva answering on the channel this transport's streams use? Raise a ReserveError if not."""


@contextlib.asynccontextmanager
async def open_transport(settings: Settings, targets: Iterable[RivaTarget]) -> AsyncIterator[Transport]:
    """The configured transport, alive (and its resources held) for the ``async with`` body."""
    limiter = trio.CapacityLimiter(settings.max_sessions)
    if settings.riva_transport == "threads":
        from service.riva.thread_bridge import ThreadTransport

        yield ThreadTransport(limiter)
        return
    if settings.riva_transport == "h2":
        from service.riva.h2_transport import H2Transport

        async with trio.open_nursery() as nursery:
            h2 = H2Transport(
                limiter,
                connect_timeout_s=settings.riva_connect_timeout_s,
                keepalive_s=settings.riva_keepalive_s,
            )
            await nursery.start(h2.run)
            try:
                yield h2
            finally:
                nursery.cancel_scope.cancel()
        return
    from service.riva.aio_bridge import AioTransport

    async with trio.open_nursery() as nursery:
        transport = AioTransport(limiter, targets)
        await nursery.start(transport.run)
        try:
            yield transport
        finally:
            nursery.cancel_scope.cancel()
