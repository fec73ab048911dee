"""hypercorn's trio server: a close racing a send. The installed hypercorn half-closes without
its send lock, so a frame sent at that moment raised BusyResourceError out of the app's
``websocket.close``; service.hypercorn_close makes the close wait for the send."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import TCPServer

from service import hypercorn_close


class Protocol:
    """What TCPServer tells its protocol (that the connection closed)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


def connection() -> tuple[TCPServer, Protocol, socket.socket]:
    ours, theirs = socket.socketpair()
    server = TCPServer(None, Config(), None, {}, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))  # type: ignore[arg-type]
    protocol = Protocol()
    server.protocol = protocol  # type: ignore[assignment]
    return server, protocol, theirs


def read_to_eof(peer: socket.socket) -> bytes:
    """Once the server side has closed, everything is in the peer's buffer: no blocking."""
    received = b""
    while chunk := peer.recv(100):
        received += chunk
    peer.close()
    return received


async def test_the_installed_hypercorn_sends_eof_outside_its_send_lock() -> None:
    """When this fails, hypercorn has fixed it upstream: drop service/hypercorn_close.py."""
    server, _, peer = connection()
    closing = hypercorn_close._original_close(server)
    closing.send(None)  # run the close up to its first checkpoint: inside send_eof, the lock free
    assert not server.send_lock.locked()
    with pytest.raises(trio.BusyResourceError, match="another task is currently sending"):
        await server.stream.send_all(b"close frame")  # what protocol_send does under the lock
    closing.close()
    await server.stream.aclose()
    peer.close()


async def test_a_close_waits_for_the_frame_being_sent() -> None:
    hypercorn_close.apply()
    assert TCPServer._close is hypercorn_close._close_under_send_lock
    server, _, peer = connection()
    async with trio.open_nursery() as nursery, server.send_lock:  # a frame is on its way out
        nursery.start_soon(server._close)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(BlockingIOError):
            peer.recv(100, socket.MSG_DONTWAIT)  # no FIN yet: the close waits for the lock
        await server.stream.send_all(b"close frame")
    assert read_to_eof(peer) == b"close frame"


async def test_a_frame_after_the_close_is_a_closed_peer_not_an_error() -> None:
    hypercorn_close.apply()
    server, protocol, peer = connection()
    await server.protocol_send(Closed())
    await server.protocol_send(RawData(data=b"late frame"))
    assert [type(e) for e in protocol.events] == [Closed, Closed]
    assert read_to_eof(peer) == b""
