"""Readers of in-memory logs woken together, once every few milliseconds, not at every event.

Waking a reader the moment its session appends costs a pass of trio's scheduler (and, the
loop being otherwise idle, an ``epoll_wait``) for that one reader; at a hundred streams
with an event each every 100 ms that is a thousand passes a second for one write each.
Gathered over ``RESERVE_EVENT_WAKE_INTERVAL_S``, the readers whose logs changed run in one
pass, as Redis mode's readers already do behind its batched writes. The price is latency:
an event waits at most one interval (5 ms by default) before its readers are woken. ``0``
wakes at once. A nudge or a close always wakes at once.
"""

from __future__ import annotations

from typing import Protocol

import trio


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Wakes:
    """Owned by the gateway's nursery (``run``); until ``run`` starts, and with interval 0,
    ``soon`` wakes at once, so nothing ever waits on a task that is not there."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._due: dict[Wakeable, None] = {}  # insertion-ordered: readers woken in the order their logs changed
        self._armed = trio.Event()
        self._running = False

    def soon(self, waiters: Wakeable) -> None:
        if not self._running:
            waiters.wake()
            return
        if not self._due:
            self._armed.set()
        self._due[waiters] = None

    async def run(self) -> None:
        if self.interval_s <= 0:
            return
        self._running = True
        try:
            while True:
                await self._armed.wait()
                self._armed = trio.Event()
                await trio.sleep(self.interval_s)
                self._wake_due()
        finally:  # cancelled (the gateway stopping): nothing is left waiting for a pass that never comes
            self._running = False
            self._wake_due()

    def _wake_due(self) -> None:
        due, self._due = self._due, {}
        for waiters in due:
            waiters.wake()
