"""How many live sessions each worker of one supervisor carries, and where a new one goes.

A worker's cost per stream falls with its load: each pass of its loop, each write to Riva and
each batch to Redis serves every stream that is ready, so a worker at 50 streams spent
0.34-0.37% of a core per stream and one at 150 0.21% (docs/benchmark.md, eighth round), and
two workers sharing 100 sessions cost 32-39% more than one carrying them all. So new sessions
fill the first worker up to ``RESERVE_WORKER_FILL`` live sessions before the next gets any, the
way a scheduler packs work onto the fewest machines, and past that point on every worker they
go to the least loaded. Nothing is lost by packing: a worker's sessions
survive its death as any instance's do (their clients reconnect and another takes them over).

The counts are a shared file of one 32-bit number per worker, mapped into every worker: a
worker writes only its own, at every change, and reads the others' when it places a session.
It reads a sibling's count at most one creation late, so a burst can put a few sessions past
the fill; ``RESERVE_MAX_SESSIONS`` stays each worker's hard limit.
"""

from __future__ import annotations

import collections
import mmap
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

SLOT = struct.Struct("<i")
AWAY = -1  # a worker that takes nothing (draining, or without its socket for siblings)
EXPECTED_S = 1.0  # a creation kept here that has not reached the registry by then never will


class LoadBoard:
    """The live sessions of ``count`` workers (slots 1 to ``count``), in the file ``path``,
    which the first worker to open it creates."""

    def __init__(self, path: Path, count: int) -> None:
        self.count = count
        size = SLOT.size * count
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # zeros: a worker not started yet carries nothing
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)  # the mapping keeps the file

    def set(self, slot: int, live: int) -> None:
        SLOT.pack_into(self._map, SLOT.size * (slot - 1), live)

    def load(self, slot: int) -> int:
        (value,) = SLOT.unpack_from(self._map, SLOT.size * (slot - 1))
        return int(value)

    def loads(self) -> list[int]:
        """Every worker's count, in slot order (``AWAY`` for one that takes nothing)."""
        return [value for (value,) in SLOT.iter_unpack(self._map)]

    def close(self) -> None:
        self._map.close()


class OwnLoad:
    """What this worker tells its siblings it carries, in its slot of ``board``: the registry's
    count (live sessions and places held), and the creations it kept that have yet to reach the
    registry. In a burst a worker reads hundreds of creations before their handlers run, and each
    must count at once or the burst overfills it; one that never gets there counts for
    ``EXPECTED_S``. ``AWAY`` once the worker withdraws, whatever the registry says after."""

    def __init__(self, board: LoadBoard, slot: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._board = board
        self._slot = slot
        self._clock = clock
        self._registered = 0
        self._expected: collections.deque[float] = collections.deque()
        self._waiting = trio.Event()  # set while creations are expected (``expire`` has work)
        self._away = False
        self._publish()

    def registered(self, count: int) -> None:
        self._registered = count
        self._publish()

    def expect(self) -> None:
        """A creation kept here, read but not yet in the registry."""
        self._expected.append(self._clock())
        self._waiting.set()
        self._publish()

    def arrived(self) -> None:
        """A creation holds its place in the registry now: one fewer is expected."""
        if self._expected:
            self._expected.popleft()
        self._publish()

    async def expire(self) -> None:
        """Count out each expected creation ``EXPECTED_S`` after it was kept, whether or not
        anything else changes here: one that never reached the registry (its client's key was
        refused, say) kept counting in an idle worker, and siblings placed new sessions by it.
        Sleeps while nothing is expected."""
        while True:
            if not self._expected:
                self._waiting = trio.Event()
                await self._waiting.wait()
            await trio.sleep(max(0.0, self._expected[0] + EXPECTED_S - self._clock()) if self._expected else 0)
            self._publish()

    def withdraw(self) -> None:
        self._away = True
        self._board.set(self._slot, AWAY)

    def _publish(self) -> None:
        stale = self._clock() - EXPECTED_S
        while self._expected and self._expected[0] <= stale:
            self._expected.popleft()
        if not self._away:
            self._board.set(self._slot, self._registered + len(self._expected))


def choose(loads: Sequence[int], *, here: int, fill: int, limit: int) -> int | None:
    """The slot for a new session, given every worker's count: the first with fewer than
    ``fill``, else the least loaded (``here`` on a tie: no handoff), never one at ``limit`` or
    away; None when every worker is (the caller serves it here, and refuses it if full)."""
    open_slots = [(live, slot) for slot, live in enumerate(loads, start=1) if 0 <= live < limit]
    if not open_slots:
        return None
    for live, slot in open_slots:
        if live < fill:
            return slot
    fewest = min(live for live, _ in open_slots)
    return here if loads[here - 1] == fewest else min(slot for live, slot in open_slots if live == fewest)
