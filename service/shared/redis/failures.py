"""What counts as Redis failing, how the hub's tasks wait before trying again, and what a
request that needed Redis tells its client then."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import coredis.exceptions
import trio

from service.errors import StateUnavailable
from service.shared.redis import resp

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
REDIS_ERRORS = (coredis.exceptions.RedisError, resp.ReplyError, resp.ProtocolError, OSError, trio.TooSlowError)


class RedisUnavailable(Exception):
    """Redis did not answer; the message says how."""


def next_backoff(backoff_s: float) -> float:
    """The wait after another failure in a row: doubling from ``BACKOFF_FIRST_S`` up to ``BACKOFF_MAX_S``."""
    return min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, backoff_s * 2))


@contextlib.contextmanager
def as_state_unavailable() -> Iterator[None]:
    """Redis failing under a request is ``StateUnavailable`` (503, retry in 2 s) to its client."""
    try:
        yield
    except RedisUnavailable as exc:
        raise StateUnavailable(f"shared state unavailable: {exc}", retry_after_s=2) from None
