"""A busy gateway waits a moment before each wait for I/O, so one pass of the loop handles more.

Under load the trio loop wakes once or twice per audio frame: at a hundred streams about
1,500 times a second, each wake a blocking ``epoll_wait`` that another process's run on the
core follows, so the gateway resumes with cold caches to handle one socket's frame. Each
such wake cost about 50 µs of CPU here, a fifth of what a frame costs. Sleeping a moment
before the wait, once the loop has nothing to run, lets the frames of many streams arrive
and be handled in one pass (the way a network card moderates its interrupts).

Only a loop that is busy but not loaded does it: one that went idle at least
``BUSY_WAKES_PER_S`` times in the last window, where gathering pays, and ran tasks for less than
``LOADED_FRACTION`` of it. A quiet gateway (one request's few round trips to Redis, a health
check) waits for I/O at once, as without it; so does a loaded one, which gathers by itself
(each pass finds more ready) and where a pause would add to every queue (at 300 streams in Redis
mode it took p99 added from 30-60 ms to 83-93 ms). The price is latency: an event that arrives
during a pause waits for it, at most ``pause_s`` per wake (5 ms by default), and a timer due
during it fires that much late. ``RESERVE_IO_COALESCE_S=0`` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

BUSY_WAKES_PER_S = 250  # below this, waits are far apart and a pause would gather next to nothing
LOADED_FRACTION = 0.5  # running tasks this much of a window: the loop is loaded, pausing would queue
HOLD_FRACTION = 0.5  # a pausing loop stays busy while it wakes at least this share of the times it can
WINDOW_S = 0.1


class IoCoalescing(trio.abc.Instrument):
    """Installed in the gateway's trio run (``trio.lowlevel.add_instrument``) while it serves."""

    def __init__(
        self,
        pause_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        loaded_fraction: float = LOADED_FRACTION,
    ) -> None:
        self.pause_s = pause_s
        self._loaded_fraction = loaded_fraction
        self._sleep = sleep
        self._clock = clock
        self._busy_at = BUSY_WAKES_PER_S * WINDOW_S  # wakes in one window that make the next busy
        # pausing, the loop wakes at most once a pause: past 4 ms that is under ``_busy_at``, and
        # without this it would stop pausing every other window
        self._still_busy_at = min(self._busy_at, HOLD_FRACTION * WINDOW_S / pause_s) if pause_s > 0 else 0.0
        self._window_ends = 0.0
        self._waits = 0
        self._running_s = 0.0  # in this window, between waking from a wait and the next one
        self._woke_at: float | None = None
        self._pausing = False

    def before_io_wait(self, timeout: float) -> None:
        if timeout <= 0:  # tasks are ready to run: trio only polls, nothing to gather
            return
        now = self._clock()
        if self._woke_at is not None:
            self._running_s += now - self._woke_at
            self._woke_at = None
        if now >= self._window_ends:  # a window that ended long ago counts as quiet
            recent = now < self._window_ends + WINDOW_S
            busy = self._waits >= (self._still_busy_at if self._pausing else self._busy_at)
            loaded = self._running_s >= self._loaded_fraction * WINDOW_S
            self._pausing = recent and busy and not loaded
            self._waits = 0
            self._running_s = 0.0
            self._window_ends = now + WINDOW_S
        self._waits += 1
        if self._pausing:
            self._sleep(min(timeout, self.pause_s))  # never past the next deadline's wait

    def after_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self._woke_at = self._clock()
