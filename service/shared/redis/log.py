"""A session's event log on a Redis stream, as one process sees it.

The owner's appends wait in a bounded local buffer until the process's publisher writes
them, a batch every few milliseconds, through a script that refuses writers not holding
the session's lease; only then do readers see them, here or on any other instance. Where
this process does not own the session, the process's one follower task fills the log from
the stream for the local readers. Older events than the local window are read from Redis.

The record's fields go with the events, only those that changed; the final transcript, which
only grows and may reach hundreds of KiB in a long session, has a key of its own and goes as
what was added to it, appended where Redis holds exactly what was written before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from service.events import sse
from service.events.log import EVENT_OVERHEAD_BYTES, Changes, Event, HistoryLost
from service.shared.redis.failures import as_state_unavailable
from service.shared.redis.scripts import lease_key, log_key, record_key, text_key

Fetch = Callable[[str, int, int], Awaitable[list[Event]]]


RECORD_REFRESH_S = 5.0  # the whole record is written again this often (a Redis restored from an older save)
TEXT_FIELD = "final_text"  # the record field kept in a key of its own (``scripts.text_key``)


@dataclass(frozen=True, slots=True)
class TextWrite:
    """The final transcript's change: ``data`` appended where Redis holds ``at`` bytes of it,
    or (``at`` None) the whole text."""

    data: bytes
    at: int | None


@dataclass(frozen=True, slots=True)
class Batch:
    """What the publisher writes for one log in one round trip."""

    first: int  # the id of the first event
    events: list[Event]
    fields: dict[str, str]  # the record's fields that changed
    text: TextWrite | None


class Hub(Protocol):
    def wake_publisher(self, event_log: RedisEventLog) -> None: ...

    def wake_follower(self, event_log: RedisEventLog) -> None: ...

    async def fetch(self, session_id: str, after_id: int, limit: int) -> list[Event]: ...


class RedisEventLog:
    """Ids are contiguous: ``_window[i].id == _base + i + 1``."""

    def __init__(self, session_id: str, hub: Hub, *, window_bytes: int) -> None:
        self.session_id = session_id
        # its keys, built once for every write and renewal: lease, stream, record, transcript
        self.keys = (lease_key(session_id), log_key(session_id), record_key(session_id), text_key(session_id))
        self.stream_key = self.keys[1].encode()  # as XREAD names it
        self._hub = hub
        self._window: list[Event] = []
        self._window_bytes = 0
        self._max_window_bytes = window_bytes
        self._base = 0  # id before the first held in the window
        self._committed = 0  # the last id safe in Redis (what readers may see)
        self._pending: list[Event] = []  # owner: appended, not yet in Redis
        self._pending_bytes = 0
        self._state: Callable[[], dict[str, str]] | None = None  # owner: the record changed since the last write
        self._taken_state: Callable[[], dict[str, str]] | None = None  # what the publisher is writing now
        self._static: dict[str, str] = {}  # the record's fields that never change
        self._written: dict[str, str] = {}  # the record's fields as last written: only changes go out
        self._text: str | None = None  # the final transcript as Redis holds it (None: not known)
        self._text_bytes = 0
        self._taken_text = ""
        self.confirmed = False  # owner: a write went through since it took the log (its lease exists)
        self._written_at = 0.0
        self._close_requested = False
        self._closed = False
        self._changes = Changes()
        self.owned = False
        self.readers = 0  # event streams following it in this process
        self.waiters = 0
        self.pending_since: float | None = None  # when the oldest unwritten append was made

    @property
    def key_id(self) -> str:
        return self._static.get("key_id", "")

    @property
    def ticket(self) -> str:
        return self._static.get("ticket", "")

    # -- what readers see ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_id(self) -> int:
        return self._committed

    @property
    def size_bytes(self) -> int:
        return self._pending_bytes

    async def read(self, last_id: int, limit: int = 1000) -> list[Event]:
        if last_id >= self._committed:
            return []
        if last_id >= self._base:
            start = last_id - self._base
            return self._window[start : start + limit]
        with as_state_unavailable():  # the reader waits for Redis and asks again
            events = await self._hub.fetch(self.session_id, last_id, min(limit, max(1, self._base - last_id)))
        if not events or events[0].id != last_id + 1:
            raise HistoryLost(last_id + 1, events[0].id if events else self._base + 1)
        return events

    async def wait_after(self, last_id: int) -> None:
        self.waiters += 1
        if not self.owned:
            self._hub.wake_follower(self)
        try:
            await self._changes.wait(lambda: self._committed > last_id or self._closed)
        finally:
            self.waiters -= 1

    def nudge(self) -> None:
        self._changes.nudge()

    # -- the owner's side ------------------------------------------------------------
    def own(self, last_id: int, static: dict[str, str]) -> None:
        """This process now owns the session; its next event is ``last_id + 1``."""
        if last_id != self._committed:
            self._reset(last_id)
        self.owned = True
        self.confirmed = False
        self._static = static
        self._written = {}
        self._text = None

    def disown(self) -> None:
        """Another process owns it now: what was not written is not ours to write."""
        self.owned = False
        self._pending.clear()
        self._pending_bytes = 0
        self.pending_since = None
        self._state = None
        self._written = {}
        self._text = None
        self._close_requested = self._closed
        self._hub.wake_follower(self)
        self._changes.wake()

    def append(self, name: str, data: bytes) -> Event:
        if self._close_requested or not self.owned:
            raise RuntimeError("event log is closed")
        event_id = self._committed + len(self._pending) + 1
        event = Event(event_id, name, sse.frame(event_id, name, data))
        self._pending.append(event)
        self._pending_bytes += len(event.frame) + EVENT_OVERHEAD_BYTES
        if self.pending_since is None:
            self.pending_since = trio.current_time()
        self._hub.wake_publisher(self)
        return event

    def note_state(self, snapshot: Callable[[], dict[str, str]]) -> None:
        if self.owned:
            self._state = snapshot
            if self.pending_since is None:
                self.pending_since = trio.current_time()
            self._hub.wake_publisher(self)

    def close(self) -> None:
        self._close_requested = True
        if not self._pending:
            self._closed = True
            self._changes.wake()

    async def drained(self, timeout_s: float) -> bool:
        """Whether everything appended (and the record) got to Redis within ``timeout_s``."""
        self._hub.wake_publisher(self)
        with trio.move_on_after(timeout_s):
            while self.dirty:  # a nudge ends a wait early; this one goes on
                await self._changes.wait(lambda: not self.dirty)
            return True
        return False

    @property
    def dirty(self) -> bool:
        return self.owned and (bool(self._pending) or self._state is not None)

    def take_batch(self, *, whole_record: bool) -> Batch:
        """What the publisher writes next: the first id, the events, and the record's fields
        that changed since they were last written (all of them now and then, and after Redis
        lost the record)."""
        self._taken_state = self._state
        fields = self._state() if self._state is not None else {}
        text = fields.pop(TEXT_FIELD, None)
        now = trio.current_time()
        if not whole_record and now - self._written_at < RECORD_REFRESH_S:
            written = self._written
            fields = {name: value for name, value in fields.items() if written.get(name) != value}
        else:  # the whole record: it restarts the refresh clock too
            self._written_at = now
            if whole_record:
                fields = {**self._static, **fields}
        self._taken_text = text if text is not None else ""
        write = None if text is None else self._text_write(text, whole=whole_record)
        return Batch(self._committed + 1, list(self._pending), fields, write)

    def _text_write(self, text: str, *, whole: bool) -> TextWrite | None:
        """Only what was added since the last write, unless Redis may hold something else (a
        record written whole, a text not known or not a prefix of this one). The refresh
        leaves it be: an append is refused unless Redis holds the length written before."""
        written = self._text
        if whole or written is None or not text.startswith(written):
            return TextWrite(text.encode(), at=None)
        if len(text) == len(written):
            return None
        return TextWrite(text[len(written) :].encode(), at=self._text_bytes)

    def committed(self, batch: Batch) -> None:
        """The publisher wrote ``batch`` (the oldest pending events and the record's changes)."""
        events = batch.events
        self._written.update(batch.fields)
        if batch.text is not None:
            self._text = self._taken_text
            self._text_bytes = len(batch.text.data) + (batch.text.at or 0)
        self.confirmed = True
        del self._pending[: len(events)]
        self._pending_bytes = sum(len(e.frame) + EVENT_OVERHEAD_BYTES for e in self._pending)
        if self._state is self._taken_state:  # nothing newer was noted meanwhile
            self._state = None
        self.pending_since = trio.current_time() if self._pending or self._state else None
        self._extend(events)
        if self._close_requested and not self._pending:
            self._closed = True
        self._changes.wake()

    def refused(self) -> None:
        """The publisher cannot write (fenced): wake whoever waits for the writes."""
        self._changes.wake()

    # -- the follower's side ---------------------------------------------------------------
    def deliver(self, events: list[Event]) -> int:
        """Events read from the stream (ids after ``last_id``); an ``end`` closes the log. How
        many were new here."""
        fresh = [e for e in events if e.id > self._committed]
        if not fresh:
            return 0
        if fresh[0].id != self._committed + 1:
            self._reset(fresh[0].id - 1)  # a gap: older reads fall through to Redis and report it
        self._extend(fresh)
        if fresh[-1].name == "end":
            self._closed = True
        self._changes.wake()
        return len(fresh)

    def _extend(self, events: list[Event]) -> None:
        for event in events:
            self._window.append(event)
            self._window_bytes += len(event.frame) + EVENT_OVERHEAD_BYTES
        if events:
            self._committed = events[-1].id
        if self._window_bytes > self._max_window_bytes:
            self._trim()

    def _trim(self) -> None:
        """Down to 3/4 of the bound in one ``del``: once a long session's window is full, a
        ``pop(0)`` per event would move the whole list (20,000 events at 8 MiB) every time."""
        target = self._max_window_bytes * 3 // 4
        window = self._window
        drop = 0
        while self._window_bytes > target and drop < len(window) - 1:
            self._window_bytes -= len(window[drop].frame) + EVENT_OVERHEAD_BYTES
            drop += 1
        del window[:drop]
        self._base += drop

    def _reset(self, last_id: int) -> None:
        self._window.clear()
        self._window_bytes = 0
        self._base = self._committed = last_id
