"""Per-key limits, single-use tokens and the token secret, held in Redis for every instance.

A key's live sessions are a sorted set of tickets scored by when they lapse (renewed while
the session lives), so a crashed instance's sessions stop counting by themselves.

Spending a token and counting a session change Redis before the answer comes back. When the
answer is lost (a timeout, a reset), the change is undone where it may have happened, as far
as Redis lets us, so that a client told 503 finds its token still good and no place held;
Redis failing is ``StateUnavailable`` (503) to the caller, never a bare Redis error.
"""

from __future__ import annotations

import contextlib
import secrets

import coredis

from service.auth.tokens import Claims
from service.errors import Forbidden
from service.shared.base import Refusal
from service.shared.redis.failures import RedisUnavailable, as_state_unavailable
from service.shared.redis.hub import RedisHub
from service.shared.redis.scripts import live_key, made_key, now_ms, spent_key

SECRET_KEY = "rsv:token-secret"
WINDOW_MS = 60_000


class RedisKeyCounters:
    def __init__(self, hub: RedisHub, *, max_concurrent: int, per_minute: int, live_ttl_s: float) -> None:
        self.hub = hub
        self.max_concurrent = max_concurrent
        self.per_minute = per_minute
        self._live_ttl_ms = int(live_ttl_s * 1000)

    async def admit(self, key: str, ticket: str) -> Refusal | None:
        if not (self.max_concurrent or self.per_minute):
            return None
        with as_state_unavailable():
            try:
                reply = await self.hub.call(
                    "admit",
                    self.hub.admit_script(
                        keys=[live_key(key), made_key(key)],
                        args=[now_ms(), ticket, self.max_concurrent, self.per_minute, self._live_ttl_ms, WINDOW_MS],
                    ),
                )
            except RedisUnavailable:
                with contextlib.suppress(RedisUnavailable):  # the ticket may have been counted: not any more
                    await self._forget_ticket(key, ticket)
                raise
        verdict = int(reply[0])
        if verdict == 0:
            return None
        if verdict == 1:
            return Refusal(int(reply[1]), f"{self.max_concurrent} live sessions")
        return Refusal(int(reply[1]), f"{self.per_minute} new sessions a minute")

    async def release(self, key: str, ticket: str) -> None:
        if self.max_concurrent or self.per_minute:
            with as_state_unavailable():
                await self._forget_ticket(key, ticket)

    async def _forget_ticket(self, key: str, ticket: str) -> None:
        await self.hub.call("ZREM", self.hub.client.zrem(live_key(key), [ticket]))


class RedisSingleUse:
    async def consume(self, claims: Claims) -> None:
        key = spent_key(claims.token_id)
        ttl_ms = max(1000, claims.expires_at * 1000 - now_ms())
        mark = secrets.token_hex(8)  # this attempt's: only what it wrote may be undone
        with as_state_unavailable():
            try:
                first = await self.hub.call(
                    "SET", self.hub.client.set(key, mark, condition=coredis.PureToken.NX, px=ttl_ms)
                )
            except RedisUnavailable:
                with contextlib.suppress(RedisUnavailable):  # spent by this attempt, perhaps: not any more
                    await self.hub.delete_if(key, mark)
                raise
        if not first:
            raise Forbidden("this token was already used; ask for a new one")

    async def forget(self, claims: Claims) -> None:
        with as_state_unavailable():
            await self.hub.call("DEL", self.hub.client.delete([spent_key(claims.token_id)]))

    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub


async def shared_token_secret(hub: RedisHub) -> bytes:
    """The deployment's token secret: the first instance to ask makes it (SET NX), all share it."""
    candidate = secrets.token_hex(32)
    await hub.call("SET", hub.client.set(SECRET_KEY, candidate, condition=coredis.PureToken.NX))
    secret = await hub.call("GET", hub.client.get(SECRET_KEY))
    return bytes(secret)
