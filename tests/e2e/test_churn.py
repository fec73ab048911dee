"""Thousands of sessions come and go, many of them rudely; afterwards nothing is left over."""

from __future__ import annotations

import gc
import random
import threading

import psutil
import trio

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import EventCollector, Gateway, audio_socket, read_events, running_gateway, wait_until

SESSIONS = 2000
CONCURRENCY = 40
SCRIPT = {"fake.transcript": "churn churn churn", "fake.ms_per_word": "100"}
POOLED = ("Trio thread", "fake-riva")  # idle thread caches, reused and bounded


def other_threads() -> int:
    return sum(1 for t in threading.enumerate() if not t.name.startswith(POOLED))


async def one(gateway: Gateway, kind: str) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    auth = {"Authorization": f"Bearer {session['token']}"}
    if kind == "never_streamed":
        await gateway.http.delete(f"/v1/sessions/{session['id']}", headers=auth)
        return
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        if kind == "reader_gone":  # the reader leaves after the first event
            nursery.start_soon(lambda: read_events(gateway, session, events, stop_after=1))
        else:
            await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            await ws.send_message(bytes(3200))
            if kind == "reset":  # the TCP connection vanishes without a closing handshake
                await ws._stream.aclose()
                nursery.cancel_scope.cancel()
                return
            if kind == "delete":
                await gateway.http.delete(f"/v1/sessions/{session['id']}", headers=auth)
            else:
                await ws.send_message(bytes(3200) * 3)
                await ws.send_message('{"type": "end"}')
            with trio.fail_after(10):
                if kind == "reader_gone":
                    await session_done(gateway, session, auth)
                else:
                    await events.done.wait()


async def session_done(gateway: Gateway, session: dict[str, str], auth: dict[str, str]) -> None:
    async def ended() -> bool:
        response = await gateway.http.get(f"/v1/sessions/{session['id']}", headers=auth)
        return response.status_code == 404 or response.json()["state"] in ("finished", "cancelled", "failed")

    while not await ended():  # noqa: ASYNC110 - polling the gateway over HTTP
        await trio.sleep(0.05)


async def test_churn_leaves_threads_calls_and_memory_at_baseline(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, session_retention_s=0, audio_reconnect_grace_s=0)
    process = psutil.Process()
    async with running_gateway(settings) as gateway:
        registry = gateway.app.extensions["reserve.registry"]
        await one(gateway, "clean")  # warm up: imports, caches, first connections
        gc.collect()
        base_threads, base_rss = other_threads(), process.memory_info().rss
        kinds = random.Random(7).choices(["clean", "reset", "reader_gone", "delete", "never_streamed"], k=SESSIONS)
        limit = trio.Semaphore(CONCURRENCY)

        async def guarded(kind: str) -> None:
            async with limit:
                await one(gateway, kind)

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for kind in kinds:
                nursery.start_soon(guarded, kind)
        elapsed = trio.current_time() - started
        await wait_until(lambda: registry.live_sessions == 0 and fake_riva.stats.snapshot()["active"] == 0, 10)
        await wait_until(lambda: registry.runtime.transport.limiter.borrowed_tokens == 0)
        await wait_until(lambda: other_threads() <= base_threads, 5)
        await trio.sleep(0.1)
        gc.collect()
        rss_growth = process.memory_info().rss - base_rss
        stats = fake_riva.stats.snapshot()
        print(
            f"\nchurn: {SESSIONS} sessions in {elapsed:.1f} s; kinds "
            f"{ {k: kinds.count(k) for k in sorted(set(kinds))} }; riva streams {stats}; "
            f"threads {base_threads} -> {other_threads()}; RSS growth {rss_growth / 2**20:.1f} MiB; "
            f"retained sessions {registry.retained_sessions}"
        )
    assert stats["active"] == 0
    assert stats["started"] == stats["completed"] + stats["cancelled"] + stats["failed"]
    assert other_threads() <= base_threads
    assert rss_growth < 64 * 2**20  # the whole test process: clients, server and fake_riva
