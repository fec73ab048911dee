"""The event log: what a session publishes, kept so every reader gets all of it.

Readers keep their own cursor (the last id they saw), so a slow reader never blocks
the writer and never misses an event; resuming with Last-Event-ID is just a cursor.
``EventLog`` is the interface sessions use; ``MemoryEventLog`` keeps it in process, and
``service.shared.redis.log`` keeps it in a Redis stream shared by every instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from service.events import sse
from service.events.wakes import Wakes

# what an event costs beyond its frame's bytes: the Event, the bytes and int objects and
# the list slot (measured with tracemalloc on CPython 3.11), so that ``size_bytes``, and
# the RESERVE_MAX_LOG_BYTES bound on it, are memory rather than payload
EVENT_OVERHEAD_BYTES = 128


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    name: str
    frame: bytes  # the SSE bytes, built once however many readers send them (its data: line is the JSON)


class HistoryLost(Exception):
    """Events a reader asked for are gone (trimmed, or lost with a Redis that restarted
    without persistence): the reader is told, never silently skipped past them."""

    def __init__(self, missing_from: int, resumes_at: int) -> None:
        super().__init__(f"events {missing_from}..{resumes_at - 1} are no longer available")
        self.missing_from = missing_from
        self.resumes_at = resumes_at  # the first id still held


class EventLog(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def owned(self) -> bool:
        """Whether this process may append (a shared log's lease may have gone elsewhere)."""

    @property
    def last_id(self) -> int: ...

    def append(self, name: str, data: bytes) -> Event:
        """Add an event; raise RuntimeError once closed."""

    async def read(self, last_id: int, limit: int = ...) -> list[Event]:
        """Events with id > last_id, oldest first, at most ``limit``; raise HistoryLost when
        the next of them is gone."""

    async def wait_after(self, last_id: int) -> None:
        """Return once an event after ``last_id`` exists, the log is closed, or it is nudged."""

    def nudge(self) -> None:
        """Wake every ``wait_after`` (the readers' heartbeat tick, a stopping process)."""

    def close(self) -> None:
        """No more events; wakes every waiter."""

    @property
    def size_bytes(self) -> int:
        """Memory held for events not yet safe elsewhere (bounded by RESERVE_MAX_LOG_BYTES)."""

    def note_state(self, snapshot: Callable[[], dict[str, str]]) -> None:
        """The session's record changed; shared logs store ``snapshot()``, taken when the next
        batch of events is written (so it is exactly as of the last of them)."""

    async def drained(self, timeout_s: float) -> bool:
        """Whether everything appended is where every reader finds it, within ``timeout_s``
        (a shared log: written to Redis, so it outlives this process)."""


class Changes:
    """A log's waiters: woken at every change, and a nudge ends the waits begun before it.
    Both logs wait through this, so that what wakes a reader is the same in each."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._nudges = 0

    async def wait(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` holds or a nudge comes (checked again at every change)."""
        nudges = self._nudges
        while not done() and self._nudges == nudges:
            await self._event.wait()

    def wake(self) -> None:
        self._event.set()
        self._event = trio.Event()

    def nudge(self) -> None:
        self._nudges += 1
        self.wake()


class MemoryEventLog:
    """Ids are 1, 2, 3…, so an id is its list index plus one: reads are slices."""

    def __init__(self, wakes: Wakes | None = None) -> None:
        self._events: list[Event] = []
        self._changes = Changes()
        self._wake = self._changes.wake if wakes is None else lambda: wakes.soon(self._changes)
        self._closed = False
        self.size_bytes = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def owned(self) -> bool:
        return True  # one process: nobody else can take it

    @property
    def last_id(self) -> int:
        return len(self._events)

    def append(self, name: str, data: bytes) -> Event:
        if self._closed:
            raise RuntimeError("event log is closed")
        event_id = len(self._events) + 1
        event = Event(event_id, name, sse.frame(event_id, name, data))  # the JSON is kept once, in the frame
        self._events.append(event)
        self.size_bytes += len(event.frame) + EVENT_OVERHEAD_BYTES
        self._wake()  # with ``wakes``, together with other logs' readers a few ms later
        return event

    def read_after(self, last_id: int, limit: int = 1000) -> list[Event]:
        start = max(0, last_id)
        return self._events[start : start + limit]

    async def read(self, last_id: int, limit: int = 1000) -> list[Event]:
        return self.read_after(last_id, limit)

    def note_state(self, snapshot: Callable[[], dict[str, str]]) -> None:
        """Nothing to do: in one process the session itself is the record."""

    async def drained(self, timeout_s: float) -> bool:
        return True  # readers read it here, as soon as it is appended

    async def wait_after(self, last_id: int) -> None:
        await self._changes.wait(lambda: len(self._events) > last_id or self._closed)

    def nudge(self) -> None:
        self._changes.nudge()

    def close(self) -> None:
        self._closed = True
        self._changes.wake()
