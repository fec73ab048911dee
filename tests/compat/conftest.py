"""Compatibility tests: real third-party clients (OpenAI's SDK, NVIDIA's realtime client), unchanged,
against the gateway on a loopback port and fake_riva scripted on the server side (those clients
cannot send fake_riva's ``custom_configuration``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import TEST_API_KEY, Gateway, running_gateway

T = TypeVar("T")
CLIENT_TIMEOUT_S = 30


@contextlib.contextmanager
def scripted_riva(recognizer: str = "scripted", **custom: str) -> Iterator[FakeRiva]:
    server = FakeRiva(recognizer=recognizer, custom_defaults=custom)
    server.start()
    try:
        yield server
    finally:
        server.stop(0)


def gateway_settings(riva: FakeRiva, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "riva_uri": riva.target,
        "idle_session_timeout_s": 30,
        "finish_timeout_s": 5,
        "audio_reconnect_grace_s": 0,
        "riva_reconnect_deadline_s": 2,
        "api_keys": TEST_API_KEY,
    }
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def scripted_gateway(
    transcript: str, custom: dict[str, str] | None = None, **settings: Any
) -> AsyncIterator[Gateway]:
    with scripted_riva(**{"fake.transcript": transcript, **(custom or {})}) as riva:
        async with running_gateway(gateway_settings(riva, **settings)) as gateway:
            yield gateway


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """A blocking third-party client beside the gateway's trio loop; a hang fails the test."""
    with trio.fail_after(CLIENT_TIMEOUT_S):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


@pytest.fixture
def api_key() -> str:
    return TEST_API_KEY
