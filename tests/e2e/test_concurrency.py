"""Many sessions at once, each at real-time pace, each with its own transcript."""

from __future__ import annotations

import threading

import trio

from fake_riva import FakeRiva
from tests.harness import EventCollector, Gateway, audio_socket, close_reason, read_events, wait_until

SESSIONS = 60


async def one_session(gateway: Gateway, n: int, results: dict[int, EventCollector]) -> None:
    words = f"session {n} says number {n * 7}"
    session = await gateway.create_session(custom_configuration={"fake.transcript": words, "fake.ms_per_word": "100"})
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            for _ in range(6):  # 0.6 s of audio in 100 ms chunks, at real-time pace
                await ws.send_message(bytes(3200))
                await trio.sleep(0.1)
            await ws.send_message('{"type": "end"}')
            assert (await close_reason(ws))[0] == 1000
    results[n] = events


async def test_sixty_concurrent_sessions_all_complete_with_their_transcripts(
    gateway: Gateway, fake_riva: FakeRiva
) -> None:
    threads_before = other_threads()
    results: dict[int, EventCollector] = {}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(SESSIONS):
                nursery.start_soon(one_session, gateway, n, results)
    assert len(results) == SESSIONS
    for n, events in results.items():
        assert events.finals == [f"session {n} says number {n * 7}"], n
        assert events.events[-1].data == {"reason": "finished"}
        assert [e.id for e in events.events] == list(range(1, len(events.events) + 1))
    stats = fake_riva.stats.snapshot()
    assert stats["completed"] == SESSIONS and stats["active"] == 0
    limiter = gateway.app.extensions["reserve.registry"].runtime.transport.limiter
    assert limiter.borrowed_tokens == 0
    # trio keeps idle worker threads for reuse a short while; they must not pile up per session
    # What remains is pooled for reuse: trio's idle worker cache and fake_riva's
    # executor. Every per-call thread (gRPC's request iterators) has ended.
    await wait_for_threads(threads_before)


def other_threads() -> set[str]:
    pooled = ("Trio thread", "fake-riva")
    return {t.name for t in threading.enumerate() if not t.name.startswith(pooled)}


async def wait_for_threads(expected: set[str]) -> None:
    with trio.move_on_after(5):
        await wait_until(lambda: not other_threads() - expected)
    assert other_threads() - expected == set()
