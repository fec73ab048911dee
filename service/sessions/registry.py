"""The registry: which sessions exist, how many may, and how long they are kept.

In shared mode (Redis) it is also this instance's door to the others' sessions: a session
another instance owns is found through its record, followed through its shared log, and
taken over when its audio socket comes here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import trio

from service.errors import (
    Overloaded,
    ReserveError,
    SessionNotFound,
    ShuttingDown,
    StateUnavailable,
)
from service.events.readers import Readers
from service.sessions.config import RecognitionSettings
from service.sessions.handover import Handover, OnEnd
from service.sessions.places import Place, Places, Placing
from service.sessions.record import RemoteSession, static_fields
from service.sessions.runtime import Runtime
from service.sessions.session import Session
from service.shared.redis.failures import RedisUnavailable, as_state_unavailable

log = logging.getLogger("reserve.registry")

HANDOVER_POLL_S = 0.05


class Registry(Handover):
    """Owns every session's task in one nursery; a session stays readable for the
    retention period after it ends, then it is forgotten."""

    def __init__(self, runtime: Runtime, nursery: trio.Nursery, placing: Placing | None = None) -> None:
        self.runtime = runtime
        self._placing = placing
        # the event streams served here: their heartbeat, and their end once this process stops
        self.readers = Readers(runtime.settings.sse_heartbeat_s)
        self._nursery = nursery
        self._sessions: dict[str, Session] = {}
        self._places = Places(runtime.settings.max_sessions, placing)
        self._taking: set[str] = set()
        self.draining = False
        hub = runtime.hub
        if hub is not None:
            hub.on_control = self._control
            hub.on_fenced = self._fenced
            hub.on_outage = self._outage

    @property
    def live_sessions(self) -> int:
        return self._places.live

    @property
    def retained_sessions(self) -> int:
        return len(self._sessions) - self._places.live

    @property
    def sse_readers(self) -> int:
        """Event streams open now, over every session (read by the metrics scrape)."""
        return sum(session.readers for session in self._sessions.values())

    def _check_room(self) -> None:
        if self.draining:
            raise ShuttingDown("the gateway is shutting down; try another instance", retry_after_s=5)
        if self._places.full:
            raise Overloaded(
                f"the gateway is at its limit of {self._places.limit} live sessions; try again shortly",
                retry_after_s=5,
            )

    @contextlib.contextmanager
    def _holding_place(self) -> Iterator[Place]:
        """A place for a session being created or taken over, from the check until it runs
        (``_start``) or has failed (``service.sessions.places``)."""
        self._check_room()
        with self._places.holding() as place:
            yield place

    def socket_waiting(self) -> AbstractContextManager[Callable[[], None]]:
        """A realtime socket open here before its first audio (``Places.socket_waiting``)."""
        return self._places.socket_waiting()

    async def create(
        self,
        config: RecognitionSettings,
        *,
        owner: str | None = None,
        ticket: str = "",
        on_end: OnEnd | None = None,
        placed: bool = True,
    ) -> Session:
        """Start a session; ``owner`` is the API key id that asked (for its tokens), ``on_end``
        runs once the session has ended (it releases the key's live-session count). ``placed``:
        its request was placed here as a new session (``POST /v1/sessions``), and is expected."""
        with self._holding_place() as place:
            if self._placing is not None and placed:
                self._placing.arriving()
            session = Session(self.runtime, config, session_id=self._placing.new_id() if self._placing else None)
            session.owner = owner
            session.ticket = ticket
            if self.runtime.hub is not None:
                await self._publish_record(session, last_id=0)
            self.runtime.metrics.session_created()
            await self._start(session, on_end, place)
        return session

    async def _publish_record(self, session: Session, *, last_id: int) -> None:
        """Shared mode: own the session's log and get its record into Redis before anyone is
        told the session exists (another instance may be asked about it next)."""
        hub = self.runtime.hub
        assert hub is not None
        event_log = hub.log_for(session.id)
        event_log.own(last_id, static_fields(session))
        session.note_state()
        hub.publisher.force_whole_record(session.id)
        if not await event_log.drained(self.runtime.settings.redis_timeout_s * 2) or not event_log.owned:
            event_log.disown()
            hub.forget_log(session.id)
            raise StateUnavailable(f"Redis did not take the session: {hub.error or 'no answer'}", retry_after_s=5)

    async def _start(self, session: Session, on_end: OnEnd | None, place: Place) -> None:
        """Run ``session`` in ``place``, which counts as its live place from now on."""
        self._sessions[session.id] = session
        self._places.take(place)
        await self._nursery.start(self._own, session, on_end)

    def holds(self, session_id: str) -> bool:
        """Whether the session runs here, or ran here and is still kept."""
        return session_id in self._sessions

    def get(self, session_id: str) -> Session:
        """A session this instance runs."""
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound("no such session (it may have expired)")
        return session

    async def find(self, session_id: str) -> Session | RemoteSession:
        """A session of this instance, or (shared mode) of any other."""
        session = self._sessions.get(session_id)
        hub = self.runtime.hub
        if session is not None and not session.handed_over:
            return session
        if hub is None:
            return self.get(session_id)
        record = await self._record(session_id)
        max_readers = self.runtime.settings.max_readers_per_session
        return RemoteSession(record, session_id, hub.log_for, max_readers)

    async def _record(self, session_id: str) -> dict[str, str]:
        hub = self.runtime.hub
        assert hub is not None
        with as_state_unavailable():
            record = await hub.record(session_id)
        if record is None or "token_hash" not in record:
            raise SessionNotFound("no such session (it may have expired)")
        return record

    def reader_done(self, session_id: str) -> None:
        """Shared mode: this process's view of a log goes once nobody here reads or owns it."""
        if self.runtime.hub is not None:
            self.runtime.hub.forget_log(session_id)

    async def cancel(self, handle: Session | RemoteSession, reason: str) -> dict[str, object]:
        """DELETE: here, or asked of the owner (shared mode); returns the ended session's view."""
        if isinstance(handle, Session):
            handle.cancel(reason)
            await handle.done.wait()
            if not handle.handed_over:
                if self.runtime.hub is not None:  # so that every instance answers ``cancelled`` from now on
                    await self.runtime.hub.log_for(handle.id).drained(self.runtime.settings.redis_timeout_s)
                return handle.describe()
        with as_state_unavailable():
            return await self._cancel_remote(handle.id, reason)

    async def _cancel_remote(self, session_id: str, reason: str) -> dict[str, object]:
        """Ask its owner to end it (another process, or one it moved to), or end it here when nobody runs it."""
        hub = self.runtime.hub
        assert hub is not None
        settings = self.runtime.settings
        with trio.move_on_after(settings.redis_lease_s + settings.finish_timeout_s + 1):
            while True:
                remote = await self.find(session_id)
                if isinstance(remote, Session):
                    return await self.cancel(remote, reason)
                if remote.state.terminal:
                    return remote.describe()
                holder = await hub.lease_holder(session_id)
                if holder is None:  # nobody runs it: run it here, to end it properly
                    local = await self.local(remote)
                    return await self.cancel(local, reason)
                await hub.inbox.ask(holder, "cancel", session_id)
                await trio.sleep(HANDOVER_POLL_S * 4)
        raise StateUnavailable("the session's owner did not answer; try again", retry_after_s=2)

    def cancel_all(self, reason: str) -> None:
        for session in self._sessions.values():
            session.cancel(reason)

    async def drain(self, *, grace_s: float, finish_s: float) -> None:
        """Graceful shutdown: no new sessions; live ones get ``grace_s`` to end by themselves,
        then are finalized (their finals still delivered, ``end`` reason ``shutdown``), and
        whatever is left after ``finish_s`` more is cancelled."""
        self.draining = True
        log.info("draining %d live sessions (grace %.0f s)", self._places.live, grace_s)
        with trio.move_on_after(grace_s):
            await self._places.idle.wait()
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions.values()):
                if self.runtime.hub is not None and session.movable:
                    # shared mode: flush its finals and let go; its client reconnects to another instance
                    nursery.start_soon(session.hand_over)
                else:
                    nursery.start_soon(session.finish_early, "shutdown")
        with trio.move_on_after(finish_s):
            await self._places.idle.wait()
        self.cancel_all("shutdown")
        await self._places.idle.wait()

    async def _own(self, session: Session, on_end: OnEnd | None, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await session.run(task_status=task_status)
        except Exception:  # a bug in one session must not end every other session of the process
            log.exception("session %s crashed", session.id)
        finally:
            self._places.free()  # its place is free now; what follows is bookkeeping
            with trio.CancelScope(shield=True):
                await self._after(session, on_end)
        if session.handed_over:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
            if self.runtime.hub is not None:
                self.runtime.hub.forget_log(session.id)  # kept while readers here still follow it
            return
        await trio.sleep(self.runtime.settings.session_retention_s)
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        if self.runtime.hub is not None:
            self.runtime.hub.forget_log(session.id)
        log.debug("session %s forgotten after retention", session.id, extra={"session_id": session.id})

    async def _after(self, session: Session, on_end: OnEnd | None) -> None:
        """Once the session's task is over: its key's count released (unless it moved on), and
        in shared mode its last events written before the lease goes."""
        hub = self.runtime.hub
        settings = self.runtime.settings
        try:
            if not session.handed_over and on_end is not None:
                with trio.move_on_after(settings.redis_timeout_s):
                    await on_end()
            if hub is None:
                return
            event_log = hub.log_for(session.id)
            if event_log.owned and not await event_log.drained(settings.redis_outage_deadline_s):
                log.warning("session %s: its last events wait for Redis to come back", session.id)
                self._nursery.start_soon(self._let_go, session.id, settings.session_retention_s)
                return
            await self._let_go(session.id, 0)
        except (RedisUnavailable, ReserveError) as exc:
            log.warning("session %s: shared state not updated at its end (%s)", session.id, exc)
