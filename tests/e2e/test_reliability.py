"""Riva, the network and clients misbehave; the client still gets every final exactly once."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import trio

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    following,
    read_events,
    running_gateway,
    wait_until,
)

WORDS = "one two|three four|five six"
# every sample names a word of WORDS (0 is silence): see fake_riva/recognizers/scripted_audio.py
SPEECH = [(1, 200), (2, 200), (0, 400), (3, 200), (4, 200), (0, 400), (5, 200), (6, 200), (0, 400)]
EXPECTED_FINALS = ["one two", "three four", "five six"]
EXPECTED_WORDS = [
    ("one", 0, 200), ("two", 200, 400), ("three", 800, 1000),
    ("four", 1000, 1200), ("five", 1600, 1800), ("six", 1800, 2000),
]  # fmt: skip
CHUNK = 3200  # 100 ms


def speech_audio(spec: list[tuple[int, int]] = SPEECH) -> bytes:
    return np.concatenate([np.full(ms * 16, value, dtype="<i2") for value, ms in spec]).tobytes()


def content_config(**faults: str) -> dict[str, Any]:
    return {
        "word_time_offsets": True,
        "custom_configuration": {"fake.transcript": WORDS, "fake.words_in_audio": "true", **faults},
    }


async def stream(ws: Any, audio: bytes, *, pace_s: float = 0.0, end: bool = True) -> None:
    for start in range(0, len(audio), CHUNK):
        await ws.send_message(audio[start : start + CHUNK])
        if pace_s:
            await trio.sleep(pace_s)
    if end:
        await ws.send_message('{"type": "end"}')


def assert_exact_transcript(events: EventCollector) -> None:
    assert events.finals == EXPECTED_FINALS
    words = [(w["word"], w["start_ms"], w["end_ms"]) for t in events.transcripts if t["is_final"] for w in t["words"]]
    assert words == EXPECTED_WORDS
    ids = [e.id for e in events.events]
    assert ids == list(range(1, len(ids) + 1))
    assert events.events[-1].data == {"reason": "finished"}


async def run_session(gateway: Gateway, config: dict[str, Any], audio: bytes, pace_s: float = 0.0) -> EventCollector:
    session = await gateway.create_session(**config)
    async with following(gateway, session) as (ws, events):
        await stream(ws, audio, pace_s=pace_s)
        code, _, frames = await close_reason(ws)
        assert code == 1000, frames
    return events


async def test_baseline_without_faults(gateway: Gateway) -> None:
    assert_exact_transcript(await run_session(gateway, content_config(), speech_audio()))


@pytest.mark.parametrize("code", ["UNAVAILABLE", "INTERNAL"])
async def test_riva_dropping_mid_stream_is_survived_with_nothing_lost_or_repeated(
    gateway: Gateway, fake_riva: FakeRiva, code: str
) -> None:
    faults = {"fake.fail_after_chunks": "10", "fake.fail_code": code, "fake.fault_times": "1", "fake.fault_id": code}
    events = await run_session(gateway, content_config(**faults), speech_audio())
    assert_exact_transcript(events)
    names = events.names
    assert names.index("reconnecting") < names.index("reconnected")
    assert events.events[names.index("reconnecting")].data["code"] in ("upstream_unavailable", "upstream_error")
    # the first final came before the drop, the others after it: none twice
    assert names.index("reconnecting") > next(i for i, e in enumerate(events.events) if e.data.get("is_final"))
    assert fake_riva.stats.snapshot()["failed"] == 1


async def test_every_outage_of_a_long_session_gets_the_whole_reconnect_deadline(fake_riva: FakeRiva) -> None:
    # eight separate outages, each after progress (a final): each is a new series, attempt 1 with
    # the shortest backoff, so the eighth is retried as promptly as the first (a count kept for
    # the whole session once slept through a whole deadline and probed only at its end)
    cycles, outages = 6, 8
    settings = Settings(riva_uri=fake_riva.target, riva_reconnect_deadline_s=1.0)
    faults = {"fake.fail_after_chunks": "15", "fake.fault_times": str(outages), "fake.fault_id": "long-session"}
    async with running_gateway(settings) as gateway:
        events = await run_session(gateway, content_config(**faults), speech_audio(SPEECH * cycles))
    assert events.finals == EXPECTED_FINALS * cycles
    attempts = [e.data["attempt"] for e in events.events if e.event == "reconnecting"]
    assert attempts == [1] * outages
    assert events.events[-1].data == {"reason": "finished"}


async def test_stalled_riva_is_treated_as_a_failure_and_reconnected(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, riva_stall_timeout_s=0.4, riva_reconnect_deadline_s=5)
    async with running_gateway(settings) as gateway:
        faults = {"fake.stall_after_chunks": "9", "fake.fault_times": "1", "fake.fault_id": "stall"}
        events = await run_session(gateway, content_config(**faults), speech_audio(), pace_s=0.05)
    assert_exact_transcript(events)
    reconnecting = next(e for e in events.events if e.event == "reconnecting")
    assert reconnecting.data["code"] == "upstream_timeout"


async def test_riva_idle_timeout_during_a_client_pause_is_invisible(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, riva_stall_timeout_s=5)
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(**content_config(**{"fake.idle_timeout_ms": "200"}))
        events = EventCollector()
        audio = speech_audio()
        half = 12 * CHUNK  # 1.2 s: "one two" final, "three four" heard
        async with trio.open_nursery() as nursery:
            await nursery.start(read_events, gateway, session, events)
            async with audio_socket(gateway, session) as ws:
                await stream(ws, audio[:half], end=False)
                for _ in range(4):  # a pause much longer than Riva's idle timeout
                    await trio.sleep(0.25)
                    await ws.send_message('{"type": "keepalive"}')
                await stream(ws, audio[half:])
                assert (await close_reason(ws))[0] == 1000
    assert_exact_transcript(events)
    assert "error" not in events.names
    assert fake_riva.stats.snapshot()["started"] >= 2  # Riva really did close the idle stream


async def test_a_dropped_audio_socket_can_come_back_within_the_grace_period(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, audio_reconnect_grace_s=5)
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(**content_config())
        events = EventCollector()
        audio = speech_audio()
        async with trio.open_nursery() as nursery:
            await nursery.start(read_events, gateway, session, events)
            async with audio_socket(gateway, session) as ws:
                await stream(ws, audio[: 8 * CHUNK], end=False)
                await ws.aclose(4000, "network blip")
            async with audio_socket(gateway, session) as ws:
                resumed = await ws.get_message()
                assert isinstance(resumed, str) and '"type":"resumed"' in resumed
                assert '"audio_bytes_received":25600' in resumed
                await stream(ws, audio[8 * CHUNK :])
                assert (await close_reason(ws))[0] == 1000
    assert_exact_transcript(events)


async def test_past_the_grace_period_the_session_finalizes_and_ends_client_gone(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, audio_reconnect_grace_s=0.3)
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(**content_config())
        async with following(gateway, session) as (ws, events):
            await stream(ws, speech_audio()[: 10 * CHUNK], end=False)  # "one two", then "three" heard
            await wait_until(lambda: fake_riva.stats.snapshot()["chunks"] >= 10)
            await ws.aclose()
    assert events.finals == ["one two", "three"]  # what it had was finalized, not thrown away
    assert events.events[-1].data == {"reason": "client_gone"}
    assert fake_riva.stats.snapshot()["completed"] == 1 and fake_riva.stats.snapshot()["cancelled"] == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_fake_riva_process(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_riva", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    assert b"ready" in process.stdout.readline()
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


async def test_fake_riva_killed_and_restarted_mid_session() -> None:
    port = free_port()
    settings = Settings(riva_uri=f"127.0.0.1:{port}", riva_reconnect_deadline_s=15)
    audio = speech_audio()
    first = start_fake_riva_process(port)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with running_gateway(settings) as gateway:
            session = await gateway.create_session(**content_config())
            async with following(gateway, session) as (ws, events):
                await stream(ws, audio[: 10 * CHUNK], end=False)
                await wait_until(lambda: "one two" in events.finals)
                stop(first)  # the whole server process dies mid-utterance
                await stream(ws, audio[10 * CHUNK : 14 * CHUNK], end=False)
                await wait_until(lambda: "reconnecting" in events.names)
                second = await trio.to_thread.run_sync(start_fake_riva_process, port)
                await stream(ws, audio[14 * CHUNK :])
                code, _, frames = await close_reason(ws)
                assert code == 1000, frames
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert_exact_transcript(events)
    assert "reconnected" in events.names
