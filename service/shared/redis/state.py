"""Shared mode's start-up: the deployment's token secret, per-key counters and spent tokens."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from service.settings import Settings
from service.shared.redis.auth import RedisKeyCounters, RedisSingleUse, shared_token_secret
from service.shared.redis.failures import RedisUnavailable
from service.shared.redis.hub import RedisHub

log = logging.getLogger("reserve.redis")
SECRET_RETRY_S = 1.0


class Shared:
    """What the guard takes from Redis. The secret arrives once Redis answers (start-up does not
    wait for it: readiness says why meanwhile, and tokens are refused until then)."""

    def __init__(self, hub: RedisHub, settings: Settings) -> None:
        self.hub = hub
        self.counters = RedisKeyCounters(
            hub,
            max_concurrent=settings.max_sessions_per_key,
            per_minute=settings.sessions_per_minute_per_key,
            live_ttl_s=settings.redis_lease_s * 3,
        )
        self.single_use = RedisSingleUse(hub)
        self.secret: bytes | None = None
        self.needs_secret = not settings.token_secret.get_secret_value()
        self.ready = trio.Event()
        if not self.needs_secret:
            self.ready.set()

    async def fetch_secret(self, on_secret: Callable[[bytes], None]) -> None:
        """Until Redis answers: the secret every instance signs tokens with (SET NX)."""
        while self.needs_secret and self.secret is None:
            try:
                self.secret = await shared_token_secret(self.hub)
            except RedisUnavailable as exc:
                log.warning("waiting for Redis to share the token secret: %s", exc)
                await trio.sleep(SECRET_RETRY_S)
        if self.secret is not None:
            on_secret(self.secret)
        self.ready.set()
