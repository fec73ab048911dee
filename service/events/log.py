"""The event log: what a session publishes, kept so every reader gets all of it.

Readers keep their own cursor (the last id they saw), so a slow reader never blocks
the writer and never misses an event; resuming with Last-Event-ID is just a cursor.
``EventLog`` is the interface sessions use; ``MemoryEventLog`` keeps it in process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import trio

from service.events import sse

# what an event costs beyond its frame's bytes: the Event, the bytes and int objects and
# the list slot (measured with tracemalloc on CPython 3.11), so that ``size_bytes``, and
# the RESERVE_MAX_LOG_BYTES bound on it, are memory rather than payload
EVENT_OVERHEAD_BYTES = 128


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    name: str
    frame: bytes  # the SSE bytes, built once however many readers send them (its data: line is the JSON)


class EventLog(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def last_id(self) -> int: ...

    def append(self, name: str, data: bytes) -> Event:
        """Add an event; raise RuntimeError once closed."""

    def read_after(self, last_id: int, limit: int = ...) -> list[Event]:
        """Events with id > last_id, oldest first, at most ``limit``."""

    async def wait_after(self, last_id: int) -> None:
        """Return once an event after ``last_id`` exists or the log is closed."""

    def close(self) -> None:
        """No more events; wakes every waiter."""


class MemoryEventLog:
    """Ids are 1, 2, 3…, so an id is its list index plus one: reads are slices."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._changed = trio.Event()
        self._closed = False
        self.size_bytes = 0

    @property
    def closed(self) -> bool:
        return self._closed

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
        self._wake()
        return event

    def read_after(self, last_id: int, limit: int = 1000) -> list[Event]:
        start = max(0, last_id)
        return self._events[start : start + limit]

    async def wait_after(self, last_id: int) -> None:
        while len(self._events) <= last_id and not self._closed:
            await self._changed.wait()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
