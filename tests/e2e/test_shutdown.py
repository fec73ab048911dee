"""SIGTERM under hypercorn's own CLI (``hypercorn --config hypercorn.toml service.app:app``):
sessions get their grace period, finals are delivered, readers get ``end: shutdown``, and the
server exits, also when started with SIGINT ignored (a shell's background job), where stopping
hypercorn as Ctrl-C does cannot go through a SIGINT. (``reserve serve``: tests/e2e/test_serve.py.)"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.harness import served
from tests.serving import alive, assert_drained, create_on_worker, hold_live_session

HYPERCORN = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", "service.app:app"]


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint-default", "sigint-ignored"])
async def test_sigterm_drains_live_sessions_then_exits_cleanly(tmp_path: Path, ignore_sigint: bool) -> None:
    env = {
        "RESERVE_EMBEDDED_RECOGNIZER": "scripted",
        "RESERVE_SHUTDOWN_GRACE_S": "0.5",
        "RESERVE_LOG_LEVEL": "WARNING",
        "RESERVE_AUTH_DISABLED": "true",  # as serve.sh runs the bundled demo
    }
    with served(HYPERCORN, tmp_path / "hypercorn.log", ignore_sigint=ignore_sigint, env=env) as server:
        await server.wait_healthy()
        family = server.family()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            _, session = await create_on_worker(server, set())
            await nursery.start(hold_live_session, server, session, results)  # "before the" heard, no end yet
            server.process.send_signal(signal.SIGTERM)
        assert_drained(results[session["id"]])
        assert await server.wait_exit(10) == 0
        assert not alive(family), "no process left behind"
