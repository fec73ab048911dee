"""Sessions on a served child process (``tests.harness.served``), one worker or several.

Without Redis a session lives in the worker that created it, so these clients reach a session's
worker by retrying fresh connections (404 or 4404 elsewhere); with Redis every worker serves it
and the first try does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil
import trio
from trio_websocket import WebSocketConnection

from service.settings import Settings
from tests.harness import (
    EventCollector,
    Gateway,
    Served,
    audio_socket,
    close_reason,
    read_events,
    stream_audio,
    wait_until,
)

SPEECH = {"custom_configuration": {"fake.transcript": "before the shutdown", "fake.ms_per_word": "100"}}
ATTEMPTS = 60  # fresh connections tried to reach a given worker; with 2 workers about 1 in 2 does


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
            response = await http.post("/v1/sessions", json={**SPEECH, "interim_results": True})
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
        await nursery.start(read_events_until_cut, gateway, session, events)
        async with audio_socket_on_owner(gateway, session, poller) as ws:
            await stream_audio(ws, seconds=0.25, end=False)

            # the worker holds that audio once Riva's interim for it is out (with Redis, a session's
            # record, counters included, reaches the other workers with its events)
            await wait_until(lambda: "before the" in [t["text"] for t in events.transcripts], timeout_s=10)
            task_status.started()
            code, reason, _ = await close_reason(ws)
        with trio.fail_after(10):
            await events.done.wait()
    results[session["id"]] = (code, reason, events)


async def read_events_until_cut(
    gateway: Gateway, session: dict[str, Any], events: EventCollector, *, task_status: trio.TaskStatus[None]
) -> None:
    """``read_events``, where a stop of every worker with Redis cuts the stream of a session handed
    over (no ``end``: it goes on wherever its client reconnects; EventSource would, with its last id)."""
    try:
        await read_events(gateway, session, events, task_status=task_status)
    except httpx.RemoteProtocolError:
        events.done.set()


def assert_drained(result: tuple[int, str, EventCollector], *, shared: bool = False) -> None:
    """Finalized, not thrown away: without Redis the session ends (``shutdown``) and its reader has
    the finals; with Redis it is handed over (the socket closed ``1012``) for the client to resume
    elsewhere, and its finals are in the shared log (``resume_events`` reads them there)."""
    code, reason, events = result
    if shared:
        assert (code, reason) == (1012, "session moved to another instance")
        assert "end" not in events.names
    else:
        assert events.finals == ["before the"], "finalized, not thrown away"
        assert (code, reason) == (1001, "gateway shutting down")
        assert events.events[-1].data == {"reason": "shutdown"}


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def worker_tallies(server: Served) -> dict[int, dict[str, float]]:
    """Each worker's metrics without labels' ``_created`` lines, by pid (``/healthz`` and
    ``/metrics`` over one connection reach the same worker)."""
    tallies: dict[int, dict[str, float]] = {}
    with trio.fail_after(30):
        while len(tallies) < 2:
            async with one_connection(server) as http:
                pid = (await http.get("/healthz")).json()["pid"]
                text = (await http.get("/metrics")).text
            tallies[pid] = {
                name: float(value)
                for name, _, value in (line.rpartition(" ") for line in text.splitlines())
                if name and not name.startswith("#")
            }
    return tallies


def summed(tallies: dict[int, dict[str, float]], sample: str) -> float:
    """A metric's sample over every worker (0 where a worker has none)."""
    return sum(tally.get(sample, 0.0) for tally in tallies.values())
