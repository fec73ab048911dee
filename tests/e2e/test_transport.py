"""What tells the two Riva transports apart, and what both promise when the gateway stops.

``threads`` spends threads per live stream; ``aio`` runs every stream on one loop thread;
``h2`` runs every stream on the gateway's own trio thread.
Either way, stopping the gateway mid-stream ends every Riva call and every thread it
started: the transport is owned by the gateway's nursery.
"""

from __future__ import annotations

import threading

import trio

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import Gateway, audio_socket, close_reason, running_gateway, stream_audio, wait_until

STREAMS = 12
SCRIPT = {"fake.transcript": "a long enough sentence to still be going", "fake.ms_per_word": "2000"}
IDLE_POOLS = ("Trio thread", "fake-riva")  # trio's idle worker cache and fake_riva's executor


def busy_thread_count() -> int:
    """Threads at work in this process, but fake_riva's (it serves each stream in a thread)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith(IDLE_POOLS))


def busy_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if not t.name.startswith(IDLE_POOLS)}


async def hold_stream(gateway: Gateway, session: dict[str, str], closes: list[int]) -> None:
    async with audio_socket(gateway, session) as ws:
        await stream_audio(ws, seconds=0.3, end=False)
        closes.append((await close_reason(ws))[0])


async def test_stopping_the_gateway_mid_stream_ends_every_call_and_thread(
    settings: Settings, fake_riva: FakeRiva, riva_transport: str
) -> None:
    before = busy_threads()
    closes: list[int] = []
    async with trio.open_nursery() as clients, running_gateway(settings) as gateway:
        started = busy_thread_count()
        for _ in range(STREAMS):
            session = await gateway.create_session(custom_configuration=SCRIPT)
            clients.start_soon(hold_stream, gateway, session, closes)
        await wait_until(lambda: fake_riva.stats.snapshot()["active"] == STREAMS)
        if riva_transport == "threads":  # a response-iterating worker and a request thread each
            # (a worker trio takes from its idle cache has the cache's name until its job starts)
            await wait_until(lambda: busy_thread_count() - started >= 2 * STREAMS)
        else:  # aio: the loop thread and grpc.aio's poller exist from the start; h2: no thread at all
            assert busy_thread_count() == started
        # hypercorn stops serving (here abruptly: SIGTERM's drain is test_shutdown's case), then the
        # app's lifespan stops the gateway, which cancels the sessions and closes the transport
    assert len(closes) == STREAMS  # every client saw its socket close; none hangs
    await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 0)
    assert fake_riva.stats.snapshot()["cancelled"] == STREAMS
    with trio.move_on_after(5):
        await wait_until(lambda: busy_threads() <= before, 5)
    assert busy_threads() <= before, busy_threads() - before
