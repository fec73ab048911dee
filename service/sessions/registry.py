"""The registry: which sessions exist, how many may, and how long they are kept."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from service.errors import Overloaded, SessionNotFound, ShuttingDown
from service.sessions.config import RecognitionSettings
from service.sessions.session import Runtime, Session

log = logging.getLogger("reserve.registry")


class Registry:
    """Owns every session's task in one nursery; a session stays readable for the
    retention period after it ends, then it is forgotten."""

    def __init__(self, runtime: Runtime, nursery: trio.Nursery) -> None:
        self.runtime = runtime
        self._nursery = nursery
        self._sessions: dict[str, Session] = {}
        self._live = 0
        self._idle = trio.Event()
        self._idle.set()
        self.draining = False

    @property
    def live_sessions(self) -> int:
        return self._live

    @property
    def retained_sessions(self) -> int:
        return len(self._sessions) - self._live

    @property
    def sse_readers(self) -> int:
        """Event streams open now, over every session (read by the metrics scrape)."""
        return sum(session.readers for session in self._sessions.values())

    async def create(
        self, config: RecognitionSettings, *, owner: str | None = None, on_end: Callable[[], None] | None = None
    ) -> Session:
        """Start a session; ``owner`` is the API key id that asked (for its tokens), ``on_end``
        runs once the session has ended (it releases the key's live-session count)."""
        settings = self.runtime.settings
        if self.draining:
            raise ShuttingDown("the gateway is shutting down; try another instance", retry_after_s=5)
        if self._live >= settings.max_sessions:
            raise Overloaded(
                f"the gateway is at its limit of {settings.max_sessions} live sessions; try again shortly",
                retry_after_s=5,
            )
        session = Session(self.runtime, config)
        session.owner = owner
        self._sessions[session.id] = session
        self._live += 1
        self.runtime.metrics.session_created()
        self._idle = trio.Event()
        await self._nursery.start(self._own, session, on_end)
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound("no such session (it may have expired)")
        return session

    def cancel_all(self, reason: str) -> None:
        for session in self._sessions.values():
            session.cancel(reason)

    async def drain(self, *, grace_s: float, finish_s: float) -> None:
        """Graceful shutdown: no new sessions; live ones get ``grace_s`` to end by themselves,
        then are finalized (their finals still delivered, ``end`` reason ``shutdown``), and
        whatever is left after ``finish_s`` more is cancelled."""
        self.draining = True
        log.info("draining %d live sessions (grace %.0f s)", self._live, grace_s)
        with trio.move_on_after(grace_s):
            await self._idle.wait()
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions.values()):
                nursery.start_soon(session.finish_early, "shutdown")
        with trio.move_on_after(finish_s):
            await self._idle.wait()
        self.cancel_all("shutdown")
        await self._idle.wait()

    async def _own(
        self, session: Session, on_end: Callable[[], None] | None, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await session.run(task_status=task_status)
        finally:
            if on_end is not None:
                on_end()
            self._live -= 1
            if self._live == 0:
                self._idle.set()
        await trio.sleep(self.runtime.settings.session_retention_s)
        del self._sessions[session.id]
        log.debug("session %s forgotten after retention", session.id, extra={"session_id": session.id})
