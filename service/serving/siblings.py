"""Passing accepted connections between the workers of one supervisor.

Each worker binds a Unix datagram socket ``<slot>.sock`` in a directory the supervisor made
(mode 0700: only this user's processes can send), and a sibling hands it a connection by
sending the descriptor with ``SCM_RIGHTS`` and, as the datagram's payload, what it read of the
connection (the start of a request it did not parse), so the receiver serves it as if it had
accepted it and read that. A datagram is one connection: no framing, no connection between
workers to keep up, and a sibling that is gone (restarting, or never started) refuses at once.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import trio

MAX_READ = 2**16  # what a worker reads at once (hypercorn's MAX_RECV): the most a datagram carries
SEND_TIMEOUT_S = 0.1  # a sibling whose queue stays full this long is not a place to send more
RECEIVE_AT_ONCE = 64  # connections taken in one go: a flood of them cannot hold the loop
STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)  # what a worker accepts


class Siblings:
    """This worker's place among its supervisor's ``count`` workers: ``slot`` (1 to ``count``)
    in ``directory``."""

    def __init__(self, directory: Path, slot: int, count: int) -> None:
        self.directory = directory
        self.slot = slot
        self.count = count

    def slot_for(self, session_id: str) -> int:
        """The worker that serves the session's connections: a hash of its id, so that every
        worker finds the same one without asking anyone, and sessions spread evenly however
        the kernel spreads connections."""
        digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count + 1

    def path(self, slot: int) -> Path:
        return self.directory / f"{slot}.sock"

    async def send(self, slot: int, connection: trio.socket.SocketType, read: bytes) -> bool:
        """Whether sibling ``slot`` now holds ``connection``, with ``read``, what was read of it
        already (ours is still to be closed); False when it is gone or too busy to take it within
        ``SEND_TIMEOUT_S``: serve it here then."""
        fds = array.array("i", [connection.fileno()])
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            with trio.move_on_after(SEND_TIMEOUT_S):
                try:
                    await sender.sendmsg([read], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], 0, str(self.path(slot)))
                except OSError:  # no such socket (not started, restarting), refused (gone), too long
                    return False
                return True
        return False

    def withdraw(self) -> None:
        """Take no more (a draining worker): a sibling's next send fails and it serves the
        connection itself; what was sent already is still received."""
        with contextlib.suppress(FileNotFoundError):
            self.path(self.slot).unlink()

    def remove_if_last(self) -> None:
        """Remove the directory unless a sibling's socket is still in it (for workers whose
        supervisor died: each withdraws its socket before it looks, so the last to look sees
        none and removes it)."""
        if not any(self.directory.glob("*.sock")):
            shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def receiving(self) -> AsyncIterator[socket.socket]:
        """Our socket for siblings to send to, bound for the block (a stale one from a worker
        that died in this slot is replaced)."""
        path = self.path(self.slot)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.setblocking(False)
            receiver.bind(str(path))
            try:
                yield receiver
            finally:
                self.withdraw()


async def receive(receiver: socket.socket) -> list[tuple[socket.socket, bytes]]:
    """The connections siblings handed over, each with what was read of it: once one has come,
    every one queued by then. The kernel queues only ``net.unix.max_dgram_qlen`` datagrams (10
    by default), so a busy worker that took one per pass of its loop made a burst of senders
    wait, and past ``SEND_TIMEOUT_S`` serve the connections themselves. Anything else that
    arrives (or arrives cut short) is closed. At most ``RECEIVE_AT_ONCE``: the rest next time."""
    await trio.lowlevel.wait_readable(receiver)
    received: list[tuple[socket.socket, bytes]] = []
    size = array.array("i").itemsize
    for _ in range(RECEIVE_AT_ONCE):
        try:
            read, ancillary, flags, _ = receiver.recvmsg(MAX_READ, socket.CMSG_SPACE(4 * size))
        except BlockingIOError:
            return received
        fds: list[int] = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % size
                fds.extend(array.array("i", data[:usable]))
        connections = [sock for sock in map(_stream_connection, fds) if sock is not None]
        whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        for extra in connections[1 if whole else 0 :]:  # a sibling sends one at a time, whole
            extra.close()
        if connections and whole:
            received.append((connections[0], read))
    return received


def _stream_connection(fd: int) -> socket.socket | None:
    """``fd`` as a socket if it is a stream connection (what a sibling may send); else closed."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # not a socket at all
        os.close(fd)
        return None
    if sock.family in STREAM_FAMILIES and sock.type == socket.SOCK_STREAM:
        return sock
    sock.close()
    return None
