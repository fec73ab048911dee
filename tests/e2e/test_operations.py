"""Operations over real sockets: /metrics moving with a session, lifecycle logs, /readyz, /v1/models."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fake_riva import FakeRiva
from service.observability.logging import JsonFormatter
from service.settings import Settings
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    read_events,
    running_fake_riva,
    running_gateway,
    stream_audio,
    wait_until,
)

WORDS = "zebra quartz lantern|meadow violet"
SCRIPT = {"fake.transcript": WORDS, "fake.ms_per_word": "100"}


async def scrape(gateway: Gateway) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` -> value."""
    response = await gateway.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def scrape_until(gateway: Gateway, name: str, value: float, timeout_s: float = 5) -> dict[str, float]:
    """Scrape until ``name`` reads ``value`` (state released by other tasks, e.g. a closing SSE body)."""
    with trio.fail_after(timeout_s):
        while True:
            metrics = await scrape(gateway)
            if metrics.get(name) == pytest.approx(value):
                return metrics
            await trio.sleep(0.02)


async def test_metrics_follow_a_session_from_creation_to_its_end(gateway: Gateway, fake_riva: FakeRiva) -> None:
    before = await scrape(gateway)
    assert before["reserve_sessions_active"] == 0 and before["reserve_sessions_created_total"] == 0
    assert before["reserve_riva_streams_capacity"] == gateway.settings.max_sessions

    session = await gateway.create_session(custom_configuration=SCRIPT)
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=0.3, end=False)
            await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 1)
            during = await scrape_until(gateway, "reserve_audio_received_seconds_total", 0.3)
            assert during["reserve_sessions_active"] == 1
            assert during["reserve_sessions_created_total"] == 1
            assert during["reserve_sse_readers"] == 1
            assert during["reserve_riva_streams_open"] == 1
            assert during['reserve_audio_received_bytes_total{encoding="LINEAR_PCM"}'] == 0.3 * 32000
            # a result before the end of audio, which closes the chunk-to-result window (a loaded
            # machine may otherwise deliver every result after it)
            await wait_until(lambda: bool(events.transcripts))
            await stream_audio(ws, seconds=0.2)
            assert (await close_reason(ws))[:2] == (1000, "session finished")
    await events.done.wait()
    interims = [t for t in events.transcripts if not t["is_final"]]
    finals = [t for t in events.transcripts if t["is_final"]]
    assert interims and len(finals) == 2

    after = await scrape_until(gateway, "reserve_sse_readers", 0)
    assert after["reserve_sessions_active"] == 0
    assert after["reserve_sessions_created_total"] == 1
    assert after['reserve_sessions_finished_total{outcome="finished",reason="finished"}'] == 1
    assert after['reserve_results_total{kind="interim"}'] == len(interims)
    assert after['reserve_results_total{kind="final"}'] == len(finals)
    assert after["reserve_audio_received_seconds_total"] == pytest.approx(0.5)
    assert after["reserve_first_result_seconds_count"] == 1
    assert after['reserve_final_latency_seconds_count{trigger="end"}'] == 1
    assert after["reserve_chunk_to_result_seconds_count"] >= 1
    assert after["reserve_riva_streams_open"] == 0
    assert after["reserve_sessions_retained"] == 1
    assert not any(k.startswith("reserve_riva_errors_total") for k in after), "no Riva error was seen"
    assert session["id"] not in (await gateway.http.get("/metrics")).text, "no session ids in labels"


async def test_metrics_count_riva_errors_by_grpc_code_and_failed_sessions(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration={"fake.refuse": "INVALID_ARGUMENT"})
    async with audio_socket(gateway, session) as ws:
        await stream_audio(ws, seconds=0.1, end=False)
        assert (await close_reason(ws))[:2] == (4422, "invalid_config")
    after = await scrape_until(gateway, "reserve_sessions_active", 0)
    assert after['reserve_riva_errors_total{grpc_code="INVALID_ARGUMENT"}'] == 1
    assert after['reserve_sessions_finished_total{outcome="failed",reason="error"}'] == 1
    assert after['reserve_session_errors_total{code="invalid_config"}'] == 1


async def test_a_reconnect_is_counted_with_the_error_that_caused_it(gateway: Gateway) -> None:
    faults = {"fake.fail_after_chunks": "2", "fake.fail_code": "UNAVAILABLE", "fake.fault_times": "1"}
    config = {**SCRIPT, **faults, "fake.fault_id": uuid.uuid4().hex}
    session = await gateway.create_session(custom_configuration=config)
    async with audio_socket(gateway, session) as ws:
        await stream_audio(ws, seconds=0.5)
        assert (await close_reason(ws))[:2] == (1000, "session finished")
    after = await scrape_until(gateway, "reserve_sessions_active", 0)
    assert after['reserve_riva_errors_total{grpc_code="UNAVAILABLE"}'] == 1
    assert after["reserve_riva_reconnects_total"] == 1
    assert after['reserve_sessions_finished_total{outcome="finished",reason="finished"}'] == 1


async def test_two_apps_in_one_process_keep_separate_metrics(gateway: Gateway, settings: Settings) -> None:
    await gateway.create_session()
    async with running_gateway(settings) as other:
        assert (await scrape(other))["reserve_sessions_created_total"] == 0
    assert (await scrape(gateway))["reserve_sessions_created_total"] == 1


