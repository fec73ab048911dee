"""Three changes to hypercorn 0.18's trio ``TCPServer``, the loop under every connection.

**A close waits for the send lock.** hypercorn 0.18's ``TCPServer`` sends every byte under
``send_lock`` but calls ``stream.send_eof()`` in ``_close()`` without it. ``send_eof`` holds
trio's "one sender at a time" guard across a checkpoint, so when a client's close frame makes
the reader task close the connection just as the app sends its own close frame, the app's
``send_all`` raises ``trio.BusyResourceError`` ("another task is currently sending data on this
SocketStream") out of ``websocket.close``: under load, a few of every hundred normal closes were
logged as unhandled errors. Taking the lock orders the two: the frame goes out, then the FIN; a send
that comes after finds the stream closed, which hypercorn already handles as a closed peer.

**No cancel scope around each read without a read timeout.** ``_read_data`` wraps every
``receive_some`` in ``trio.fail_after(read_timeout or inf)``: with no ``read_timeout`` (ours:
idle connections are hypercorn's keep-alive task's job, sessions time out on their own), that is
a generator context manager and a cancel scope per read that can never fire, about 5 µs, once per
audio frame (6.6% of the trio thread's samples at 100 streams; leaving it out saved 9% of the
gateway's CPU per stream there, 2% at 200). Without a read timeout the loop reads plainly; with
one, hypercorn's own loop runs.

**A request already sent is answered at shutdown.** When a worker stops, hypercorn closes every
connection without a request under way, including one it has just accepted whose request is
waiting unread. Its client gets no answer ("server disconnected without sending a response"),
though it did nothing wrong: with several workers on one port, a worker restarting alone
dropped a ``/healthz`` asked in its last moment, in two of four runs of the test that does it. A connection
with bytes waiting is left to the read loop, which serves the request within hypercorn's
graceful timeout and closes after it.

Applied once, when ``service.app`` is imported (hypercorn's CLI and the tests' servers alike).
"""

from __future__ import annotations

import contextlib
import select
from typing import Protocol, cast

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer


class HandingOff(Protocol):
    """A server that may hand its connection to another worker between requests."""

    def between_requests(self) -> bool: ...

    async def hand_off(self, data: bytes) -> bool: ...


HALF_CLOSE_WAIT_S = 5.0  # a send stuck on a peer that reads nothing must not hold the close up forever

_original_close = TCPServer._close
_original_read_data = TCPServer._read_data
_original_server_close = TCPServer._initiate_server_close


async def _close_under_send_lock(self: TCPServer) -> None:
    try:
        with trio.move_on_after(HALF_CLOSE_WAIT_S):
            lock: trio.Lock = self.send_lock
            if lock.statistics().owner is trio.lowlevel.current_task():
                await _send_eof(self)
            else:
                async with lock:
                    await _send_eof(self)
    finally:
        await self.stream.aclose()


async def _send_eof(self: TCPServer) -> None:
    # the peer is gone, or an SSL stream (no half-close): aclose follows either way
    gone = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, AttributeError)
    with contextlib.suppress(*gone):
        await self.stream.send_eof()


async def _read_data_unscoped(self: TCPServer) -> None:
    if self.config.read_timeout:
        await _original_read_data(self)
        return
    # a server that may hand its connection to another worker between requests
    # (``service.serving.colocation.PlacingTCPServer``); checked once per read, awaited only then
    placing = cast("HandingOff", self) if hasattr(self, "hand_off") else None
    while True:  # hypercorn's loop, less the scope (a timeout error cannot happen without one)
        try:
            data = await self.stream.receive_some(MAX_RECV)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            break
        if placing is not None and data and placing.between_requests() and await placing.hand_off(bytes(data)):
            return  # the other worker serves the connection, from these bytes on
        await self.protocol.handle(RawData(bytes(data)))
        if data == b"":
            break
    await self.protocol.handle(Closed())


async def _server_close_unless_asked(self: TCPServer) -> None:
    if not _request_waiting(self.stream):
        await _original_server_close(self)


def _request_waiting(stream: trio.abc.Stream) -> bool:
    """Whether the client sent something not read yet (a request, or its end of file)."""
    if getattr(stream, "unread", b""):  # a connection a sibling handed over, with what it read
        return True
    sock = getattr(stream, "socket", None)  # none: TLS, whose bytes may be the protocol's own
    if sock is None:
        return False
    waiting = select.poll()  # not select.select: descriptors past 1024 are common here
    waiting.register(sock.fileno(), select.POLLIN)
    return bool(waiting.poll(0))


def apply() -> None:
    """Idempotent; each change only over the hypercorn code it was written against."""
    if getattr(TCPServer, "_close", None) is _original_close and hasattr(TCPServer, "protocol_send"):
        TCPServer._close = _close_under_send_lock  # type: ignore[method-assign]
    if getattr(TCPServer, "_read_data", None) is _original_read_data:
        TCPServer._read_data = _read_data_unscoped  # type: ignore[method-assign]
    if getattr(TCPServer, "_initiate_server_close", None) is _original_server_close:
        TCPServer._initiate_server_close = _server_close_unless_asked  # type: ignore[method-assign]
