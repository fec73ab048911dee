"""One process's link to Redis: the publisher, the follower, leases and the control inbox.

The round trips made many times a second (the publisher's, the follower's, the inbox's, and
the renewer's, one per second for every owned session) each go over a lean connection of
their task's own (``service.shared.resp``): coredis's request
path cost more CPU than the rest of the round trip. Everything else goes through coredis.

- **Publisher.** Owned logs' appends go out together, one script call for every session with
  something new, every ``redis_flush_interval_s``: one round trip for everything this process
  published since the last one (a pipeline of one call per session cost more CPU). The script
  refuses a writer that does not hold the lease (fencing). Redis down: the batch stays
  buffered (bounded) and is retried with backoff; a session whose oldest unwritten event is
  older than ``redis_outage_deadline_s`` fails.
- **Follower.** One task per process reads every followed stream with one ``XREAD BLOCK``, at
  most once per flush interval while events flow, and fans events out to the local readers. A
  read blocks at most ``FOLLOW_BLOCK_MS``; one that fails or is cancelled throws its connection
  away (coredis 6.9.0 never gave a cancelled blocking command's pool slot back, measured; the
  lean connection has no pool). Every other command is non-blocking.
- **Leases.** The owner renews every owned lease in one script call (per 256 sessions), every
  third of the lease's life.
- **Control inbox.** Other instances ask this one to cancel or move a session it owns by
  pushing onto its list; it is polled without blocking.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import coredis
import coredis.exceptions
import trio

from service.events import sse
from service.events.log import Event
from service.observability.metrics import Metrics
from service.settings import Settings
from service.shared import redis_codec, resp
from service.shared import redis_scripts as scripts
from service.shared.redis_log import RedisEventLog

log = logging.getLogger("reserve.redis")

FOLLOW_BLOCK_MS = 100
CONTROL_POLL_S = 0.05
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
MAX_BATCH_SESSIONS = 256  # sessions per script call
REDIS_ERRORS = (coredis.exceptions.RedisError, resp.ReplyError, resp.ProtocolError, OSError, trio.TooSlowError)

ControlHandler = Callable[[str, str], Awaitable[None]]  # (command, session id)
FencedHandler = Callable[[str, str], None]  # (session id, why)


class RedisUnavailable(Exception):
    """Redis did not answer; the message says how."""


def connect(url: str, *, timeout_s: float) -> coredis.Redis[bytes]:
    return coredis.Redis.from_url(
        url,
        stream_timeout=timeout_s,
        connect_timeout=timeout_s,
        pool_timeout=timeout_s,
        max_connections=64,
        retry_policy=coredis.retry.NoRetryPolicy(),
    )


class RedisHub:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.instance = secrets.token_hex(8)  # this process, as a lease holder
        self.client = connect(settings.redis_url, timeout_s=settings.redis_timeout_s)
        self._append = self.client.register_script(scripts.APPEND)
        self._renew = self.client.register_script(scripts.RENEW)
        self._release = self.client.register_script(scripts.RELEASE)
        self.admit_script = self.client.register_script(scripts.ADMIT)
        pool, timeout_s = self.client.connection_pool, settings.redis_timeout_s
        self._publish_link = resp.RespConnection(pool, timeout_s=timeout_s)
        self._inbox_link = resp.RespConnection(pool, timeout_s=timeout_s)
        self._follow_link = resp.RespConnection(pool, timeout_s=timeout_s + FOLLOW_BLOCK_MS / 1000)
        self._renew_link = resp.RespConnection(pool, timeout_s=timeout_s)
        self.logs: dict[str, RedisEventLog] = {}
        self._publish_wake = trio.Event()
        self._dirty: set[RedisEventLog] = set()  # logs with something to write
        self._follow_wake = trio.Event()
        self.on_control: ControlHandler | None = None
        self.on_fenced: FencedHandler | None = None
        self.on_outage: FencedHandler | None = None
        self.error: str | None = None  # the last failure, until a round trip succeeds again
        self._whole_record: set[str] = set()

    # -- lifetime ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self.client, trio.open_nursery() as nursery:
                try:
                    await self.call("PING", self.client.ping())
                except RedisUnavailable as exc:
                    log.error("Redis at %s does not answer: %s", _safe(self.settings.redis_url), exc)
                nursery.start_soon(self._publisher)
                nursery.start_soon(self._follower)
                nursery.start_soon(self._renewer)
                nursery.start_soon(self._inbox)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):  # run by a cancellation: closing each must not be cut short
                for link in (self._publish_link, self._inbox_link, self._follow_link, self._renew_link):
                    await link.aclose()

    async def call(self, what: str, request: Awaitable[Any]) -> Any:
        """One round trip with a deadline; Redis failures become ``RedisUnavailable``."""
        with self.translated(what):  # coredis's own timeouts bound it (cancelling could leak a pool slot)
            result = await request
        self.metrics.redis_round_trip(what)
        self.error = None
        return result

    @contextlib.contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Redis's failures, bare or in a group (coredis's pool raises some from a task group),
        become one ``RedisUnavailable``; anything else passes through."""
        try:
            yield
        except REDIS_ERRORS as exc:
            self._failed(what, exc)
            raise RedisUnavailable(self.error or str(exc)) from exc
        except BaseExceptionGroup as group:
            redis_part, rest = group.split(REDIS_ERRORS)
            if redis_part is None or rest is not None:
                raise
            first = redis_part.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            self._failed(what, first)
            raise RedisUnavailable(self.error or str(first)) from group

    def _failed(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")
        if self.error is None:
            log.warning("Redis round trip failed (%s)", message)
        self.error = message
        self.metrics.redis_error(what)

    # -- logs ---------------------------------------------------------------------------
    def log_for(self, session_id: str) -> RedisEventLog:
        event_log = self.logs.get(session_id)
        if event_log is None:
            event_log = RedisEventLog(session_id, self, window_bytes=self.settings.max_log_bytes)
            self.logs[session_id] = event_log
        return event_log

    def forget_log(self, session_id: str) -> None:
        event_log = self.logs.get(session_id)
        if event_log is not None and not event_log.owned and event_log.readers == 0:
            del self.logs[session_id]

    def force_whole_record(self, session_id: str) -> None:
        """The next write of this session's record carries every field (a new record)."""
        self._whole_record.add(session_id)

    def wake_publisher(self, event_log: RedisEventLog) -> None:
        """``event_log`` has something to write: it goes in the next batch."""
        self._dirty.add(event_log)
        self._publish_wake.set()

    def wake_follower(self) -> None:
        self._follow_wake.set()

    async def fetch(self, session_id: str, after_id: int, limit: int) -> list[Event]:
        entries = await self.call(
            "XRANGE", self.client.xrange(scripts.log_key(session_id), f"(0-{after_id}", "+", count=limit)
        )
        return [redis_codec.event(entry.identifier, entry.field_values) for entry in entries]

    # -- the publisher -------------------------------------------------------------------
    async def _publisher(self) -> None:
        interval = self.settings.redis_flush_interval_s
        backoff = 0.0
        while True:
            await self._publish_wake.wait()
            self._publish_wake = trio.Event()
            await trio.sleep(backoff or interval)  # let a batch gather
            dirty = [event_log for event_log in self._dirty if event_log.dirty]
            self._dirty.clear()  # what changes during the round trip marks itself again
            if not dirty:
                continue
            try:
                for start in range(0, len(dirty), MAX_BATCH_SESSIONS):
                    await self._publish(dirty[start : start + MAX_BATCH_SESSIONS])
                backoff = 0.0
            except RedisUnavailable:
                self._dirty.update(dirty)
                backoff = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, backoff * 2))
                self._check_outage(dirty)
                self._publish_wake.set()  # try again after the backoff

    async def _publish(self, dirty: list[RedisEventLog]) -> None:
        """One script call for every dirty log: one round trip, however many sessions."""
        settings = self.settings
        ttl_s = str(math.ceil(self._live_ttl_s()))
        lease_ms = str(int(settings.redis_lease_s * 1000))
        keys: list[str] = []
        args: list[str | bytes] = [self.instance, str(settings.redis_max_events_per_session), ttl_s, lease_ms]
        batches: list[tuple[RedisEventLog, list[Event], dict[str, str]]] = []
        written = 0
        for event_log in dirty:
            sid = event_log.session_id
            first, events, fields = event_log.take_batch(whole_record=sid in self._whole_record)
            keys += [scripts.lease_key(sid), scripts.log_key(sid), scripts.record_key(sid)]
            args += [str(first), str(len(fields)), str(len(events))]
            for name, value in fields.items():
                args += [name, value]
            for event in events:
                args += [event.name, sse.frame_data(event.frame)]
            batches.append((event_log, events, fields))
            written += len(events)
        statuses = await self.call("append", self._append_all(keys, args, len(batches)))
        self.metrics.redis_batch(written)  # the batch as a whole (per session it was nearly always 1)
        for (event_log, events, fields), status in zip(batches, statuses, strict=True):
            sid = event_log.session_id
            if status == "OK":
                self._whole_record.discard(sid)
                event_log.committed(events, fields)
            elif status == "MISSING":  # Redis lost the record (restarted without persistence)
                log.warning("session %s: Redis lost its record; writing it again", sid)
                self._whole_record.add(sid)
                self.wake_publisher(event_log)
            else:  # FENCED or CONFLICT: another instance owns the session now
                log.warning("session %s: Redis refused our append (%s); another instance owns it", sid, status)
                event_log.disown()
                if self.on_fenced is not None:
                    self.on_fenced(sid, status.lower())

    async def _append_all(self, keys: list[str], args: list[str | bytes], sessions: int) -> list[str]:
        """The APPEND script's status for each session, checked inside the round trip so that a
        malformed answer is a Redis failure like any other (``call`` translates it)."""
        replies = await redis_codec.eval_script(self._publish_link, self._append, keys, args)
        statuses = [
            reply[0].decode()
            for reply in (replies if isinstance(replies, list) else [])
            if isinstance(reply, list) and reply and isinstance(reply[0], bytes)
        ]
        if not isinstance(replies, list) or len(statuses) != len(replies) or len(statuses) != sessions:
            raise resp.ProtocolError(f"the append script answered {replies!r:.80}")
        return statuses

    def _check_outage(self, dirty: list[RedisEventLog]) -> None:
        deadline = self.settings.redis_outage_deadline_s
        now = trio.current_time()
        for event_log in dirty:
            since = event_log.pending_since
            if since is not None and now - since > deadline and self.on_outage is not None:
                self.on_outage(event_log.session_id, self.error or "Redis unavailable")

    def _live_ttl_s(self) -> float:
        settings = self.settings
        return max(
            settings.idle_session_timeout_s + settings.audio_reconnect_grace_s + settings.session_retention_s,
            settings.redis_lease_s * 3,
        )

    # -- the follower --------------------------------------------------------------------
    async def _follower(self) -> None:
        backoff = 0.0
        while True:
            read_some = await self._follow()  # returns once a read failed
            backoff = BACKOFF_FIRST_S if read_some else min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, backoff * 2))
            await trio.sleep(backoff)

    async def _follow(self) -> bool:
        """Follow until a read fails (its connection is gone then; the next read makes one);
        whether any read succeeded first (a fresh failure, not the same outage going on)."""
        read_some = False
        while True:
            followed = {
                event_log.stream_key: event_log
                for event_log in self.logs.values()
                if not event_log.owned and not event_log.closed and event_log.waiters
            }
            if not followed:
                await self._follow_wake.wait()
                self._follow_wake = trio.Event()
                continue
            self._follow_wake = trio.Event()
            started = trio.current_time()
            request: list[resp.Arg] = ["XREAD", "COUNT", 500, "BLOCK", FOLLOW_BLOCK_MS, "STREAMS", *followed]
            request += [b"0-%d" % event_log.last_id for event_log in followed.values()]
            try:
                reply = redis_codec.stream_entries(await self._follow_link.call(*request))
                self.metrics.redis_round_trip("XREAD")
            except REDIS_ERRORS as exc:
                self._failed("XREAD", exc)
                return read_some
            read_some = True
            for key, entries in reply:
                event_log = followed.get(key)
                # still this process's log for the session, and still someone else's to write
                if event_log is not None and self.logs.get(event_log.session_id) is event_log and not event_log.owned:
                    event_log.deliver([redis_codec.event(identifier, fields) for identifier, fields in entries])
            # at most one read per flush interval while events flow: the publishers write
            # that often, so a read per interval takes a whole flush of every one of them
            await trio.sleep_until(started + self.settings.redis_flush_interval_s if reply else started)

    # -- leases ----------------------------------------------------------------------------
    async def take_lease(self, session_id: str) -> bool:
        lease_ms = int(self.settings.redis_lease_s * 1000)
        key = scripts.lease_key(session_id)
        taken = await self.call("SET", self.client.set(key, self.instance, condition=coredis.PureToken.NX, px=lease_ms))
        return bool(taken)

    async def lease_holder(self, session_id: str) -> str | None:
        holder = await self.call("GET", self.client.get(scripts.lease_key(session_id)))
        return holder.decode() if holder else None

    async def release_lease(self, session_id: str) -> None:
        await self.call("release", self._release(keys=[scripts.lease_key(session_id)], args=[self.instance]))

    async def _renewer(self) -> None:
        settings = self.settings
        while True:
            await trio.sleep(settings.redis_lease_s / 3)
            # a log whose first write is still on its way has no lease yet to renew (the write
            # takes it): renewing it would find none and fence the session being created
            owned = [sid for sid, event_log in self.logs.items() if event_log.owned and event_log.confirmed]
            if not owned:
                continue
            lease_ms, ttl_s = str(int(settings.redis_lease_s * 1000)), str(math.ceil(self._live_ttl_s()))
            lapse_ms = str(now_ms() + int(settings.redis_lease_s * 3000))
            try:
                with self.translated("renew"):
                    await self._renew_all(owned, lease_ms, ttl_s, lapse_ms)
            except RedisUnavailable:
                pass

    async def _renew_all(self, owned: list[str], lease_ms: str, ttl_s: str, lapse_ms: str) -> None:
        """One script call per batch of sessions: every owned lease, its session's keys'
        lifetimes, its key's live ticket, on a link of its own (a coredis pipeline of one call
        per session cost 18-20 µs of CPU per session renewed, this 1.7 µs, measured with 200
        sessions against a local redis-server)."""
        for start in range(0, len(owned), MAX_BATCH_SESSIONS):
            batch = owned[start : start + MAX_BATCH_SESSIONS]
            keys: list[str] = []
            args: list[str | bytes] = [self.instance, lease_ms, ttl_s, lapse_ms]
            for sid in batch:
                event_log = self.logs[sid]
                keys += [scripts.lease_key(sid), scripts.log_key(sid), scripts.record_key(sid)]
                keys.append(scripts.live_key(event_log.key_id))
                args.append(event_log.ticket)
            renewed = await redis_codec.eval_script(self._renew_link, self._renew, keys, args)
            if not isinstance(renewed, list) or len(renewed) != len(batch):
                raise resp.ProtocolError(f"the renew script answered {renewed!r:.80}")
            for sid, held in zip(batch, renewed, strict=True):
                if held != 1 and sid in self.logs:
                    self.logs[sid].disown()
                    if self.on_fenced is not None:
                        self.on_fenced(sid, "lease lost")
        self.metrics.redis_round_trip("renew")
        self.error = None

    # -- records -------------------------------------------------------------------------------
    async def record(self, session_id: str) -> dict[str, str] | None:
        raw = await self.call("HGETALL", self.client.hgetall(scripts.record_key(session_id)))
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- control -------------------------------------------------------------------------------
    async def ask(self, holder: str, command: str, session_id: str) -> None:
        """Ask the instance ``holder`` to ``cancel`` or ``move`` a session it owns."""
        key = scripts.control_key(holder)
        async with self.client.pipeline(transaction=False) as pipe:
            pushed = pipe.rpush(key, [f"{command} {session_id}"])
            pipe.expire(key, 60)
        await self.call("RPUSH", pushed)

    async def _inbox(self) -> None:
        key = scripts.control_key(self.instance)
        while True:
            await trio.sleep(CONTROL_POLL_S)
            try:
                messages = await self.call("LPOP", self._inbox_link.call("LPOP", key, 64))
            except RedisUnavailable:
                await trio.sleep(BACKOFF_MAX_S)
                continue
            for message in messages if isinstance(messages, list) else ():
                if not isinstance(message, bytes):
                    continue
                command, _, session_id = message.decode().partition(" ")
                if self.on_control is not None:
                    await self.on_control(command, session_id)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def now_ms() -> int:
    return int(time.time() * 1000)
