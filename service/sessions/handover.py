"""The registry's side facing other instances (shared mode): taking a session over from its
owner (who hands it over if alive), adopting one whose owner is gone, and answering what
other instances ask of this one (cancel, move), or what Redis says (fenced, unavailable)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from service.errors import ReserveError, SessionBusy, SessionClosed, StateUnavailable
from service.sessions.record import RemoteSession, config_of, static_fields
from service.sessions.session import Session
from service.sessions.state import State
from service.shared.redis.failures import RedisUnavailable, as_state_unavailable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from service.sessions.places import Place
    from service.sessions.runtime import Runtime

log = logging.getLogger("reserve.registry")

OnEnd = Callable[[], Awaitable[None]]
HANDOVER_POLL_S = 0.05


class Handover:
    """Mixed into ``Registry``, whose state it shares (declared here for the type checker)."""

    if TYPE_CHECKING:
        runtime: Runtime
        draining: bool
        _sessions: dict[str, Session]
        _taking: set[str]
        _nursery: trio.Nursery

        def _holding_place(self) -> AbstractContextManager[Place]: ...

        async def _record(self, session_id: str) -> dict[str, str]: ...

        async def _start(self, session: Session, on_end: OnEnd | None, place: Place) -> None: ...

    async def adopt_orphans(self) -> None:
        """Shared mode: a live session nobody holds (its owner died, or handed it over at shutdown,
        and its client did not come back) is taken by an instance that has readers following it,
        so they still get its ``end``: ``client_gone`` after the reconnect grace.

        Nobody must hold it on two scans in a row: between a move's release and the next owner's
        take the lease is briefly free, and adopting then would race the move (found under load
        with two workers). A session this instance is itself taking (``_taking``) is left alone."""
        hub = self.runtime.hub
        assert hub is not None
        unheld: set[str] = set()  # nobody held these at the last scan
        while True:
            await trio.sleep(self.runtime.settings.redis_lease_s)
            followed = [
                sid
                for sid, event_log in list(hub.logs.items())
                if not event_log.owned and not event_log.closed and event_log.readers and sid not in self._sessions
            ]
            seen_unheld, unheld = unheld, set()
            for session_id in followed:
                try:
                    if await hub.lease_holder(session_id) is not None or self.draining:
                        continue
                    if session_id not in seen_unheld:
                        unheld.add(session_id)  # adopted at the next scan if still nobody's
                        continue
                    record = await self._record(session_id)
                    if State(record.get("state", "waiting")).terminal:
                        continue
                    if session_id in self._taking or session_id in self._sessions:
                        continue  # its audio socket came here meanwhile
                    with self._holding_place() as place:
                        self._taking.add(session_id)
                        try:
                            await self._take_over(session_id, place, ask=False)
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
        with self._holding_place() as place:
            self._taking.add(handle.id)
            try:
                with as_state_unavailable():
                    return await self._take_over(handle.id, place)
            finally:
                self._taking.discard(handle.id)

    async def _take_over(self, session_id: str, place: Place, *, ask: bool = True) -> Session:
        """``ask``: ask a live owner to hand over and wait for it (an audio socket came here);
        without, take the session only if nobody holds it (adopting an orphan)."""
        hub = self.runtime.hub
        assert hub is not None
        settings = self.runtime.settings
        holder = await hub.lease_holder(session_id)
        if holder is not None and holder != hub.instance and ask:
            await hub.inbox.ask(holder, "move", session_id)
        try:
            with trio.move_on_after(settings.redis_lease_s + settings.finish_timeout_s + 1 if ask else 0):
                while not await hub.take_lease(session_id):  # noqa: ASYNC110 - the lease lives in Redis
                    await trio.sleep(HANDOVER_POLL_S)
            if not await hub.lease_holder(session_id) == hub.instance:
                raise SessionBusy("the session's owner did not let go of it; try again")
            record = await self._record(session_id)
            if record.get("state") in ("finished", "failed", "cancelled"):
                raise SessionClosed(f"session is {record['state']}; create a new one")
            session = Session(self.runtime, config_of(record), session_id=session_id, token_digest=record["token_hash"])
            session.restore(record)
        except BaseException:
            # the lease may be ours (even a SET whose answer was lost took it): nobody runs the
            # session here, so let go now rather than make the client's retry wait out the lease
            await self._give_back_lease(session_id)
            raise
        event_log = hub.log_for(session_id)
        event_log.own(int(record.get("last_id", "0")), static_fields(session))
        event_log.confirmed = True  # the lease is ours already: the renewer keeps it from now on
        old = self._sessions.pop(session_id, None)
        if old is not None and old.handed_over:
            self._sessions.pop(session_id, None)
        kind = "move" if record.get("handed_over") else "takeover"
        self.runtime.metrics.redis_takeover(kind)
        log.info("session %s taken over (%s)", session_id, "its owner handed it over" if kind == "move" else "no owner")
        await self._start(session, self._release_of(session), place)
        session.expect_socket()
        return session

    async def _give_back_lease(self, session_id: str) -> None:
        """Release the lease if this instance holds it (compare-and-delete), within one round
        trip's deadline and even while cancelled; if Redis cannot be told, it lapses."""
        hub = self.runtime.hub
        assert hub is not None
        with trio.CancelScope(shield=True), trio.move_on_after(self.runtime.settings.redis_timeout_s):
            try:
                await hub.release_lease(session_id)
            except RedisUnavailable:
                log.debug("session %s: the lease it failed to take over lapses by itself", session_id)

    def _release_of(self, session: Session) -> OnEnd | None:
        counters = self.runtime.counters
        if counters is None or not session.owner or not session.ticket:
            return None
        key_id, ticket = session.owner, session.ticket

        async def release() -> None:
            await counters.release(key_id, ticket)

        return release

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
