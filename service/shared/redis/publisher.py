"""The publisher: every owned log's appends, one script call per flush interval.

One round trip carries everything this process published since the last one (a pipeline of
one call per session cost more CPU). The script refuses a writer that does not hold the lease
(fencing). Redis down: the batch stays buffered (bounded) and is retried with backoff; a
session whose oldest unwritten event is older than ``redis_outage_deadline_s`` fails.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from service.events import sse
from service.shared.redis import codec, resp, scripts
from service.shared.redis.failures import RedisUnavailable, next_backoff
from service.shared.redis.log import Batch, RedisEventLog, TextWrite

if TYPE_CHECKING:
    from service.shared.redis.hub import RedisHub

log = logging.getLogger("reserve.redis")


class Publisher:
    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub
        self.link = hub.lean_link()
        self._script = hub.client.register_script(scripts.APPEND)
        self._wake = trio.Event()
        self._dirty: set[RedisEventLog] = set()  # logs with something to write
        self._whole_record: set[str] = set()

    def wake(self, event_log: RedisEventLog) -> None:
        """``event_log`` has something to write: it goes in the next batch."""
        self._dirty.add(event_log)
        self._wake.set()

    def force_whole_record(self, session_id: str) -> None:
        """The next write of this session's record carries every field (a new record)."""
        self._whole_record.add(session_id)

    async def run(self) -> None:
        interval = self.hub.settings.redis_flush_interval_s
        backoff = 0.0
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.sleep(backoff or interval)  # let a batch gather
            dirty = [event_log for event_log in self._dirty if event_log.dirty]
            self._dirty.clear()  # what changes during the round trip marks itself again
            if not dirty:
                continue
            try:
                for batch in scripts.per_call(dirty):
                    await self._publish(batch)
                backoff = 0.0
            except RedisUnavailable:
                self._dirty.update(dirty)
                backoff = next_backoff(backoff)
                self._check_outage(dirty)
                self._wake.set()  # try again after the backoff

    async def _publish(self, dirty: list[RedisEventLog]) -> None:
        """One script call for every dirty log: one round trip, however many sessions."""
        hub, settings = self.hub, self.hub.settings
        ttl_s = str(math.ceil(scripts.session_ttl_s(settings)))
        lease_ms = str(int(settings.redis_lease_s * 1000))
        keys: list[str] = []
        args: list[str | bytes] = [hub.instance, str(settings.redis_max_events_per_session), ttl_s, lease_ms]
        batches: list[tuple[RedisEventLog, Batch]] = []
        written = 0
        for event_log in dirty:
            sid = event_log.session_id
            batch = event_log.take_batch(whole_record=sid in self._whole_record)
            keys += event_log.keys
            args += [str(batch.first), str(len(batch.fields)), str(len(batch.events)), *_text_args(batch.text)]
            for name, value in batch.fields.items():
                args += [name, value]
            for event in batch.events:
                args += [event.name, sse.frame_data(event.frame)]
            batches.append((event_log, batch))
            written += len(batch.events)
        statuses = await hub.call("append", self._append_all(keys, args, len(batches)))
        hub.metrics.redis_batch(written)  # the batch as a whole (per session it was nearly always 1)
        for (event_log, batch), status in zip(batches, statuses, strict=True):
            sid = event_log.session_id
            if status == "OK":
                self._whole_record.discard(sid)
                event_log.committed(batch)
            elif status in ("MISSING", "TEXT"):  # Redis lost the record or part of the text (a restart)
                log.warning("session %s: Redis lost its record (%s); writing it again", sid, status.lower())
                self._whole_record.add(sid)
                self.wake(event_log)
            else:  # FENCED or CONFLICT: another instance owns the session now
                log.warning("session %s: Redis refused our append (%s); another instance owns it", sid, status)
                self._whole_record.discard(sid)  # not ours to write again: nothing left to remember
                event_log.disown()
                if hub.on_fenced is not None:
                    hub.on_fenced(sid, status.lower())

    async def _append_all(self, keys: list[str], args: list[str | bytes], sessions: int) -> list[str]:
        """The APPEND script's status for each session, checked inside the round trip so that a
        malformed answer is a Redis failure like any other (``call`` translates it)."""
        replies = await codec.eval_per_session(self.link, "append", self._script, keys, args, sessions)
        statuses = [
            reply[0].decode() for reply in replies if isinstance(reply, list) and reply and isinstance(reply[0], bytes)
        ]
        if len(statuses) != sessions:
            raise resp.ProtocolError(f"the append script answered {replies!r:.80}")
        return statuses

    def _check_outage(self, dirty: list[RedisEventLog]) -> None:
        hub = self.hub
        deadline = hub.settings.redis_outage_deadline_s
        now = trio.current_time()
        for event_log in dirty:
            since = event_log.pending_since
            if since is not None and now - since > deadline and hub.on_outage is not None:
                hub.on_outage(event_log.session_id, hub.error or "Redis unavailable")


def _text_args(text: TextWrite | None) -> tuple[str, str, bytes]:
    """The APPEND script's mode, offset and data for the final transcript's change."""
    if text is None:
        return "", "", b""
    if text.at is None:
        return "=", "", text.data
    return "+", str(text.at), text.data
