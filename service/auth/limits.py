"""Per-API-key abuse limits: live sessions at once, and sessions created per minute.

A pure core with an injectable clock: ``admit`` either counts a new session for a key
and returns None, or returns how many seconds to wait (the ``Retry-After``). Memory is
bounded: a key's sliding window holds at most its per-minute limit of timestamps, and
keys come only from the configured set (plus one ``anonymous`` when auth is off).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0
CONCURRENT_RETRY_S = 5  # nobody knows when a live session will end; ask for a short wait


class KeyLimits:
    """``max_concurrent`` and ``per_minute`` of 0 mean no limit of that kind."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = WINDOW_S,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.per_minute = per_minute
        self._clock = clock
        self._window_s = window_s
        self._live: dict[str, int] = {}
        self._created: dict[str, deque[float]] = {}

    def admit(self, key: str) -> int | None:
        """Count a new session for ``key``; or, over a limit, the seconds to wait (nothing counted)."""
        now = self._clock()
        created = self._created.get(key)
        if created is not None:
            while created and created[0] <= now - self._window_s:
                created.popleft()
        if self.max_concurrent and self._live.get(key, 0) >= self.max_concurrent:
            return CONCURRENT_RETRY_S
        if self.per_minute and created is not None and len(created) >= self.per_minute:
            return max(1, math.ceil(created[0] + self._window_s - now))
        self._live[key] = self._live.get(key, 0) + 1
        if self.per_minute:
            if created is None:
                created = self._created[key] = deque()
            created.append(now)
        return None

    def release(self, key: str) -> None:
        """A session of ``key`` ended (or was never created after all)."""
        live = self._live.get(key, 0) - 1
        if live > 0:
            self._live[key] = live
        else:
            self._live.pop(key, None)

    def live(self, key: str) -> int:
        return self._live.get(key, 0)

    def created_in_window(self, key: str) -> int:
        now = self._clock()
        return sum(1 for t in self._created.get(key, ()) if t > now - self._window_s)
