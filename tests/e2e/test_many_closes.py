"""Many sessions ending at the same moment close cleanly: every audio socket gets 1000 and
the gateway logs no error (hypercorn's trio server used to race its own half-close against
the close frame: trio.BusyResourceError from websocket.close)."""

from __future__ import annotations

import logging
import random

import pytest
import trio

from tests.harness import Gateway, audio_socket, close_reason

SESSIONS = 100


async def test_a_hundred_sessions_ending_at_once_close_cleanly(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    codes: list[int] = []
    ready = 0
    all_ready = trio.Event()

    async def one(n: int) -> None:
        nonlocal ready
        session = await gateway.create_session(custom_configuration={"fake.transcript": "hello there"})
        async with audio_socket(gateway, session) as ws:
            await ws.send_message(bytes(3200))
            ready += 1
            if ready == SESSIONS:
                all_ready.set()
            await all_ready.wait()
            await ws.send_message('{"type": "end"}')
            if n % 3:  # two in three clients hang up themselves as the gateway closes: both close at once
                await trio.sleep(0 if n % 3 == 1 else random.uniform(0, 0.02))
                await ws.aclose(1000)
                assert ws.closed is not None
                codes.append(ws.closed.code)
            else:
                code, _, _ = await close_reason(ws)
                codes.append(code)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for n in range(SESSIONS):
                nursery.start_soon(one, n)
    assert codes == [1000] * SESSIONS
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [(r.name, r.getMessage(), r.exc_text) for r in problems[:3]]
