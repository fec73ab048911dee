"""The registry: which sessions exist, how many may, and how long they are kept.

In shared mode (Redis) it is also this instance's door to the others' sessions: a session
another instance owns is found through its record, followed through its shared log, and
taken over when its audio socket comes here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from service.errors import (
    Overloaded,
    ReserveError,
    SessionBusy,
    SessionClosed,
    SessionNotFound,
    ShuttingDown,
    StateUnavailable,
)
from service.sessions.config import RecognitionSettings
from service.sessions.record import RemoteSession, config_of, static_fields
from service.sessions.runtime import Runtime
from service.sessions.session import Session
from service.sessions.state import State
from service.shared.redis_hub import RedisUnavailable

log = logging.getLogger("reserve.registry")

OnEnd = Callable[[], Awaitable[None]]
HANDOVER_POLL_S = 0.05


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
        self._taking: set[str] = set()
        self.draining = False
        hub = runtime.hub
        if hub is not None:
            hub.on_control = self._control
            hub.on_fenced = self._fenced
            hub.on_outage = self._outage

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

    def _check_room(self) -> None:
        settings = self.runtime.settings
        if self.draining:
            raise ShuttingDown("the gateway is shutting down; try another instance", retry_after_s=5)
        if self._live >= settings.max_sessions:
            raise Overloaded(
                f"the gateway is at its limit of {settings.max_sessions} live sessions; try again shortly",
                retry_after_s=5,
            )

    async def create(
        self, config: RecognitionSettings, *, owner: str | None = None, ticket: str = "", on_end: OnEnd | None = None
    ) -> Session:
        """Start a session; ``owner`` is the API key id that asked (for its tokens), ``on_end``
        runs once the session has ended (it releases the key's live-session count)."""
        self._check_room()
        session = Session(self.runtime, config)
        session.owner = owner
        session.ticket = ticket
        if self.runtime.hub is not None:
            await self._publish_record(session, last_id=0)
        self.runtime.metrics.session_created()
        await self._start(session, on_end)
        return session

    async def _publish_record(self, session: Session, *, last_id: int) -> None:
        """Shared mode: own the session's log and get its record into Redis before anyone is
        told the session exists (another instance may be asked about it next)."""
        hub = self.runtime.hub
        assert hub is not None
        event_log = hub.log_for(session.id)
        event_log.own(last_id, static_fields(session))
        session.note_state()
        hub.force_whole_record(session.id)
        if not await event_log.drained(self.runtime.settings.redis_timeout_s * 2):
            event_log.disown()
            hub.forget_log(session.id)
            raise StateUnavailable(f"Redis did not take the session: {hub.error or 'no answer'}", retry_after_s=5)

    async def _start(self, session: Session, on_end: OnEnd | None) -> None:
        self._sessions[session.id] = session
        self._live += 1
        self._idle = trio.Event()
        await self._nursery.start(self._own, session, on_end)

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
        try:
            record = await hub.record(session_id)
        except RedisUnavailable as exc:
            raise StateUnavailable(f"shared state unavailable: {exc}", retry_after_s=2) from None
        if record is None or "token_hash" not in record:
            raise SessionNotFound("no such session (it may have expired)")
        return record

    def reader_done(self, session_id: str) -> None:
        """Shared mode: this process's view of a log goes once nobody here reads or owns it."""
        if self.runtime.hub is not None:
            self.runtime.hub.forget_log(session_id)

    async def adopt_orphans(self) -> None:
        """Shared mode: a live session nobody holds (its owner died, or handed it over at shutdown,
        and its client did not come back) is taken by an instance that has readers following it,
        so they still get its ``end``: ``client_gone`` after the reconnect grace."""
        hub = self.runtime.hub
        assert hub is not None
        while True:
            await trio.sleep(self.runtime.settings.redis_lease_s)
            followed = [
                sid
                for sid, event_log in list(hub.logs.items())
                if not event_log.owned and not event_log.closed and event_log.readers and sid not in self._sessions
            ]
            for session_id in followed:
                try:
                    if await hub.lease_holder(session_id) is not None or self.draining:
                        continue
                    record = await self._record(session_id)
                    if State(record.get("state", "waiting")).terminal:
                        continue
                    self._check_room()
                    self._taking.add(session_id)
                    try:
                        await self._take_over(session_id, ask=False)
                    finally:
                        self._taking.discard(session_id)
                    log.info("session %s adopted: its owner is gone", session_id)
                except (RedisUnavailable, ReserveError) as exc:
                    log.debug("session %s not adopted: %s", session_id, exc)

    async def local(self, handle: Session | RemoteSession) -> Session:
        """The session run here: ``handle`` itself, or (shared mode) taken over from its owner,
        which flushes and lets go first if it is alive; a dead owner's lease lapses first."""
        if isinstance(handle, Session):
            return handle
        hub = self.runtime.hub
        assert hub is not None
        if handle.state.terminal:
            raise SessionClosed(f"session is {handle.state.value}; create a new one")
        if handle.id in self._taking:
            raise SessionBusy("another audio socket is already streaming to this session")
        self._check_room()
        self._taking.add(handle.id)
        try:
            return await self._take_over(handle.id)
        except RedisUnavailable as exc:
            raise StateUnavailable(f"shared state unavailable: {exc}", retry_after_s=2) from None
        finally:
            self._taking.discard(handle.id)

    async def _take_over(self, session_id: str, *, ask: bool = True) -> Session:
        """``ask``: ask a live owner to hand over and wait for it (an audio socket came here);
        without, take the session only if nobody holds it (adopting an orphan)."""
        hub = self.runtime.hub
        assert hub is not None
        settings = self.runtime.settings
        holder = await hub.lease_holder(session_id)
        if holder is not None and holder != hub.instance and ask:
            await hub.ask(holder, "move", session_id)
        with trio.move_on_after(settings.redis_lease_s + settings.finish_timeout_s + 1 if ask else 0):
            while not await hub.take_lease(session_id):  # noqa: ASYNC110 - the lease lives in Redis
                await trio.sleep(HANDOVER_POLL_S)
        if not await hub.lease_holder(session_id) == hub.instance:
            raise SessionBusy("the session's owner did not let go of it; try again")
        record = await self._record(session_id)
        if record.get("state") in ("finished", "failed", "cancelled"):
            await hub.release_lease(session_id)
            raise SessionClosed(f"session is {record['state']}; create a new one")
        session = Session(self.runtime, config_of(record), session_id=session_id, token_digest=record["token_hash"])
        session.restore(record)
        event_log = hub.log_for(session_id)
        event_log.own(int(record.get("last_id", "0")), static_fields(session))
        old = self._sessions.pop(session_id, None)
        if old is not None and old.handed_over:
            self._sessions.pop(session_id, None)
        self.runtime.metrics.redis_takeover("move" if holder else "takeover")
        log.info("session %s taken over (from %s)", session_id, "a live owner" if holder else "no owner")
        await self._start(session, self._release_of(session))
        session.expect_socket()
        return session

    def _release_of(self, session: Session) -> OnEnd | None:
        counters = self.runtime.counters
        if counters is None or not session.owner or not session.ticket:
            return None
        key_id, ticket = session.owner, session.ticket

        async def release() -> None:
            await counters.release(key_id, ticket)

        return release

    async def cancel(self, handle: Session | RemoteSession, reason: str) -> dict[str, object]:
        """DELETE: here, or asked of the owner (shared mode); returns the ended session's view."""
        if isinstance(handle, Session):
            handle.cancel(reason)
            await handle.done.wait()
            if not handle.handed_over:
                if self.runtime.hub is not None:  # so that every instance answers ``cancelled`` from now on
                    await self.runtime.hub.log_for(handle.id).drained(self.runtime.settings.redis_timeout_s)
                return handle.describe()
        hub = self.runtime.hub
        assert hub is not None
        settings = self.runtime.settings
        with trio.move_on_after(settings.redis_lease_s + settings.finish_timeout_s + 1):
            while True:
                remote = await self.find(handle.id)
                if isinstance(remote, Session):
                    return await self.cancel(remote, reason)
                if remote.state.terminal:
                    return remote.describe()
                holder = await hub.lease_holder(handle.id)
                if holder is None:  # nobody runs it: run it here, to end it properly
                    local = await self.local(remote)
                    return await self.cancel(local, reason)
                await hub.ask(holder, "cancel", handle.id)
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
        log.info("draining %d live sessions (grace %.0f s)", self._live, grace_s)
        with trio.move_on_after(grace_s):
            await self._idle.wait()
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions.values()):
                if self.runtime.hub is not None and session.movable:
                    # shared mode: flush its finals and let go; its client reconnects to another instance
                    nursery.start_soon(session.hand_over)
                else:
                    nursery.start_soon(session.finish_early, "shutdown")
        with trio.move_on_after(finish_s):
            await self._idle.wait()
        self.cancel_all("shutdown")
        await self._idle.wait()

    # -- what other instances ask of this one (shared mode) --------------------------------
    async def _control(self, command: str, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.state.terminal or session.handed_over:
            return
        if command == "cancel":
            session.cancel("cancelled")
        elif command == "move":
            self._nursery.start_soon(session.hand_over)

    def _fenced(self, session_id: str, why: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.lost(why)

    def _outage(self, session_id: str, why: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            settings = self.runtime.settings
            session.fail_now(
                StateUnavailable(f"Redis took no events for {settings.redis_outage_deadline_s:g} s ({why})")
            )

    async def _own(self, session: Session, on_end: OnEnd | None, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await session.run(task_status=task_status)
        finally:
            self._live -= 1  # its place is free now; what follows is bookkeeping
            if self._live == 0:
                self._idle.set()
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

    async def _let_go(self, session_id: str, patience_s: float) -> None:
        """Once its last events are written (waiting up to ``patience_s`` more), stop owning an
        ended session's log and release its lease."""
        hub = self.runtime.hub
        assert hub is not None
        event_log = hub.log_for(session_id)
        if not event_log.owned:
            return
        if patience_s and not await event_log.drained(patience_s):
            log.warning("session %s: its last events could not be written to Redis", session_id)
        event_log.disown()
        try:
            with trio.move_on_after(self.runtime.settings.redis_timeout_s):
                await hub.release_lease(session_id)
        except RedisUnavailable:
            pass  # it lapses by itself
