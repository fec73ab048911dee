"""``python -m service serve``: one worker or several on one port, each stopped by SIGTERM after
draining its live sessions, also when started with SIGINT ignored (a shell's background job).

Every test here starts the real command as a child process beside a real redis-server. Until
session state is shared through Redis, a session lives in the worker that created it, so the
clients below reach a session's worker by retrying fresh connections (404 elsewhere)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio
from trio_websocket import WebSocketConnection

from service.settings import Settings
from tests.harness import (
    SERVE,
    EventCollector,
    Gateway,
    Served,
    audio_socket,
    close_reason,
    poll_until,
    read_events,
    served,
    stream_audio,
)
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # a fixture, used by name

DEMO = {
    "RESERVE_EMBEDDED_RECOGNIZER": "scripted",
    "RESERVE_AUTH_DISABLED": "true",
    "RESERVE_SHUTDOWN_GRACE_S": "0.5",
    "RESERVE_FINISH_TIMEOUT_S": "5",
    "RESERVE_LOG_LEVEL": "INFO",
}
SPEECH = {"custom_configuration": {"fake.transcript": "before the shutdown", "fake.ms_per_word": "100"}}
ATTEMPTS = 60  # fresh connections tried to reach a given worker; 2 workers: about 1 in 2 does


@pytest.fixture(autouse=True)
def riva_transport() -> str:
    """Once, not per transport (tests/e2e/conftest.py): what is tested here is the process model."""
    return "default"


async def test_one_worker_drains_a_live_session_on_sigterm_with_sigint_ignored(tmp_path: Path) -> None:
    with served(SERVE, tmp_path / "serve.log", ignore_sigint=True, **DEMO) as server:
        await server.wait_healthy()
        family = server.family()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            session = await create_on_worker(server, set())
            await nursery.start(hold_live_session, server, session[1], results)
            server.process.send_signal(signal.SIGTERM)
        assert_drained(results[session[1]["id"]])
        assert await server.wait_exit() == 0
        assert not alive(family), "no process left behind"
        assert "SIGTERM: draining sessions" in server.log


async def test_two_workers_share_one_port_and_a_killed_one_is_replaced(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", **env) as server:
        await server.wait_healthy()
        first = await answering_pids(server, 2)
        assert first == {p.pid for p in psutil.Process(server.process.pid).children()}, "the supervisor's children"
        victim, survivor = sorted(first)
        os.kill(victim, signal.SIGKILL)
        answered: list[int] = []
        with trio.fail_after(30):
            while not (replacements := set(answered) - first):
                answered.append((await server.healthz())["pid"])  # every request answered, none lost
        assert victim not in answered
        assert set(answered) == {survivor, *replacements} and len(replacements) == 1
        assert replacements <= {p.pid for p in psutil.Process(server.process.pid).children()}
        assert f"(pid {victim}) killed by SIGKILL; restarting it in" in server.log

        # the supervisor killed -9 as well: its workers notice (their stdin pipe ends) and drain
        workers = psutil.Process(server.process.pid).children()
        server.process.kill()
        await server.wait_exit()
        _, left = await trio.to_thread.run_sync(lambda: psutil.wait_procs(workers, timeout=15))
        assert not left, "workers outlived their supervisor"
        assert server.log.count("supervisor gone: draining sessions") == 2


async def test_sigterm_drains_every_worker_with_sigint_ignored(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", ignore_sigint=True, **env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        family = server.family()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            sessions = [await create_on_worker(server, set())]
            sessions.append(await create_on_worker(server, {sessions[0][0]}))
            for _, session in sessions:
                await nursery.start(hold_live_session, server, session, results)
            server.process.send_signal(signal.SIGTERM)  # both sessions hold audio without a final yet
        for _, session in sessions:
            assert_drained(results[session["id"]])
        assert await server.wait_exit() == 0
        assert not alive(family), "no process left behind"
        log = server.log
        assert "SIGTERM: draining 2 workers" in log
        assert log.count("SIGTERM: draining sessions") == 2, "the drain went to each worker"
        assert log.count("stopped: exited with status 0") == 2


# --- helpers -----------------------------------------------------------------------------------


async def answering_pids(server: Served, count: int) -> set[int]:
    """The pids that answer ``/healthz`` over fresh connections, once ``count`` of them have."""
    pids: set[int] = set()
    with trio.fail_after(30):
        while len(pids) < count:
            pids.add((await server.healthz())["pid"])
    return pids


async def create_on_worker(server: Served, avoid: set[int]) -> tuple[int, dict[str, Any]]:
    """A session created by a worker not in ``avoid``: ``/healthz`` and the POST go over one
    connection, so the pid it names is the creator's."""
    for _ in range(ATTEMPTS):
        async with one_connection(server) as http:
            pid = (await http.get("/healthz")).json()["pid"]
            if pid in avoid:
                continue
            response = await http.post("/v1/sessions", json={**SPEECH, "interim_results": False})
            assert response.status_code == 201, response.text
            return pid, response.json()
    raise AssertionError(f"no worker but {avoid} answered")


