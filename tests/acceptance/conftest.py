"""The acceptance target: a real Riva named by the environment, else the bundled recognizer.

RESERVE_ACCEPTANCE_RIVA_URI        host:port of Riva (unset: the bundled pocketsphinx server)
RESERVE_ACCEPTANCE_USE_SSL         true for TLS with system roots
RESERVE_ACCEPTANCE_SSL_ROOT_CERT   PEM file of Riva's CA
RESERVE_ACCEPTANCE_FUNCTION_ID     NVIDIA cloud function-id
RESERVE_ACCEPTANCE_API_KEY         NVIDIA cloud API key
RESERVE_ACCEPTANCE_MAX_WER         word error rate allowed per case (default 0.15)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from service.settings import Settings
from tests.harness import Gateway, running_gateway


def acceptance_settings() -> Settings:
    env = os.environ.get
    uri = env("RESERVE_ACCEPTANCE_RIVA_URI", "")
    if not uri:  # no target named: the gateway starts its bundled recognizer, as `serve.sh` does
        return Settings(riva_uri="", embedded_recognizer="pocketsphinx", finish_timeout_s=15)
    return Settings(
        riva_uri=uri,
        riva_use_ssl=env("RESERVE_ACCEPTANCE_USE_SSL", "false").lower() in ("1", "true", "yes"),
        riva_ssl_root_cert=env("RESERVE_ACCEPTANCE_SSL_ROOT_CERT") or None,
        riva_function_id=env("RESERVE_ACCEPTANCE_FUNCTION_ID", ""),
        riva_api_key=env("RESERVE_ACCEPTANCE_API_KEY", ""),
        finish_timeout_s=15,
    )


@pytest.fixture
def max_wer() -> float:
    return float(os.environ.get("RESERVE_ACCEPTANCE_MAX_WER", "0.15"))


@pytest.fixture
async def target_gateway() -> AsyncIterator[Gateway]:
    async with running_gateway(acceptance_settings()) as gateway:
        yield gateway
