"""The container's command, run as the Dockerfile says (outside Docker): ``python -m service serve``
with hypercorn.toml.

No Riva is configured, so the bundled recognizer starts in-process. The server must get
ready, log JSON lines once each with no token in them, and exit cleanly on SIGTERM
leaving no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def container_command() -> list[str]:
    """The Dockerfile's CMD, with this interpreter for its ``python``."""
    (cmd,) = [line[len("CMD ") :] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    command: list[str] = json.loads(cmd)
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not answer /healthz in time")


def test_entry_point_serves_logs_json_once_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    api_key = "entrypoint-key-5c1d0a7f9e"
    env.update(RESERVE_EMBEDDED_RECOGNIZER="scripted", RESERVE_LOG_FORMAT="json", RESERVE_SHUTDOWN_GRACE_S="1")
    env.update(RESERVE_API_KEYS=api_key)
    out_path = tmp_path / "server.log"
    command = [*container_command(), "--bind", f"127.0.0.1:{port}"]
    with out_path.open("wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, server)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        key = {"Authorization": f"Bearer {api_key}"}
        created = httpx.post(f"{base}/v1/sessions", json={}, headers=key, timeout=5).json()
        token, session_id = created["token"], created["id"]
        assert httpx.get(f"{base}/v1/sessions/{session_id}", params={"token": token}, timeout=5).status_code == 200
        deleted = httpx.delete(f"{base}/v1/sessions/{session_id}", params={"token": token}, timeout=5)
        assert deleted.json()["state"] == "cancelled"
        family = psutil.Process(server.pid).children(recursive=True)

        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=10)
        assert exit_code == 0
        assert time.monotonic() - started < 5
        assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "leftover children"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    text = out_path.read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    messages = [line["message"] for line in lines]
    assert sum("Running on" in m for m in messages) == 1, "hypercorn's lines are printed once"
    assert len(messages) == len(set(zip(messages, (line["ts"] for line in lines), strict=True))), "no duplicates"
    assert token not in text, "the token never reaches the log"
    assert api_key not in text, "nor the API key"
    access = [line for line in lines if line["logger"] == "hypercorn.access"]
    session_get = [a for a in access if a["path"] == f"/v1/sessions/{session_id}" and a["method"] == "GET"]
    assert session_get and session_get[0]["query"] == "token=REDACTED" and session_get[0]["status"] == 200
    assert "token=REDACTED" in session_get[0]["message"]
    lifecycle = [line["message"] for line in lines if line.get("session_id") == session_id]
    assert lifecycle == [f"session {session_id} created", f"session {session_id} cancelled (reason=cancelled)"]
