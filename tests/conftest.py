from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import Gateway, running_fake_riva, running_gateway


@pytest.fixture
def fake_riva() -> Iterator[FakeRiva]:
    with running_fake_riva() as server:
        yield server


@pytest.fixture
def settings(fake_riva: FakeRiva) -> Settings:
    # a dropped audio socket cancels at once here; tests of the grace period set their own
    return Settings(
        riva_uri=fake_riva.target,
        idle_session_timeout_s=30,
        finish_timeout_s=5,
        sse_heartbeat_s=0.5,
        audio_reconnect_grace_s=0,
        riva_reconnect_deadline_s=2,
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings) as gw:
        yield gw
