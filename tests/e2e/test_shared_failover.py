"""Shared state: an instance dies (kill -9) or is stopped (SIGTERM) mid-utterance; the client
reconnects its audio socket to another instance, resends from ``audio_bytes_received`` and gets
every word exactly once, times continuous. Redis itself dies and comes back mid-session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import trio

from fake_riva import FakeRiva
from tests.e2e.test_reliability import CHUNK, assert_exact_transcript, content_config, speech_audio, stream
from tests.e2e.test_shared_state import shared_settings
from tests.harness import (
    TEST_API_KEY,
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    free_port,
    poll_until,
    read_events,
    running_gateway,
    wait_until,
)
from tests.redis_server import RedisServer, running_redis

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def gateway_process(fake_riva: FakeRiva, redis_url: str, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A whole gateway in its own process (hypercorn.toml, as deployed) on a free port."""
    port = free_port()
    environment = {
        **os.environ,
        "RESERVE_RIVA_URI": fake_riva.target,
        "RESERVE_REDIS_URL": redis_url,
        "RESERVE_REDIS_LEASE_S": "1",
        "RESERVE_API_KEYS": TEST_API_KEY,
        "RESERVE_AUDIO_RECONNECT_GRACE_S": "10",
        "RESERVE_LOG_LEVEL": "WARNING",
        **env,
    }
    command = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "service.app:app"], cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


async def ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        with trio.fail_after(20):
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


