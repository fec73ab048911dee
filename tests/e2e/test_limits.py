"""Every bound answers clearly: sessions, duration, idleness, audio rate, readers."""

from __future__ import annotations

import trio

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    following,
    poll_until,
    read_events,
    running_gateway,
    stream_audio,
)
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # a fixture, used by name

SCRIPT = {"fake.transcript": "a b c d e f g h i j k l m n o p", "fake.ms_per_word": "100"}


async def test_max_sessions_answers_503_with_retry_after(fake_riva: FakeRiva) -> None:
    async with running_gateway(Settings(riva_uri=fake_riva.target, max_sessions=2)) as gateway:
        first = await gateway.create_session()
        await gateway.create_session()
        response = await gateway.http.post("/v1/sessions", json={})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "overloaded"
        assert int(response.headers["Retry-After"]) > 0
        await gateway.http.delete(f"/v1/sessions/{first['id']}", headers={"Authorization": f"Bearer {first['token']}"})
        await gateway.create_session()  # a place was freed


async def test_a_burst_of_creations_stops_at_max_sessions(fake_riva: FakeRiva, redis_server: RedisServer) -> None:
    """In shared mode a creation writes the session's record to Redis before the session runs:
    a burst of them must still stop at ``RESERVE_MAX_SESSIONS`` (all passed the check during
    those round trips, and one worker of 200 took 250)."""
    settings = Settings(riva_uri=fake_riva.target, redis_url=redis_server.url, max_sessions=5)
    async with running_gateway(settings) as gateway:
        codes = await create_in_a_burst(gateway, 12)
        assert sorted(codes) == [201] * 5 + [503] * 7
        health = (await gateway.http.get("/healthz")).json()
        assert health["live_sessions"] == 5


async def test_a_burst_of_creations_gets_every_place_up_to_max_sessions(
    fake_riva: FakeRiva, redis_server: RedisServer
) -> None:
    """As many creations as places, sent a moment apart so that some start while others check:
    each gets one. A session counted both as live and as still arriving while its task started
    refused 4 of a burst of 150 with room for all."""
    limit = 40
    settings = Settings(riva_uri=fake_riva.target, redis_url=redis_server.url, max_sessions=limit)
    async with running_gateway(settings) as gateway:
        codes = await create_in_a_burst(gateway, limit, apart_s=0.001)
        assert codes == [201] * limit
        assert (await gateway.http.get("/healthz")).json()["live_sessions"] == limit


async def create_in_a_burst(gateway: Gateway, count: int, *, apart_s: float = 0.0) -> list[int]:
    """The status codes of ``count`` session creations sent together, ``apart_s`` apart."""
    codes: list[int] = []

    async def create() -> None:
        codes.append((await gateway.http.post("/v1/sessions", json={})).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(create)
            if apart_s:
                await trio.sleep(apart_s)
    return codes


async def test_max_session_duration_finalizes_the_session(fake_riva: FakeRiva) -> None:
    async with running_gateway(Settings(riva_uri=fake_riva.target, max_session_duration_s=0.5)) as gateway:
        session = await gateway.create_session(custom_configuration=SCRIPT, interim_results=False)
        async with following(gateway, session) as (ws, events):
            await stream_audio(ws, seconds=0.3, end=False)
            code, reason, _ = await close_reason(ws)
    assert (code, reason) == (1000, "session finished")
    assert events.finals == ["a b c"]  # what was heard is delivered, not dropped
    assert events.events[-1].data == {"reason": "max_duration"}


async def test_an_attached_client_that_goes_silent_is_timed_out(fake_riva: FakeRiva) -> None:
    async with running_gateway(Settings(riva_uri=fake_riva.target, idle_session_timeout_s=0.4)) as gateway:
        session = await gateway.create_session(custom_configuration=SCRIPT, interim_results=False)
        async with following(gateway, session) as (ws, events):
            await stream_audio(ws, seconds=0.2, end=False)
            for _ in range(3):  # keepalives prove the client is there
                await trio.sleep(0.2)
                await ws.send_message('{"type": "keepalive"}')
            assert "end" not in events.names
            await close_reason(ws)  # then silence: the gateway ends it
    assert events.finals == ["a b"]
    assert events.events[-1].data == {"reason": "idle_timeout"}


async def test_a_session_nobody_streams_to_expires(fake_riva: FakeRiva) -> None:
    async with running_gateway(Settings(riva_uri=fake_riva.target, idle_session_timeout_s=0.3)) as gateway:
        session = await gateway.create_session()
        events = EventCollector()
        with trio.fail_after(3):
            await read_events(gateway, session, events)
    assert events.events[-1].data == {"reason": "idle_timeout"}


async def test_audio_faster_than_the_rate_limit_is_slowed_not_buffered(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, max_audio_rate=4, audio_burst_s=0.25)
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(custom_configuration=SCRIPT)
        async with audio_socket(gateway, session) as ws:
            started = trio.current_time()
            await stream_audio(ws, seconds=2.25)  # as fast as the socket takes it, then end
            assert (await close_reason(ws))[0] == 1000
            elapsed = trio.current_time() - started
    # the gateway took the 2 s beyond the burst at 4x real time: at least 0.5 s, however fast
    # the client wrote (the rest waited in TCP buffers, not in the gateway)
    assert elapsed >= 0.5, elapsed


async def test_readers_per_session_are_limited(fake_riva: FakeRiva) -> None:
    async with running_gateway(Settings(riva_uri=fake_riva.target, max_readers_per_session=1)) as gateway:
        session = await gateway.create_session()
        auth = {"Authorization": f"Bearer {session['token']}"}
        async with gateway.http.stream("GET", session["events_url"], headers=auth) as first:
            assert first.status_code == 200
            async for _ in first.aiter_bytes():  # the body has started: the reader is counted
                break
            second = await gateway.http.get(session["events_url"], headers=auth)
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "too_many_readers"

        async def no_readers() -> bool:
            return bool((await gateway.http.get(f"/v1/sessions/{session['id']}", headers=auth)).json()["readers"] == 0)

        await poll_until(no_readers)  # the first reader's place comes back once it leaves
