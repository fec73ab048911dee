"""What counts as Redis failing, and how the hub's tasks wait before trying again."""

from __future__ import annotations

import coredis.exceptions
import trio

from service.shared.redis import resp

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
REDIS_ERRORS = (coredis.exceptions.RedisError, resp.ReplyError, resp.ProtocolError, OSError, trio.TooSlowError)


class RedisUnavailable(Exception):
    """Redis did not answer; the message says how."""


def next_backoff(backoff_s: float) -> float:
    """The wait after another failure in a row: doubling from ``BACKOFF_FIRST_S`` up to ``BACKOFF_MAX_S``."""
    return min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, backoff_s * 2))
