"""The whole path over real sockets: WebSocket audio -> gateway -> fake_riva -> SSE."""

from __future__ import annotations

import functools

import trio

from fake_riva import FakeRiva
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    following,
    read_events,
    stream_audio,
    wait_until,
)

SCRIPT = {"fake.transcript": "hello world|good morning everyone", "fake.ms_per_word": "200"}


async def test_interims_and_finals_arrive_in_order_then_end(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT, word_time_offsets=True)
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=1.2)
        code, reason, _ = await close_reason(ws)
    assert (code, reason) == (1000, "session finished")
    ids = [e.id for e in events.events]
    assert ids == list(range(1, len(ids) + 1))
    assert events.finals == ["hello world", "good morning everyone"]
    assert [t["text"] for t in events.transcripts if not t["is_final"]] == ["hello", "good", "good morning"]
    assert [t["seq"] for t in events.transcripts] == list(range(1, len(events.transcripts) + 1))
    assert events.names[-1] == "end" and events.events[-1].data == {"reason": "finished"}
    final = events.transcripts[-1]
    assert final["words"] == [
        {"word": "good", "start_ms": 400, "end_ms": 600, "confidence": 0.95},
        {"word": "morning", "start_ms": 600, "end_ms": 800, "confidence": 0.95},
        {"word": "everyone", "start_ms": 800, "end_ms": 1000, "confidence": 0.95},
    ]
    assert final["audio_processed"] == 1.0  # "everyone" is heard at 1.0 s
    assert final["stability"] == 1.0 and final["confidence"] == 0.95 and final["channel"] == 1

    state = (
        await gateway.http.get(f"/v1/sessions/{session['id']}", headers={"Authorization": f"Bearer {session['token']}"})
    ).json()
    assert state["state"] == "finished"
    assert state["final_transcript"] == "hello world good morning everyone"
    assert state["counters"]["audio_bytes"] == int(1.2 * 32000)


async def test_end_flushes_partial_words_as_final(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT, interim_results=False)
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.6)  # "hello world" + "good"
        await close_reason(ws)
    assert events.finals == ["hello world", "good"]
    assert all(t["is_final"] for t in events.transcripts), "no interims unless asked"


async def test_finalize_forces_finals_and_continues_on_a_fresh_stream(gateway: Gateway, fake_riva: FakeRiva) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT, word_time_offsets=True)
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.2, end=False)  # "hello"
        await ws.send_message('{"type": "finalize"}')
        await stream_audio(ws, seconds=0.4)  # the fresh stream hears "hello world" again
        await close_reason(ws)
    assert events.finals == ["hello", "hello world"]
    second = events.transcripts[-1]
    # times continue from the audio before the finalize
    assert [(w["start_ms"], w["end_ms"]) for w in second["words"]] == [(200, 400), (400, 600)]
    assert second["audio_processed"] == 0.6
    assert fake_riva.stats.snapshot()["completed"] == 2


async def test_resume_with_last_event_id_gives_exactly_the_tail(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    first = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, first)
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=1.0)
            await close_reason(ws)
    assert len(first.events) >= 5
    for cut in (1, 3, len(first.events) - 1):
        tail = EventCollector()
        await read_events(gateway, session, tail, last_event_id=cut)
        assert [(e.id, e.event, e.data) for e in tail.events] == [(e.id, e.event, e.data) for e in first.events[cut:]]
    by_query = await gateway.http.get(
        session["events_url"], params={"token": session["token"], "last_event_id": str(len(first.events) - 1)}
    )
    assert by_query.headers["content-type"].startswith("text/event-stream")
    assert "event: end" in by_query.text and "event: transcript" not in by_query.text


async def test_a_reader_that_disconnects_midway_resumes_without_gaps(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    partial, rest = EventCollector(), EventCollector()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(read_events, gateway, session, partial, stop_after=2))
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=1.0)
            await close_reason(ws)
    await partial.done.wait()
    await read_events(gateway, session, rest, last_event_id=partial.events[-1].id)
    ids = [e.id for e in partial.events + rest.events]
    assert ids == list(range(1, ids[-1] + 1))
    assert rest.names[-1] == "end"


async def test_two_readers_see_the_same_events(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    a, b = EventCollector(), EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, a)
        await nursery.start(read_events, gateway, session, b)
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=1.0)
            await close_reason(ws)
    assert [(e.id, e.data) for e in a.events] == [(e.id, e.data) for e in b.events]
    assert a.finals == ["hello world", "good morning everyone"]


async def test_sse_headers_and_heartbeat(gateway: Gateway) -> None:
    session = await gateway.create_session()
    async with gateway.http.stream("GET", session["events_url"], params={"token": session["token"]}) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("no-cache")
        assert response.headers["x-accel-buffering"] == "no"
        received = b""
        with trio.fail_after(5):
            async for chunk in response.aiter_bytes():
                received += chunk
                if b": keepalive" in received:
                    break
    assert received.startswith(b"retry: ")


async def test_delete_cancels_the_session_and_its_riva_call(gateway: Gateway, fake_riva: FakeRiva) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    auth = {"Authorization": f"Bearer {session['token']}"}
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.5, end=False)
        await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 1)
        response = await gateway.http.delete(f"/v1/sessions/{session['id']}", headers=auth)
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
        code, _, _ = await close_reason(ws)
        assert code == 1000
    assert events.events[-1].data == {"reason": "cancelled"}
    await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 0)
    assert fake_riva.stats.snapshot()["cancelled"] == 1, fake_riva.stats.snapshot()
