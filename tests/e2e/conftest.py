"""Every end-to-end test runs once per Riva transport (RESERVE_RIVA_TRANSPORT), and the
streaming, resume, security, limits and reliability tests also in shared mode ("h2+redis":
RESERVE_REDIS_URL set, a real redis-server, and every gateway two instances: REST and events
on one, audio on the other; see ``tests.harness.running_gateway``).

The variables are set in the environment, so settings built by a test, by the shared
``settings`` fixture and by a service started as a child process all take them up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, running_redis

TRANSPORTS = ("threads", "aio", "h2")
SHARED_MODE = "h2+redis"
# run in shared mode too; the shared-state tests themselves start their own Redis and run once
BOTH_MODES = {"test_streaming", "test_security", "test_limits", "test_reliability"}
SHARED_ONLY = {"test_shared_state", "test_shared_failover"}


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run's shared-mode tests (their keys never meet)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Shared mode only where it is asked for; the shared-state modules once, on h2 (the default)."""
    if "riva_transport" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in SHARED_ONLY:
        modes: tuple[str, ...] = ("h2",)
    elif module in BOTH_MODES:
        modes = (*TRANSPORTS, SHARED_MODE)
    else:
        modes = TRANSPORTS
    if (only := metafunc.definition.get_closest_marker("modes")) is not None:
        modes = tuple(only.args)  # a test about one transport's own behaviour
    metafunc.parametrize("riva_transport", modes, indirect=True)


@pytest.fixture(autouse=True)
def riva_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    mode: str = request.param
    transport = mode.split("+")[0]
    monkeypatch.setenv("RESERVE_RIVA_TRANSPORT", transport)
    if mode == SHARED_MODE:
        redis: RedisServer = request.getfixturevalue("shared_redis")
        monkeypatch.setenv("RESERVE_REDIS_URL", redis.url)
        monkeypatch.setenv("RESERVE_REDIS_LEASE_S", "1")
    return transport
