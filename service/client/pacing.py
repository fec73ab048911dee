"""Real-time pacing: a frame goes when its audio would have been captured live."""

from __future__ import annotations

import trio


class Pacer:
    """Holds each frame back until its audio would have been captured live (``bytes_per_second``)."""

    def __init__(self, bytes_per_second: float | None) -> None:
        self.bytes_per_second = bytes_per_second
        self.start: float | None = None

    def due(self, sent_bytes: int) -> float | None:
        """When the frame starting at ``sent_bytes`` may go (trio clock); None: right away."""
        if not self.bytes_per_second:
            return None
        if self.start is None:
            self.start = trio.current_time()
        return self.start + sent_bytes / self.bytes_per_second

    async def wait(self, sent_bytes: int, stop: trio.Event) -> None:
        """Sleep until the frame is due, or until ``stop`` is set."""
        due = self.due(sent_bytes)
        if due is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_at(due):
            await stop.wait()
