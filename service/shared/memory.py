"""In-memory shared state: one process, nothing else to run (the default)."""

from __future__ import annotations

from service.auth.limits import KeyLimits
from service.auth.tokens import Claims, UsedTokens
from service.shared.base import Refusal


class MemoryKeyCounters:
    def __init__(self, limits: KeyLimits) -> None:
        self.limits = limits
        self._tickets: set[str] = set()

    async def admit(self, key: str, ticket: str) -> Refusal | None:
        retry_after = self.limits.admit(key)
        if retry_after is None:
            self._tickets.add(ticket)
            return None
        limits = self.limits
        at_live_limit = limits.max_concurrent and limits.live(key) >= limits.max_concurrent
        what = (
            f"{limits.max_concurrent} live sessions" if at_live_limit else f"{limits.per_minute} new sessions a minute"
        )
        return Refusal(retry_after, what)

    async def release(self, key: str, ticket: str) -> None:
        if ticket in self._tickets:
            self._tickets.discard(ticket)
            self.limits.release(key)


class MemorySingleUse:
    def __init__(self, used: UsedTokens) -> None:
        self.used = used

    async def consume(self, claims: Claims) -> None:
        self.used.consume(claims)

    async def forget(self, claims: Claims) -> None:
        self.used.forget(claims)