def one_connection(server: Served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=10, limits=httpx.Limits(max_connections=1))


async def client_on_owner(server: Served, session: dict[str, Any]) -> httpx.AsyncClient:
    """An HTTP client whose one connection reaches the worker holding ``session``."""
    for _ in range(ATTEMPTS):
        http = one_connection(server)
        response = await http.get(f"/v1/sessions/{session['id']}", params={"token": session["token"]})
        if response.status_code == 200:
            return http
        assert response.status_code == 404, response.text
        await http.aclose()
    raise AssertionError("no connection reached the session's worker")


@contextlib.asynccontextmanager
async def audio_socket_on_owner(
    gateway: Gateway, session: dict[str, Any], poller: httpx.AsyncClient
) -> AsyncIterator[WebSocketConnection]:
    """An audio socket attached to ``session``: another worker accepts it, then closes it with
    4404, while the owner's ``audio_attached`` turns true."""
    url = f"/v1/sessions/{session['id']}"
    for _ in range(ATTEMPTS):
        async with contextlib.AsyncExitStack() as attempt:
            ws = await attempt.enter_async_context(audio_socket(gateway, session))
            attached = False
            with trio.fail_after(10):
                while not ws.closed and not attached:
                    state = (await poller.get(url, params={"token": session["token"]})).json()
                    attached = state["audio_attached"]
                    await trio.sleep(0 if attached else 0.02)
            if attached:
                yield ws
                return
            assert ws.closed is not None and ws.closed.code == 4404, ws.closed
    raise AssertionError("no audio socket reached the session's worker")


async def hold_live_session(
    server: Served, session: dict[str, Any], results: dict[str, Any], *, task_status: trio.TaskStatus[None]
) -> None:
    """Stream 0.25 s of speech (``before the`` heard, no ``end``), report ``started`` once the
    worker holds that audio, then record how the session ended: close code, reason, events."""
    reader = await client_on_owner(server, session)
    poller = await client_on_owner(server, session)
    gateway = Gateway(server.base_url, Settings(), reader, app=None)  # type: ignore[arg-type]
    events = EventCollector()
    async with contextlib.aclosing(reader), contextlib.aclosing(poller), trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket_on_owner(gateway, session, poller) as ws:
            await stream_audio(ws, seconds=0.25, end=False)

            async def audio_arrived() -> bool:
                url = f"/v1/sessions/{session['id']}"
                state = (await poller.get(url, params={"token": session["token"]})).json()
                return bool(state["counters"]["audio_bytes"] >= 8000)

            await poll_until(audio_arrived, timeout_s=10)
            task_status.started()
            code, reason, _ = await close_reason(ws)
        with trio.fail_after(10):
            await events.done.wait()
    results[session["id"]] = (code, reason, events)


def assert_drained(result: tuple[int, str, EventCollector]) -> None:
    code, reason, events = result
    assert (code, reason) == (1001, "gateway shutting down")
    assert events.finals == ["before the"], "finalized, not thrown away"
    assert events.events[-1].data == {"reason": "shutdown"}


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
