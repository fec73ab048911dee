"""The follower: one task per process reads every followed stream and fans events out.

One ``XREAD BLOCK`` covers every log this process reads but does not own, at most once per
flush interval while events flow. A log that gains a waiting reader asks to be followed;
the follower keeps it while it is someone else's, open and waited on, so a read costs what
is followed, not every log of the process (most of which it owns).

A read blocks at most ``FOLLOW_BLOCK_MS``; one that fails or is cancelled throws its
connection away (coredis 6.9.0 never gave a cancelled blocking command's pool slot back,
measured; the lean connection has no pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from service.shared.redis import codec, resp
from service.shared.redis.failures import BACKOFF_FIRST_S, REDIS_ERRORS, next_backoff

if TYPE_CHECKING:
    from service.shared.redis.hub import RedisHub
    from service.shared.redis.log import RedisEventLog

FOLLOW_BLOCK_MS = 100


class Follower:
    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub
        self.link = hub.lean_link(extra_timeout_s=FOLLOW_BLOCK_MS / 1000)
        self._wake = trio.Event()
        self._followed: dict[bytes, RedisEventLog] = {}  # by stream key

    def wake(self, event_log: RedisEventLog) -> None:
        """``event_log`` gained a waiting reader (or lost its owner here): read its stream too."""
        self._followed[event_log.stream_key] = event_log
        self._wake.set()

    def _still_followed(self) -> dict[bytes, RedisEventLog]:
        """The logs worth a read now; the others ask again when a reader waits on them."""
        logs = self.hub.logs
        self._followed = {
            key: event_log
            for key, event_log in self._followed.items()
            if event_log.waiters
            and not event_log.owned
            and not event_log.closed
            and logs.get(event_log.session_id) is event_log
        }
        return self._followed

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
            followed = self._still_followed()  # a log that asks during the read is read next time
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
                    fresh = event_log.deliver([codec.event(identifier, fields) for identifier, fields in entries])
                    hub.metrics.redis_followed(fresh)
            # at most one read per flush interval while events flow: the publishers write
            # that often, so a read per interval takes a whole flush of every one of them
            await trio.sleep_until(started + hub.settings.redis_flush_interval_s if reply else started)
