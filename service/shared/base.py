"""The shared-state interfaces: per-key counters, single-use token ids, the token secret,
session records and ownership. The event log's interface lives in ``service.events.log``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.auth.tokens import Claims


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key may not create a session now, and when to try again."""

    retry_after_s: int
    limit: str  # "3 live sessions" / "10 new sessions a minute"


class KeyCounters(Protocol):
    """Per-API-key live sessions and creations per minute."""

    async def admit(self, key: str, ticket: str) -> Refusal | None:
        """Count a new session for ``key`` (``ticket`` names it); or, over a limit, the refusal
        (nothing counted)."""

    async def release(self, key: str, ticket: str) -> None:
        """The session ``ticket`` of ``key`` ended (or was never created after all); idempotent."""


class SingleUseTokens(Protocol):
    """Ids of single-use tokens already spent, kept until each expires."""

    async def consume(self, claims: Claims) -> None:
        """Mark spent; raise Forbidden when it already was."""

    async def forget(self, claims: Claims) -> None:
        """Give it back: the session it was spent on could not be created."""
