"""Serving a session's event stream and audio socket in one worker.

With several workers on one port, the kernel gives each new connection to any of them, so a
session's audio socket and its event stream land on different workers half of the time. The
worker without the audio then follows the session through Redis: every event crosses to
Redis and back, and costs a second process a read and a parse. Instead, each session has a
worker of its own among the siblings (a hash of its id), and a worker that accepts one of the
session's connections hands it there (``siblings``) before reading a byte of it. It only
peeks at the request line, so anything it cannot place (another path, TLS, HTTP/2, a slow
client, a sibling gone, too busy, or at its limit of live sessions) it simply serves itself,
as any worker can: the handoff saves work and never decides what works.

The hash also spreads sessions evenly over the workers. Left to themselves, they split as the
kernel gives out connections, and a burst of them mostly goes to whichever worker wakes first
(three to one in a run of 40 sessions here).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from service.serving import siblings as handoff

if TYPE_CHECKING:
    from service.gateway import Gateway
    from service.serving.siblings import Siblings

log = logging.getLogger("reserve.serve")

Serve = Callable[[trio.SocketStream], Awaitable[None]]

PEEK_BYTES = 512  # the request line, and then some
PEEK_TIMEOUT_S = 0.5  # a client that has not sent its request line by then is served here
ROOM_CHECK_S = 0.25  # how soon a worker's siblings learn that it is full, or has room again
SESSION_PATH = re.compile(rb"GET /v1/sessions/([A-Za-z0-9_-]{1,128})/(?:events|audio)[?# ]")


class Colocation:
    def __init__(self, siblings: Siblings, gateway: Gateway) -> None:  # the gateway for its metrics
        self.siblings = siblings
        self.gateway = gateway

    async def route(self, serve: Serve, stream: trio.SocketStream) -> None:
        """Serve ``stream`` here, or hand it to its session's home among the siblings."""
        try:
            slot = await self._home_slot(stream.socket)
        except Exception:  # a bug here must cost a handoff, not the worker (its handlers share a nursery)
            log.exception("placing a connection failed; serving it here")
            slot = None
        if slot is not None:
            if await self.siblings.send(slot, stream.socket):
                self.gateway.metrics.worker_handoff("sent")
                await stream.aclose()  # our descriptor only: the connection lives on in the sibling
                return
            self.gateway.metrics.worker_handoff("failed")
        await serve(stream)

    async def receive(self, serve: Serve, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        """Serve what siblings hand us, in ``nursery`` (where accepted connections are served).
        A worker that cannot bind its socket (a path longer than a Unix socket's) takes none: the
        siblings then serve what they accept, as they do when a send fails."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                receiver = await stack.enter_async_context(self.siblings.receiving())
            except OSError as exc:
                log.warning("this worker takes no connections from its siblings: %s", exc)
                task_status.started()
                return
            task_status.started()
            async with trio.open_nursery() as watching:
                watching.start_soon(self.watch_room)
                while True:
                    connection = await handoff.receive(receiver)
                    self.gateway.metrics.worker_handoff("received")
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(connection))
                    nursery.start_soon(_serve_one, serve, stream)

    async def _home_slot(self, connection: trio.socket.SocketType) -> int | None:
        head = b""
        with trio.move_on_after(PEEK_TIMEOUT_S):
            try:
                head = await connection.recv(PEEK_BYTES, socket.MSG_PEEK)
            except OSError:
                return None  # reset already: serving it says so
        match = SESSION_PATH.match(head)
        if match is None:
            return None
        slot = self.siblings.slot_for(match[1].decode())
        return None if slot == self.siblings.slot or self.siblings.is_full(slot) else slot

    async def watch_room(self) -> None:
        """Keep this worker's "full" mark true to its live sessions, every ``ROOM_CHECK_S``."""
        marked = None
        settings = self.gateway.settings
        try:
            while True:
                registry = self.gateway.registry
                full = registry is not None and registry.live_sessions >= settings.max_sessions
                if full != marked:
                    self.siblings.mark_full(full)
                    marked = full
                await trio.sleep(ROOM_CHECK_S)
        finally:
            self.siblings.mark_full(False)


async def _serve_one(serve: Serve, stream: trio.SocketStream) -> None:
    """As ``trio.serve_listeners`` runs a handler (``serve`` is hypercorn's awaitable class)."""
    try:
        await serve(stream)
    finally:
        await trio.aclose_forcefully(stream)
