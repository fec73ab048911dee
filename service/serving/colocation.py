"""Serving a session's event stream and audio socket in one worker.

With several workers on one port, the kernel gives each new connection to any of them, so a
session's audio socket and its event stream land on different workers half of the time. The
worker without the audio then follows the session through Redis: every event crosses to
Redis and back, and costs a second process a read and a parse. Instead, each session has a
worker of its own among the siblings (a hash of its id), and a worker about to read a request
for one of the session's connections, the first of a new connection or the next of a kept-alive
one, hands the connection there (``siblings``) with the bytes of the request it read, before
it parsed any of them. It reads only the request line, so anything it cannot place (another
path, TLS, HTTP/2, a request line cut across reads, a request sent before the last answer
ended, a sibling gone, draining or too busy, or one at its limit of live sessions that does
not run the session while this worker holds it) it simply serves itself, as any worker can: the
handoff saves work and never decides what works.

A new session is placed the same way: a worker that reads the start of ``POST /v1/sessions``
or of a realtime socket (``GET /v1/realtime``) hands it to the worker that should carry the
session (``service.serving.loads``: the first below ``RESERVE_WORKER_FILL``), and that worker
gives the session an id whose hash is its own. Left to the kernel, sessions split as it gives
out connections, and a burst of them mostly goes to whichever worker wakes first (three to one
in a run of 40 sessions here).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import h11
import trio
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, LifespanState

from service.serving import siblings as handoff
from service.serving.loads import AWAY, LoadBoard, OwnLoad, choose

if TYPE_CHECKING:
    from service.gateway import Gateway
    from service.serving.siblings import Siblings

log = logging.getLogger("reserve.serve")

Serve = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]

SESSION_PATH = re.compile(rb"GET /v1/sessions/([A-Za-z0-9_-]{1,128})/(?:events|audio)[?# ]")
NEW_SESSION = re.compile(rb"(?:POST /v1/sessions|GET /v1/realtime)[?# ]")
ID_TRIES = 64  # per worker: (1 - 1/n) ** (64 n) < e ** -64 that no id of that many hashes here


class Colocation:
    """This worker among its siblings: where each request should be served, what it carries."""

    def __init__(
        self, siblings: Siblings, gateway: Gateway, *, clock: Callable[[], float] = time.monotonic
    ) -> None:  # the gateway for settings and metrics
        self.siblings = siblings
        self.gateway = gateway
        self.board = LoadBoard(siblings.directory / "loads", siblings.count)
        self.load = OwnLoad(self.board, siblings.slot, clock=clock)
        self.orphaned = False  # the supervisor died (kill -9) and cannot remove the directory

    def server(self, app: AppWrapper, config: Config, context: WorkerContext, state: LifespanState) -> Serve:
        """What serves a plain connection here: hypercorn's loop, placing each request."""
        return partial(PlacingTCPServer, self, app, config, context, state)

    async def receive(self, serve: Serve, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        """Serve what siblings hand us, in ``nursery`` (where accepted connections are served).
        A worker that cannot bind its socket (a path longer than a Unix socket's) takes none: the
        siblings then serve what they accept, as they do when a send fails."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                receiver = await stack.enter_async_context(self.siblings.receiving())
            except OSError as exc:
                log.warning("this worker takes no connections from its siblings: %s", exc)
                self.withdraw()
                task_status.started()
                return
            task_status.started()
            while True:
                for connection, read in await handoff.receive(receiver):
                    self.gateway.metrics.worker_handoff("received")
                    stream = ResumedStream(trio.socket.from_stdlib_socket(connection), read)
                    nursery.start_soon(_serve_one, serve, stream)

    def destination(self, request: bytes) -> int | None:
        """The sibling that should serve the request that begins with ``request``, or None to
        serve it here."""
        settings = self.gateway.settings
        here = self.siblings.slot
        if (match := SESSION_PATH.match(request)) is not None:
            session_id = match[1].decode()
            slot = self.siblings.slot_for(session_id)
            live = self.board.load(slot)
            if slot == here or live == AWAY:
                return None  # a sibling away: serve it here, as any worker can
            if live >= settings.max_sessions and self.holds(session_id):
                return None  # a session taken over here while its worker was away: it runs here
            return slot
        if NEW_SESSION.match(request) is None:
            return None
        placed = choose(self.board.loads(), here=here, fill=settings.worker_fill, limit=settings.max_sessions)
        if placed != here:
            return placed
        self.load.expect()
        return None

    def holds(self, session_id: str) -> bool:
        registry = self.gateway.registry
        return registry is not None and registry.holds(session_id)

    def new_id(self) -> str:
        """A random id that hashes to this worker (``Siblings.slot_for``), so that the session's
        connections come here; it keeps all but a few of ``token_urlsafe(16)``'s 128 bits."""
        candidate = secrets.token_urlsafe(16)
        for _ in range(ID_TRIES * self.siblings.count):
            if self.siblings.slot_for(candidate) == self.siblings.slot:
                break
            candidate = secrets.token_urlsafe(16)
        return candidate

    def carrying(self, live: int) -> None:
        self.load.registered(live)

    def arriving(self) -> None:
        self.load.arrived()

    def withdraw(self) -> None:
        """Take nothing more (a draining worker, or one without its socket): siblings serve
        what they accept themselves, and place new sessions elsewhere."""
        self.load.withdraw()
        self.siblings.withdraw()

    def __enter__(self) -> Colocation:
        return self

    def __exit__(self, *_: object) -> None:
        self.board.close()
        if self.orphaned:
            self.siblings.remove_if_last()


class PlacingTCPServer(TCPServer):
    """hypercorn's connection loop (with ``service.hypercorn_tcp``'s changes), which on reading
    the start of each request of a plain HTTP/1.1 connection may hand the connection, with those
    bytes, to the session's worker: the first request of a new connection, and each next one of a
    kept-alive connection (a browser's ``EventSource`` mostly rides one that loaded the page)."""

    def __init__(
        self,
        colocation: Colocation,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self.colocation = colocation
        self.handed_off = False

    def between_requests(self) -> bool:
        """An HTTP/1.1 connection with no request under way and nothing of the next one parsed."""
        protocol = self.protocol.protocol
        if not isinstance(protocol, H11Protocol) or protocol.stream is not None:
            return False
        connection = protocol.connection
        return (
            isinstance(connection, h11.Connection)
            and connection.our_state is h11.IDLE
            and connection.their_state is h11.IDLE
            and not connection.trailing_data[0]
        )

    async def hand_off(self, data: bytes) -> bool:
        """Whether the connection went to another worker with ``data``, the start of its next
        request, read here (then this worker reads nothing more of it)."""
        connection: trio.socket.SocketType | None = getattr(self.stream, "socket", None)
        if connection is None:
            return False  # TLS: what was read is not the request line
        try:
            slot = self.colocation.destination(data)
        except Exception:  # a bug here must cost a handoff, not the worker (its handlers share a nursery)
            log.exception("placing a connection failed; serving it here")
            return False
        if slot is None:
            return False
        metrics = self.colocation.gateway.metrics
        if not await self.colocation.siblings.send(slot, connection, data):
            metrics.worker_handoff("failed")
            return False
        metrics.worker_handoff("sent")
        self.handed_off = True
        await self.idle_task.stop()  # the keep-alive timer is the other worker's now
        return True

    async def _close(self) -> None:
        if self.handed_off:  # our descriptor only: no end of file for a client served elsewhere
            await self.stream.aclose()
        else:
            await super()._close()


class ResumedStream(trio.abc.HalfCloseableStream):
    """A connection handed over by a sibling: what it read of it first, then the socket.
    (``trio.SocketStream`` cannot be subclassed; hypercorn uses ``socket`` for the addresses.)"""

    def __init__(self, socket: trio.socket.SocketType, read: bytes) -> None:
        self.socket = socket
        self._stream = trio.SocketStream(socket)
        self.unread = read  # what the sibling read, not yet read here

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.unread:
            data, self.unread = self.unread, b""
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _serve_one(serve: Serve, stream: trio.abc.HalfCloseableStream) -> None:
    """As ``trio.serve_listeners`` runs a handler (``serve`` is hypercorn's awaitable class)."""
    try:
        await serve(stream)
    finally:
        await trio.aclose_forcefully(stream)