async def test_lifecycle_logs_carry_the_session_id_and_no_transcript(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    session = await gateway.create_session(custom_configuration=SCRIPT)
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=0.5)
            await close_reason(ws)
    assert events.finals == ["zebra quartz lantern", "meadow violet"]
    ours = [r for r in caplog.records if getattr(r, "session_id", None) == session["id"]]
    messages = [r.getMessage() for r in ours]
    assert messages[0] == f"session {session['id']} created"
    assert f"session {session['id']} audio socket attached" in messages
    assert f"session {session['id']} finished (reason=finished)" in messages
    assert all(r.levelno == logging.INFO for r in ours)
    session_lines = [r for r in caplog.records if r.name == "reserve.session"]
    assert all(getattr(r, "session_id", None) for r in session_lines), "every session line carries its id"
    spoken = WORDS.replace("|", " ").split()
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert not any(word in record.getMessage() for word in spoken), record.getMessage()
    line = json.loads(JsonFormatter().format(ours[0]))
    assert line["session_id"] == session["id"] and line["level"] == "INFO" and line["logger"] == "reserve.session"


async def get_json(gateway: Gateway, path: str) -> tuple[int, dict[str, Any]]:
    response = await gateway.http.get(path)
    return response.status_code, response.json()


async def test_readyz_is_ready_while_riva_answers_and_503_once_it_stops() -> None:
    with running_fake_riva() as riva:
        settings = Settings(riva_uri=riva.target, readiness_cache_s=0.1, readiness_timeout_s=1)
        async with running_gateway(settings) as gateway:
            status, body = await get_json(gateway, "/readyz")
            assert status == 200, body
            assert body["status"] == "ready" and body["riva"]["uri"] == riva.target
            assert body["riva"]["languages"] == ["en-US", "es-US"] and body["riva"]["streaming_models"] == 2
            riva.stop(0)
            await trio.sleep(0.15)  # past the cache
            status, body = await get_json(gateway, "/readyz")
            assert status == 503, body
            assert body["status"] == "not_ready" and body["code"] == "upstream_unavailable"
            assert riva.target in body["reason"]
            assert (await gateway.http.get("/healthz")).status_code == 200, "alive, just not ready"


async def test_readyz_reuses_its_answer_for_the_cache_period() -> None:
    with running_fake_riva() as riva:
        settings = Settings(riva_uri=riva.target, readiness_cache_s=30)
        async with running_gateway(settings) as gateway:
            first = await get_json(gateway, "/readyz")
            riva.stop(0)
            second = await get_json(gateway, "/readyz")
    assert first[0] == second[0] == 200
    assert first[1]["riva"]["checked_at"] == second[1]["riva"]["checked_at"], "Riva was asked once"


async def test_models_lists_what_riva_offers_for_streaming(gateway: Gateway) -> None:
    status, body = await get_json(gateway, "/v1/models")
    assert status == 200
    assert body["languages"] == ["en-US", "es-US"]
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"conformer-en-US-asr-streaming", "conformer-es-US-asr-streaming"}, "no offline model"
    assert by_name["conformer-es-US-asr-streaming"]["languages"] == ["es-US"]
    assert by_name["conformer-en-US-asr-streaming"]["streaming"] is True
    assert by_name["conformer-en-US-asr-streaming"]["sample_rate_hertz"] == 16000


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({"language_code": "xx-XX"}, "language_code", "no streaming model offers 'xx-XX'"),
        ({"model": "no-such-model"}, "model", "is not a model this Riva offers"),
        ({"model": "conformer-en-US-asr-offline"}, "model", "is an offline model"),
        ({"model": "conformer-es-US-asr-streaming"}, "language_code", "does not offer 'en-US'"),
    ],
)
async def test_sessions_asking_for_what_riva_lacks_get_422_with_the_choices(
    gateway: Gateway, config: dict[str, str], field: str, reason: str
) -> None:
    response = await gateway.http.post("/v1/sessions", json=config)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert [f["field"] for f in error["fields"]] == [field]
    assert reason in error["fields"][0]["reason"]
    assert error["available"]["languages"] == ["en-US", "es-US"]
    assert {m["name"] for m in error["available"]["models"]} == {
        "conformer-en-US-asr-streaming",
        "conformer-es-US-asr-streaming",
    }


async def test_sessions_for_what_riva_offers_are_created(gateway: Gateway) -> None:
    await gateway.create_session(language_code="es-US")
    await gateway.create_session(language_code="es-US", model="conformer-es-US-asr-streaming")


async def test_when_riva_cannot_be_asked_sessions_are_created_and_riva_judges_later() -> None:
    settings = Settings(riva_uri="127.0.0.1:9", readiness_timeout_s=1)  # nothing listens on port 9
    async with running_gateway(settings) as gateway:
        await gateway.create_session(language_code="xx-XX")
        status, body = await get_json(gateway, "/v1/models")
        assert status == 503 and body["error"]["code"] == "upstream_unavailable"
        status, body = await get_json(gateway, "/readyz")
        assert status == 503 and body["code"] == "upstream_unavailable"
