"""hypercorn's trio server: a close racing a send, and the read loop.

The installed hypercorn half-closes without its send lock, so a frame sent at that moment
raised BusyResourceError out of the app's ``websocket.close``; service.hypercorn_tcp makes the
close wait for the send. It also reads without a cancel scope when there is no read timeout."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import TCPServer

from service import hypercorn_tcp


class Protocol:
    """What TCPServer tells its protocol (that the connection closed)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


def connection(config: Config | None = None) -> tuple[TCPServer, Protocol, socket.socket]:
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    server = TCPServer(None, config or Config(), None, {}, stream)  # type: ignore[arg-type]
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
    """When this fails, hypercorn has fixed it upstream: drop service/hypercorn_tcp.py."""
    server, _, peer = connection()
    closing = hypercorn_tcp._original_close(server)
    closing.send(None)  # run the close up to its first checkpoint: inside send_eof, the lock free
    assert not server.send_lock.locked()
    with pytest.raises(trio.BusyResourceError, match="another task is currently sending"):
        await server.stream.send_all(b"close frame")  # what protocol_send does under the lock
    closing.close()
    await server.stream.aclose()
    peer.close()


async def test_a_close_waits_for_the_frame_being_sent() -> None:
    hypercorn_tcp.apply()
    assert TCPServer._close is hypercorn_tcp._close_under_send_lock
    server, _, peer = connection()
    async with trio.open_nursery() as nursery, server.send_lock:  # a frame is on its way out
        nursery.start_soon(server._close)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(BlockingIOError):
            peer.recv(100, socket.MSG_DONTWAIT)  # no FIN yet: the close waits for the lock
        await server.stream.send_all(b"close frame")
    assert read_to_eof(peer) == b"close frame"


async def test_a_frame_after_the_close_is_a_closed_peer_not_an_error() -> None:
    hypercorn_tcp.apply()
    server, protocol, peer = connection()
    await server.protocol_send(Closed())
    await server.protocol_send(RawData(data=b"late frame"))
    assert [type(e) for e in protocol.events] == [Closed, Closed]
    assert read_to_eof(peer) == b""


async def test_reads_reach_the_protocol_until_the_peer_closes() -> None:
    hypercorn_tcp.apply()
    assert TCPServer._read_data is hypercorn_tcp._read_data_unscoped
    server, protocol, peer = connection()
    peer.sendall(b"GET / HTTP/1.1\r\n")
    peer.shutdown(socket.SHUT_WR)
    with trio.fail_after(5):
        await server._read_data()
    assert protocol.events == [RawData(data=b"GET / HTTP/1.1\r\n"), RawData(data=b""), Closed()]
    await server.stream.aclose()
    peer.close()


async def test_a_reset_connection_ends_the_reads_with_closed() -> None:
    hypercorn_tcp.apply()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    server = TCPServer(None, Config(), None, {}, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))  # type: ignore[arg-type]
    protocol = Protocol()
    server.protocol = protocol  # type: ignore[assignment]
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # linger 0: a reset, so the read raises BrokenResourceError instead of reading b""
    with trio.fail_after(5):
        await server._read_data()
    assert protocol.events == [Closed()]
    await server.stream.aclose()


async def test_a_read_timeout_still_applies() -> None:
    """With ``read_timeout`` set, hypercorn's own loop (and its scope) runs."""
    hypercorn_tcp.apply()
    config = Config()
    config.read_timeout = 0.05  # type: ignore[assignment]  # typed as whole seconds; any number works
    server, protocol, peer = connection(config)
    with trio.fail_after(5):
        await server._read_data()  # the peer sends nothing: the timeout ends the loop
    assert protocol.events == [Closed()]
    await server.stream.aclose()
    peer.close()


async def test_a_connection_whose_request_is_waiting_is_not_closed_as_idle() -> None:
    """At shutdown hypercorn closes connections without a request under way; one whose client
    has already sent a request (or its end of file) is left to the read loop, which answers it."""
    client, server = socket.socketpair()
    with client, server:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(server))
        assert not hypercorn_tcp._request_waiting(stream)
        client.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert hypercorn_tcp._request_waiting(stream)
    assert TCPServer._initiate_server_close is hypercorn_tcp._server_close_unless_asked
