"""Every end-to-end test runs once per Riva transport (RESERVE_RIVA_TRANSPORT).

The variable is set in the environment, so settings built by a test, by the shared
``settings`` fixture and by a service started as a child process all take it up.
"""

from __future__ import annotations

import pytest

TRANSPORTS = ("threads", "aio")


@pytest.fixture(autouse=True, params=TRANSPORTS)
def riva_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    transport: str = request.param
    monkeypatch.setenv("RESERVE_RIVA_TRANSPORT", transport)
    return transport
