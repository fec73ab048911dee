"""The h2 connection's writes (service.riva.h2_connection): bytes go out at once from the caller's
task while the writer is idle, and what the socket does not take is sent by the writer, first and
in order; a failed connection never writes to its old file descriptor again."""

from __future__ import annotations

import socket
import types
from typing import cast

import trio
import trio.testing

from service.riva.channel import RivaTarget
from service.riva.h2_connection import Connection


class QueuedOutput:
    """Stands in for the wire: only its output matters here."""

    def __init__(self) -> None:
        self.out = bytearray()

    def take_output(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out


def connection_on(sock: socket.socket) -> tuple[Connection, QueuedOutput]:
    target = cast(RivaTarget, types.SimpleNamespace(uri="127.0.0.1:1", ssl_context=None, metadata=()))
    connection = Connection(target, connect_timeout_s=1, keepalive_s=60)
    output = QueuedOutput()
    connection.wire = output  # type: ignore[assignment]
    connection._fd = sock.fileno()
    return connection, output


def pattern(size: int, salt: int) -> bytes:
    return bytes((i * 7 + salt) % 251 for i in range(size))


async def test_bytes_go_at_once_and_what_the_socket_refuses_follows_in_order() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    connection, output = connection_on(ours)
    small, large, after = pattern(100, 1), pattern(4 * 1024 * 1024, 2), pattern(1000, 3)

    output.out += small
    connection.mark_dirty()
    assert peer.recv(1000) == small  # written by the caller: no writer task is running
    assert not connection._dirty.is_set()

    output.out += large
    connection.mark_dirty()  # far more than the socket's buffer: the rest waits for the writer
    assert connection._unsent and connection._dirty.is_set()
    output.out += after
    connection.mark_dirty()  # behind what waits, never before it

    received = bytearray()

    async def read_all() -> None:
        peer.setblocking(False)
        peer_stream = trio.SocketStream(trio.socket.from_stdlib_socket(peer))
        while len(received) < len(large) + len(after):
            received.extend(await peer_stream.receive_some(65536))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._write_loop, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
            with trio.fail_after(10):
                await read_all()
            nursery.cancel_scope.cancel()
    finally:
        ours.close()
        peer.close()
    assert bytes(received) == large + after


async def test_a_failed_connection_forgets_its_descriptor() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    connection, output = connection_on(ours)
    connection.fail_all("gone")
    output.out += b"late bytes"
    connection.mark_dirty()  # the number may be another file's by now: only the writer could send
    try:
        got = peer.recv(100)
    except BlockingIOError:
        got = b""
    assert got == b""
    assert connection._dirty.is_set()
    ours.close()
    peer.close()
