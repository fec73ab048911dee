"""The follower: one task per process reads every followed stream and fans events out.

One ``XREAD BLOCK`` covers every log this process reads but does not own, at most once per
flush interval while events flow. A read blocks at most ``FOLLOW_BLOCK_MS``; one that fails
or is cancelled throws its connection away (coredis 6.9.0 never gave a cancelled blocking
command's pool slot back, measured; the lean connection has no pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from service.shared.redis import codec, resp
from service.shared.redis.failures import BACKOFF_FIRST_S, REDIS_ERRORS, next_backoff

if TYPE_CHECKING:
    from service.shared.redis.hub import RedisHub

FOLLOW_BLOCK_MS = 100


class Follower:
    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub
        self.link = hub.lean_link(extra_timeout_s=FOLLOW_BLOCK_MS / 1000)
        self._wake = trio.Event()

    def wake(self) -> None:
        """A log gained a waiting reader: read its stream too."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.0
        while True:
            read_some = await self._follow()  # returns once a read failed
            backoff = BACKOFF_FIRST_S if read_some else next_backoff(backoff)
            await trio.sleep(backoff)

    async def _follow(self) -> bool:
        """Follow until a read fails (its connection is gone then; the next read makes one);
        whether any read succeeded first (a fresh failure, not the same outage going on)."""
        hub = self.hub
        read_some = False
        while True:
            followed = {
                event_log.stream_key: event_log
                for event_log in hub.logs.values()
                if not event_log.owned and not event_log.closed and event_log.waiters
            }
            if not followed:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            self._wake = trio.Event()
            started = trio.current_time()
            request: list[resp.Arg] = ["XREAD", "COUNT", 500, "BLOCK", FOLLOW_BLOCK_MS, "STREAMS", *followed]
            request += [b"0-%d" % event_log.last_id for event_log in followed.values()]
            try:
                reply = codec.stream_entries(await self.link.call(*request))
                hub.metrics.redis_round_trip("XREAD")
            except REDIS_ERRORS as exc:
                hub.failed("XREAD", exc)
                return read_some
            read_some = True
            for key, entries in reply:
                event_log = followed.get(key)
                # still this process's log for the session, and still someone else's to write
                if event_log is not None and hub.logs.get(event_log.session_id) is event_log and not event_log.owned:
                    event_log.deliver([codec.event(identifier, fields) for identifier, fields in entries])
            # at most one read per flush interval while events flow: the publishers write
            # that often, so a read per interval takes a whole flush of every one of them
            await trio.sleep_until(started + hub.settings.redis_flush_interval_s if reply else started)
