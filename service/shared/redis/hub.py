"""One process's link to Redis, and the tasks that use it.

The hub holds the process's logs, its coredis client (for the occasional round trip: a
session's record, a lease taken or looked up, an admission) and its instance id as a lease
holder. Its four tasks each have a module and a lean connection of their own
(``service.shared.redis.resp``), because their round trips come many times a second and
coredis's request path cost more CPU than the rest of the round trip:

- the publisher (``publisher``): every owned log's appends, one script call per flush interval;
- the follower (``follower``): every followed stream in one ``XREAD BLOCK``;
- the renewer (``renewer``): every held lease, one script call per 256 sessions;
- the control inbox (``inbox``): other instances' requests to cancel or move a session.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import coredis
import coredis.retry
import trio

from service.events.log import Event
from service.observability.metrics import Metrics
from service.settings import Settings
from service.shared.redis import codec, resp, scripts
from service.shared.redis.failures import REDIS_ERRORS, RedisUnavailable
from service.shared.redis.follower import Follower
from service.shared.redis.inbox import Inbox
from service.shared.redis.log import TEXT_FIELD, RedisEventLog
from service.shared.redis.publisher import Publisher
from service.shared.redis.renewer import Renewer

log = logging.getLogger("reserve.redis")

ControlHandler = Callable[[str, str], Awaitable[None]]  # (command, session id)
FencedHandler = Callable[[str, str], None]  # (session id, why)


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
        self._release = self.client.register_script(scripts.RELEASE)
        self.admit_script = self.client.register_script(scripts.ADMIT)
        self.logs: dict[str, RedisEventLog] = {}
        self.on_control: ControlHandler | None = None
        self.on_fenced: FencedHandler | None = None
        self.on_outage: FencedHandler | None = None
        self.error: str | None = None  # the last failure, until a round trip succeeds again
        self.publisher = Publisher(self)
        self.follower = Follower(self)
        self.renewer = Renewer(self)
        self.inbox = Inbox(self)

    def lean_link(self, *, extra_timeout_s: float = 0.0) -> resp.RespConnection:
        """A connection of a task's own, to where the client connects."""
        timeout_s = self.settings.redis_timeout_s + extra_timeout_s
        return resp.RespConnection(self.client.connection_pool, timeout_s=timeout_s)

    # -- lifetime ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        tasks = (self.publisher, self.follower, self.renewer, self.inbox)
        try:
            async with self.client, trio.open_nursery() as nursery:
                try:
                    await self.call("PING", self.client.ping())
                except RedisUnavailable as exc:
                    log.error("Redis at %s does not answer: %s", _safe(self.settings.redis_url), exc)
                for task in tasks:
                    nursery.start_soon(task.run)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):  # run by a cancellation: closing each must not be cut short
                for task in tasks:
                    await task.link.aclose()

    async def call(self, what: str, request: Awaitable[Any]) -> Any:
        """One round trip with a deadline; Redis failures become ``RedisUnavailable``."""
        with self.translated(what):  # coredis's own timeouts bound it (cancelling could leak a pool slot)
            result = await request
        self.succeeded(what)
        return result

    @contextlib.contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Redis's failures, bare or in a group (coredis's pool raises some from a task group),
        become one ``RedisUnavailable``; anything else passes through."""
        try:
            yield
        except REDIS_ERRORS as exc:
            self.failed(what, exc)
            raise RedisUnavailable(self.error or str(exc)) from exc
        except BaseExceptionGroup as group:
            redis_part, rest = group.split(REDIS_ERRORS)
            if redis_part is None or rest is not None:
                raise
            first = redis_part.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            self.failed(what, first)
            raise RedisUnavailable(self.error or str(first)) from group

    def succeeded(self, what: str) -> None:
        """A round trip went through: counted, and the last failure is over."""
        self.metrics.redis_round_trip(what)
        self.error = None

    def failed(self, what: str, exc: BaseException) -> None:
        """A round trip failed: logged once per outage, counted every time."""
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

    def wake_publisher(self, event_log: RedisEventLog) -> None:
        self.publisher.wake(event_log)

    def wake_follower(self, event_log: RedisEventLog) -> None:
        self.follower.wake(event_log)

    async def fetch(self, session_id: str, after_id: int, limit: int) -> list[Event]:
        entries = await self.call(
            "XRANGE", self.client.xrange(scripts.log_key(session_id), f"(0-{after_id}", "+", count=limit)
        )
        return [codec.event(entry.identifier, entry.field_values) for entry in entries]

    async def record(self, session_id: str) -> dict[str, str] | None:
        """The session's record with its final transcript (a key of its own), read together."""
        with self.translated("record"):
            async with self.client.pipeline(transaction=True) as pipe:
                fields = pipe.hgetall(scripts.record_key(session_id))
                text = pipe.get(scripts.text_key(session_id))
            raw, final_text = await fields, await text
        self.succeeded("record")
        if not raw:
            return None
        record = {k.decode(): v.decode() for k, v in raw.items()}
        if final_text is not None or TEXT_FIELD not in record:  # a record from before the text's key keeps its own
            record[TEXT_FIELD] = final_text.decode() if final_text else ""
        return record

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
        await self.delete_if(scripts.lease_key(session_id), self.instance)

    async def delete_if(self, key: str, value: str) -> None:
        """Delete ``key`` only while it holds ``value``: what this process wrote, nobody else."""
        await self.call("release", self._release(keys=[key], args=[value]))


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