async def create(base: str, config: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        response = await http.post("/v1/sessions", json=config, headers={"Authorization": f"Bearer {TEST_API_KEY}"})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


async def resume_elsewhere(gateway: Gateway, session: dict[str, Any], audio: bytes) -> int:
    """The client's reconnect: a new audio socket, resend from what the server says it has."""
    async with audio_socket(gateway, session) as ws:
        with trio.fail_after(10):
            resumed = json.loads(await ws.get_message())
        assert resumed["type"] == "resumed"
        offset = int(resumed["audio_bytes_received"])
        await stream(ws, audio[offset:])
        code, _, frames = await close_reason(ws)
        assert code == 1000, frames
    return offset


async def test_owner_killed_mid_utterance_the_session_is_taken_over_without_loss(fake_riva: FakeRiva) -> None:
    audio = speech_audio()
    with running_redis(Path(os.environ.get("TMPDIR", "/tmp"))) as redis:
        settings = shared_settings(fake_riva, redis)
        with gateway_process(fake_riva, redis.url) as (process, base):
            await ready(base)
            async with running_gateway(settings) as b:
                session = await create(base, content_config())
                events = EventCollector()
                async with trio.open_nursery() as nursery:
                    await nursery.start(read_events, b, session, events)
                    a = Gateway(base, settings, b.http, app=None)  # type: ignore[arg-type]
                    async with audio_socket(a, session) as ws:
                        await stream(ws, audio[: 10 * CHUNK], end=False)  # "one two", then "three" half heard
                        await wait_until(lambda: "one two" in events.finals)
                        await wait_until(lambda: any(t["text"] == "three" for t in events.transcripts))
                        process.send_signal(signal.SIGKILL)  # no goodbye: the lease has to lapse
                        await trio.to_thread.run_sync(process.wait)
                    offset = await resume_elsewhere(b, session, audio)
                metrics = (await b.http.get("/metrics")).text
        assert 'reserve_sessions_moved_total{kind="takeover"} 1.0' in metrics
        assert 0 < offset < 10 * CHUNK, "resumed from the last published final, not from what A had heard"
        assert_exact_transcript(events)


async def test_sigterm_hands_live_sessions_over_and_the_client_continues_elsewhere(fake_riva: FakeRiva) -> None:
    audio = speech_audio()
    with running_redis(Path(os.environ.get("TMPDIR", "/tmp"))) as redis:
        settings = shared_settings(fake_riva, redis)
        env = {"RESERVE_SHUTDOWN_GRACE_S": "0.3"}
        with gateway_process(fake_riva, redis.url, **env) as (process, base):
            await ready(base)
            async with running_gateway(settings) as b:
                session = await create(base, content_config())
                events = EventCollector()
                async with trio.open_nursery() as nursery:
                    await nursery.start(read_events, b, session, events)
                    a = Gateway(base, settings, b.http, app=None)  # type: ignore[arg-type]
                    async with audio_socket(a, session) as ws:
                        await stream(ws, audio[: 8 * CHUNK], end=False)
                        await wait_until(lambda: "one two" in events.finals)
                        process.send_signal(signal.SIGTERM)
                        code, reason, _ = await close_reason(ws)
                    assert (code, reason) == (1012, "session moved to another instance")
                    exit_code = await trio.to_thread.run_sync(process.wait)
                    assert exit_code == 0
                    offset = await resume_elsewhere(b, session, audio)
        assert offset == 8 * CHUNK, "A flushed everything it heard before it let go"
        assert_exact_transcript(events)


async def test_redis_killed_and_restarted_mid_session(fake_riva: FakeRiva, tmp_path: Path) -> None:
    audio = speech_audio()
    with running_redis(tmp_path) as redis:
        settings = shared_settings(fake_riva, redis, redis_outage_deadline_s=20)
        async with running_gateway(settings) as a, running_gateway(settings) as b:
            session = await a.create_session(**content_config())
            on_a, on_b = EventCollector(), EventCollector()
            async with trio.open_nursery() as nursery:
                await nursery.start(read_events, a, session, on_a)
                await nursery.start(read_events, b, session, on_b)
                async with audio_socket(a, session) as ws:
                    await stream(ws, audio[: 10 * CHUNK], end=False)
                    await wait_until(lambda: "one two" in on_b.finals)
                    redis.stop(kill=True)  # no persistence: it comes back empty

                    async def not_ready() -> bool:
                        response = await a.http.get("/readyz")
                        return response.status_code == 503 and response.json()["code"] == "redis_unavailable"

                    await stream(ws, audio[10 * CHUNK : 20 * CHUNK], end=False)  # events wait in A's buffer
                    await poll_until(not_ready)
                    await trio.to_thread.run_sync(redis.start)
                    await poll_until(lambda: ready_again(a))
                    await stream(ws, audio[20 * CHUNK :])
                    code, _, frames = await close_reason(ws)
                    assert code == 1000, frames
            async with running_gateway(settings) as c:  # it never saw the lost history
                lines = await raw_events(c, session)
    assert_exact_transcript(on_a)  # the owner's readers: nothing lost
    assert on_b.finals == on_a.finals  # the other instance's readers too
    assert [e.id for e in on_b.events] == [e.id for e in on_a.events]
    # a resume from the start on a third instance: Redis lost the first events, and says so
    gap = json.loads(lines[lines.index("event: gap") + 1].removeprefix("data: "))
    assert gap["code"] == "history_lost" and gap["missing_from"] == 1
    assert "id: 1" not in lines and lines[lines.index("event: gap") - 1] != "id: 1"
    first_id = int(next(line for line in lines if line.startswith("id: ")).removeprefix("id: "))
    assert first_id == gap["resumes_at"] > 1
    assert lines[-3:] == [f"id: {on_a.events[-1].id}", "event: end", 'data: {"reason":"finished"}']


async def raw_events(gateway: Gateway, session: dict[str, Any]) -> list[str]:
    """The event stream's lines as sent (the harness's reader wants an id on every event)."""
    headers = {"Authorization": f"Bearer {session['token']}", "Last-Event-ID": "0"}
    with trio.fail_after(10):
        async with gateway.http.stream("GET", session["events_url"], headers=headers) as response:
            body = (await response.aread()).decode()
    return [line for line in body.splitlines() if line and not line.startswith((":", "retry:"))]


async def ready_again(gateway: Gateway) -> bool:
    return (await gateway.http.get("/readyz")).status_code == 200


async def test_redis_away_past_the_deadline_fails_the_session_with_a_typed_error(
    fake_riva: FakeRiva, tmp_path: Path
) -> None:
    audio = speech_audio()
    with running_redis(tmp_path, appendonly=True) as redis:
        settings = shared_settings(fake_riva, redis, redis_outage_deadline_s=0.5)
        async with running_gateway(settings) as a:
            session = await a.create_session(**content_config())
            events = EventCollector()
            with trio.fail_after(20):
                await fail_when_redis_stays_away(a, session, events, redis, audio)
    assert [e.id for e in events.events] == list(range(1, len(events.events) + 1)), "no gap"
    assert events.names[-2:] == ["error", "end"]
    assert events.events[-2].data["code"] == "state_unavailable"


async def fail_when_redis_stays_away(
    a: Gateway, session: dict[str, Any], events: EventCollector, redis: RedisServer, audio: bytes
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, a, session, events)
        async with audio_socket(a, session) as ws:
            await stream(ws, audio[: 10 * CHUNK], end=False)
            await wait_until(lambda: "one two" in events.finals)
            redis.stop(kill=True)
            await stream(ws, audio[10 * CHUNK :], end=False)
            code, reason, frames = await close_reason(ws)
            assert (code, reason) == (1013, "state_unavailable")
            assert frames[-1]["code"] == "state_unavailable"
            assert events.events[-1].event == "transcript", "no reader saw more than Redis has"
            await trio.to_thread.run_sync(redis.start)  # with its append-only file: nothing lost
