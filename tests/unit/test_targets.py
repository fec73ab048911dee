"""TargetPool: least-streams choice, round-robin among equals, cool-downs after failures."""

from __future__ import annotations

import grpc
import pytest

from service.riva.channel import RivaTarget
from service.riva.targets import TargetPool


def target(uri: str) -> RivaTarget:
    channel = grpc.insecure_channel(uri)
    return RivaTarget(uri, channel, None, ())


@pytest.fixture
def pool() -> TargetPool:
    return TargetPool([target("a:1"), target("b:1"), target("c:1")])


def test_equals_take_turns_and_busy_ones_wait(pool: TargetPool) -> None:
    picks = [pool.pick().uri for _ in range(3)]
    assert sorted(picks) == ["a:1", "b:1", "c:1"]
    a, b, c = list(pool)
    pool.opened(a)
    pool.opened(a)
    pool.opened(b)
    assert pool.pick() is c
    pool.closed(a)
    pool.closed(a)
    assert pool.pick() in (a, c)


def test_a_failed_target_rests_and_comes_back_after_success(pool: TargetPool) -> None:
    a, b, c = list(pool)
    pool.failed(a)
    pool.failed(b)
    assert {pool.pick() for _ in range(6)} == {c}
    pool.failed(c)  # all down: the one that has rested longest is tried rather than none
    assert pool.pick() is a
    pool.succeeded(b)
    assert pool.pick() is b


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        TargetPool([])


def test_a_target_failing_for_ever_keeps_the_longest_cool_down(pool: TargetPool) -> None:
    """Every live stream fails at each Riva restart, and a long session's stream rarely ends to
    count a success: at hundreds of streams the failures pass a thousand between two probes.
    The cool-down's doubling stops at its bound (it raised OverflowError past 1,024 failures,
    and every session whose stream failed after that crashed)."""
    a, b, c = list(pool)
    for _ in range(5000):
        pool.failed(a)
    pool.failed(b)
    assert pool.pick() is c
    pool.failed(c)
    assert pool.pick() is b, "b and c rest at most 2 s after one failure each; a rests 30 s"
