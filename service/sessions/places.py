"""One process's places among ``RESERVE_MAX_SESSIONS``, and what it tells sibling workers it carries.

A session holds a place from the check of the limit until it ends: first as arriving (a
creation or takeover under way, across its Redis round trips), then, once its task starts, as
live. Counted only once live, a burst of creations all passed the check (one worker of 200
took 250); counted as both while its task started, a burst was refused with room left (a
worker at 148 live and 117 arriving, for a burst that could bring it 200 at most). Realtime
sockets waiting for their first audio count as well, for where siblings place new sessions,
not against the limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import trio


class Placing(Protocol):
    """Where this worker stands among its siblings (``service.serving.colocation``)."""

    def new_id(self) -> str:
        """An id for a new session created here, one whose connections come to this worker."""

    def carrying(self, live: int) -> None:
        """This worker's live sessions, places held and realtime sockets waiting to start one, for
        the siblings that place new ones."""

    def arriving(self) -> None:
        """A creation placed here has reached the registry (it is no longer expected)."""


class Place:
    """One of ``RESERVE_MAX_SESSIONS`` held for a session being created or taken over; ``taken``
    once the session runs in it (from then on it counts as live, no longer as arriving)."""

    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken = False


class Places:
    """The counts, told to ``placing`` (several workers) at every change; ``idle`` is set while
    no session is live."""

    def __init__(self, limit: int, placing: Placing | None) -> None:
        self.limit = limit
        self._placing = placing
        self.live = 0
        self._arriving = 0  # places held by creations and takeovers under way
        self._sockets_waiting = 0  # realtime sockets open here before their first audio
        self.idle = trio.Event()
        self.idle.set()

    @property
    def full(self) -> bool:
        return self.live + self._arriving >= self.limit

    @contextlib.contextmanager
    def holding(self) -> Iterator[Place]:
        """A place held from here until its session runs (``take``) or the block ends without."""
        place = Place()
        self._arriving += 1
        self._tell()
        try:
            yield place
        finally:
            if not place.taken:
                self._arriving -= 1
                self._tell()

    def take(self, place: Place) -> None:
        """The session of ``place`` runs from now on: the place is a live session's."""
        place.taken = True
        self._arriving -= 1
        self.live += 1
        self._tell()
        self.idle = trio.Event()

    def free(self) -> None:
        """A live session ended."""
        self.live -= 1
        self._tell()
        if self.live == 0:
            self.idle.set()

    @contextlib.contextmanager
    def socket_waiting(self) -> Iterator[Callable[[], None]]:
        """A realtime socket open here, whose session starts with its first audio, maybe long
        after: siblings that place new sessions count it here from the start, or sockets that
        talk later would all be placed on a worker that looked empty, and refused there once
        they talked. It counts for placement only (not against the limit) until the block ends
        or the callable it gives is called, as its session is created."""
        if self._placing is not None:
            self._placing.arriving()  # the socket itself was the creation placed here
        self._sockets_waiting += 1
        self._tell()
        waiting = True

        def starting() -> None:
            nonlocal waiting
            if waiting:
                waiting = False
                self._sockets_waiting -= 1
                self._tell()

        try:
            yield starting
        finally:
            starting()

    def _tell(self) -> None:
        if self._placing is not None:
            self._placing.carrying(self.live + self._arriving + self._sockets_waiting)
