"""SIGTERM: sessions get their grace period, finals are delivered, readers get ``end: shutdown``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import trio

from service.settings import Settings
from tests.harness import (
    Gateway,
    close_reason,
    following,
    poll_until,
    stream_audio,
)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sigterm_drains_live_sessions_then_exits_cleanly() -> None:
    port = free_port()
    env = {
        **os.environ,
        "RESERVE_EMBEDDED_RECOGNIZER": "scripted",
        "RESERVE_SHUTDOWN_GRACE_S": "0.5",
        "RESERVE_LOG_LEVEL": "WARNING",
        "RESERVE_AUTH_DISABLED": "true",  # as serve.sh runs the bundled demo
    }
    env.pop("RESERVE_RIVA_URI", None)
    command = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen([*command, "service.app:app"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 - starting it does not block
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            with trio.fail_after(20):
                while True:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
            gateway = Gateway(base, Settings(), http, app=None)  # type: ignore[arg-type]
            session = await gateway.create_session(
                custom_configuration={"fake.transcript": "before the shutdown", "fake.ms_per_word": "100"},
                interim_results=False,
            )
            async with following(gateway, session) as (ws, events):
                await stream_audio(ws, seconds=0.25, end=False)  # "before the" heard, no end yet

                async def audio_arrived() -> bool:
                    url = f"/v1/sessions/{session['id']}"
                    state = (await http.get(url, params={"token": session["token"]})).json()
                    return bool(state["counters"]["audio_bytes"] >= 8000)

                await poll_until(audio_arrived)
                server.send_signal(signal.SIGTERM)
                code, reason, _ = await close_reason(ws)
            assert (code, reason) == (1001, "gateway shutting down")
            assert events.finals == ["before the"]  # finalized, not thrown away
            assert events.events[-1].data == {"reason": "shutdown"}
        exit_code = await trio.to_thread.run_sync(server.wait, 10)
        assert exit_code == 0
    finally:
        children = psutil.Process(server.pid).children(recursive=True) if server.poll() is None else []
        server.kill()
        server.wait()
    assert children == []
