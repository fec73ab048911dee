"""Per-key limits: the pure core, driven by a fake clock."""

from __future__ import annotations

from service.auth.limits import CONCURRENT_RETRY_S, KeyLimits


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_live_sessions_per_key() -> None:
    limits = KeyLimits(max_concurrent=2, per_minute=0, clock=Clock())
    assert limits.admit("a") is None and limits.admit("a") is None
    assert limits.admit("a") == CONCURRENT_RETRY_S
    assert limits.admit("b") is None, "keys are counted apart"
    limits.release("a")
    assert limits.admit("a") is None
    assert limits.live("a") == 2


def test_sessions_per_minute_is_a_sliding_window() -> None:
    clock = Clock()
    limits = KeyLimits(max_concurrent=0, per_minute=3, clock=clock)
    for offset in (0, 10, 20):
        clock.now = 50 + offset
        assert limits.admit("a") is None
        limits.release("a")  # ended at once: only the rate counts
    clock.now = 75
    assert limits.admit("a") == 35  # the first one leaves the window at 110
    clock.now = 109.5
    assert limits.admit("a") == 1
    clock.now = 110
    assert limits.admit("a") is None
    assert limits.created_in_window("a") == 3
    assert limits.admit("b") is None


def test_a_refused_attempt_counts_for_nothing() -> None:
    clock = Clock()
    limits = KeyLimits(max_concurrent=1, per_minute=5, clock=clock)
    assert limits.admit("a") is None
    for _ in range(10):
        assert limits.admit("a") == CONCURRENT_RETRY_S
    assert limits.created_in_window("a") == 1 and limits.live("a") == 1


def test_zero_means_no_limit() -> None:
    limits = KeyLimits(max_concurrent=0, per_minute=0, clock=Clock())
    assert all(limits.admit("a") is None for _ in range(10_000))
    assert limits.live("a") == 10_000


def test_release_never_goes_below_zero() -> None:
    limits = KeyLimits(max_concurrent=1, per_minute=0, clock=Clock())
    limits.release("a")
    assert limits.live("a") == 0 and limits.admit("a") is None
