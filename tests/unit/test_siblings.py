"""Handing accepted connections between workers (``service.serving.siblings``) with real sockets:
a TCP connection accepted here, the start of its request read, sent to a sibling's socket with
those bytes and served there as if it had read them; and what the sender and the receiver do when
that cannot happen."""

from __future__ import annotations

import array
import contextlib
import os
import socket
from pathlib import Path

import pytest
import trio

from service.serving import siblings as handoff
from service.serving.colocation import SESSION_PATH, ResumedStream
from service.serving.siblings import Siblings

REQUEST = b"GET /v1/sessions/abc_DEF-123/events HTTP/1.1\r\nhost: x\r\n\r\n"


async def accepted_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A loopback TCP connection: (the client's end, the end a worker accepted)."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    assert isinstance(server, trio.SocketStream)
    return client, server


async def test_a_connection_read_here_is_served_by_the_sibling_from_what_was_read(tmp_path: Path) -> None:
    me, sibling = Siblings(tmp_path, 1, 2), Siblings(tmp_path, 2, 2)
    async with sibling.receiving() as receiver:
        client, accepted = await accepted_pair()
        async with client:
            await client.send_all(REQUEST[:40])
            read = await accepted.receive_some(4096)  # the start of the request, read here
            assert SESSION_PATH.match(read)[1] == b"abc_DEF-123"  # type: ignore[index]

            assert await me.send(2, accepted.socket, read)
            await accepted.aclose()  # ours only: the sibling's descriptor keeps the connection
            await client.send_all(REQUEST[40:])  # the rest, sent meanwhile
            with trio.fail_after(5):
                [(received, already)] = await handoff.receive(receiver)
            async with ResumedStream(trio.socket.from_stdlib_socket(received), already) as served:
                got = b""
                while len(got) < len(REQUEST):
                    got += await served.receive_some(4096)
                assert got == REQUEST, "what this worker read, then the rest"
                await served.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            assert await client.receive_some(4096) == b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_request_too_large_for_one_datagram_stays_here(tmp_path: Path) -> None:
    async with Siblings(tmp_path, 2, 2).receiving():
        client, accepted = await accepted_pair()
        async with client, accepted:
            assert not await Siblings(tmp_path, 1, 2).send(2, accepted.socket, bytes(4 * handoff.MAX_READ))


async def test_a_sibling_that_is_not_there_refuses_at_once(tmp_path: Path) -> None:
    me = Siblings(tmp_path, 1, 2)
    client, accepted = await accepted_pair()
    async with client, accepted:
        with trio.fail_after(1):
            assert not await me.send(2, accepted.socket, REQUEST), "no socket at all (not started yet)"
            async with Siblings(tmp_path, 2, 2).receiving():
                pass
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a worker killed -9 leaves its file
            stale.bind(str(me.path(2)))
            stale.close()
            assert not await me.send(2, accepted.socket, REQUEST), "a file no one reads (a dead worker's)"
        await client.send_all(b"still ours")
        assert await accepted.receive_some(64) == b"still ours"


async def test_a_worker_in_a_dead_siblings_slot_replaces_its_socket(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(tmp_path / "2.sock"))
    stale.close()
    async with Siblings(tmp_path, 2, 2).receiving() as receiver:
        client, accepted = await accepted_pair()
        async with client, accepted:
            assert await Siblings(tmp_path, 1, 2).send(2, accepted.socket, REQUEST)
            with trio.fail_after(5):
                [(received, _)] = await handoff.receive(receiver)
            received.close()
    assert not (tmp_path / "2.sock").exists(), "removed when the worker stops receiving"


async def test_what_is_not_a_connection_is_closed_and_skipped(tmp_path: Path) -> None:
    async with Siblings(tmp_path, 2, 2).receiving() as receiver:
        read_end, write_end = os.pipe()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [read_end]))]
            sender.sendmsg([b"c"], fds, 0, str(tmp_path / "2.sock"))
        os.close(read_end)  # the copy in flight is the pipe's only reader now
        client, accepted = await accepted_pair()
        async with client, accepted:
            assert await Siblings(tmp_path, 1, 2).send(2, accepted.socket, REQUEST)
            with trio.fail_after(5):
                [(received, _)] = await handoff.receive(receiver)  # the pipe's datagram skipped
            assert received.type == socket.SOCK_STREAM
            received.close()
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"x")  # the pipe's end that arrived was closed, not leaked
        os.close(write_end)


