"""The event streams this process is serving: one heartbeat timer for all of them, and the
means for a stopping process to end them.

An idle stream gets a comment line at least every ``RESERVE_SSE_HEARTBEAT_S`` so proxies
keep it open. A deadline per wait did that at the cost of a cancel scope for every event
sent (3.5-4.5 µs each here; 1-3% of the gateway's CPU per stream); instead one task nudges
every followed log a few times per interval, and a reader that saw only nudges for a whole
interval sends the comment.

A session handed over to another instance (shared mode) goes on there; its readers here must
not be held open until the server's graceful timeout and then cut. Ending them completes the
response, and an ``EventSource`` reconnects with its last id wherever the load balancer sends
it. Only a reader's idle wait is ended, never a write, so no frame is ever cut in half."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from service.events.log import EventLog

TICKS_PER_HEARTBEAT = 4  # an idle stream's comment comes 3/4 to 1 interval after its last write


class Readers:
    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.stopping = False
        self._logs: dict[EventLog, int] = {}  # followed logs, with how many readers follow each

    @contextmanager
    def following(self, event_log: EventLog) -> Iterator[None]:
        """A reader's lifetime: its log gets the ticks and the stop's nudge."""
        self._logs[event_log] = self._logs.get(event_log, 0) + 1
        try:
            yield
        finally:
            if left := self._logs[event_log] - 1:
                self._logs[event_log] = left
            else:
                del self._logs[event_log]

    async def tick(self) -> None:
        """Runs for the process's lifetime: nudges every followed log ``TICKS_PER_HEARTBEAT``
        times per heartbeat interval."""
        while True:
            await trio.sleep(self.heartbeat_s / TICKS_PER_HEARTBEAT)
            self._nudge_all()

    def stop(self) -> None:
        """End every reader once it has sent what the log holds."""
        self.stopping = True
        self._nudge_all()

    def _nudge_all(self) -> None:
        for event_log in list(self._logs):
            event_log.nudge()
