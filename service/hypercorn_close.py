"""hypercorn's trio server half-closes a connection under its send lock.

hypercorn 0.18's ``TCPServer`` sends every byte under ``send_lock`` but calls
``stream.send_eof()`` in ``_close()`` without it. ``send_eof`` holds trio's "one sender at
a time" guard across a checkpoint, so when a client's close frame makes the reader task close
the connection just as the app sends its own close frame, the app's ``send_all`` raises
``trio.BusyResourceError`` ("another task is currently sending data on this SocketStream")
out of ``websocket.close``: under load, a few of every hundred normal closes were logged as
unhandled errors. Taking the lock orders the two: the frame goes out, then the FIN; a send
that comes after finds the stream closed, which hypercorn already handles as a closed peer.

Applied once, when ``service.app`` is imported (hypercorn's CLI and the tests' servers alike).
"""

from __future__ import annotations

import contextlib

import trio
from hypercorn.trio.tcp_server import TCPServer

HALF_CLOSE_WAIT_S = 5.0  # a send stuck on a peer that reads nothing must not hold the close up forever

_original_close = TCPServer._close


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


def apply() -> None:
    """Idempotent."""
    if getattr(TCPServer, "_close", None) is _original_close and hasattr(TCPServer, "protocol_send"):
        TCPServer._close = _close_under_send_lock  # type: ignore[method-assign]