def test_every_worker_finds_the_same_worker_for_a_session_and_sessions_spread_evenly(tmp_path: Path) -> None:
    workers = [Siblings(tmp_path, slot, 3) for slot in (1, 2, 3)]
    ids = [f"session-{n}" for n in range(3000)]
    chosen = [workers[0].slot_for(session_id) for session_id in ids]
    assert chosen == [workers[2].slot_for(session_id) for session_id in ids], "no worker asks anyone"
    shares = [chosen.count(slot) / len(ids) for slot in (1, 2, 3)]
    assert all(0.30 < share < 0.37 for share in shares), shares
    assert Siblings(tmp_path, 1, 1).slot_for("any") == 1


@pytest.mark.parametrize(
    ("line", "session"),
    [
        (b"GET /v1/sessions/abc/events HTTP/1.1\r\n", b"abc"),
        (b"GET /v1/sessions/abc/events?token=x HTTP/1.1\r\n", b"abc"),
        (b"GET /v1/sessions/a-b_C/audio HTTP/1.1\r\n", b"a-b_C"),
        (b"GET /v1/sessions/abc HTTP/1.1\r\n", None),
        (b"DELETE /v1/sessions/abc/events HTTP/1.1\r\n", None),
        (b"GET /v1/sessions/abc/eventsx HTTP/1.1\r\n", None),
        (b"GET /v1/sessions/a%2Fb/events HTTP/1.1\r\n", None),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
        (b"\x16\x03\x01\x02\x00", None),  # a TLS hello
        (b"GET /v1/sessions/abc/eve", None),  # cut short: served where it landed
    ],
)
def test_only_a_sessions_event_stream_or_audio_socket_is_placed(line: bytes, session: bytes | None) -> None:
    match = SESSION_PATH.match(line)
    assert (match[1] if match else None) == session


async def test_a_withdrawn_worker_takes_what_was_sent_and_nothing_more(tmp_path: Path) -> None:
    me = Siblings(tmp_path, 1, 2)
    draining = Siblings(tmp_path, 2, 2)
    async with draining.receiving() as receiver:
        client, accepted = await accepted_pair()
        later_client, later = await accepted_pair()
        async with client, accepted, later_client, later:
            assert await me.send(2, accepted.socket, REQUEST)
            draining.withdraw()
            assert not await me.send(2, later.socket, REQUEST), "served by the worker that accepted it"
            with trio.fail_after(5):
                [(received, _)] = await handoff.receive(receiver)  # the one sent before is not lost
            received.close()


@pytest.mark.parametrize("at_once", [handoff.RECEIVE_AT_ONCE, 3])
async def test_a_worker_takes_every_connection_queued_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    """The kernel queues only ``net.unix.max_dgram_qlen`` datagrams (10 by default): a busy
    worker that took one per pass made a burst's senders wait and give up. It takes at most
    ``RECEIVE_AT_ONCE`` in one go (the kernel's queue may be set longer), the rest next time."""
    monkeypatch.setattr(handoff, "RECEIVE_AT_ONCE", at_once)
    async with Siblings(tmp_path, 2, 2).receiving() as receiver, contextlib.AsyncExitStack() as stack:
        for n in range(8):
            client, accepted = await accepted_pair()
            await stack.enter_async_context(client)
            await stack.enter_async_context(accepted)
            assert await Siblings(tmp_path, 1, 2).send(2, accepted.socket, b"%d" % n)
        received: list[tuple[socket.socket, bytes]] = []
        batches = []
        with trio.fail_after(5):
            while len(received) < 8:
                batch = await handoff.receive(receiver)
                batches.append(len(batch))
                received += batch
        assert [read for _, read in received] == [b"%d" % n for n in range(8)]
        assert batches == ([8] if at_once >= 8 else [3, 3, 2])
        for connection, _ in received:
            connection.close()
