"""Bad input of every kind gets its specified, typed error and leaves the service healthy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Gateway, audio_socket, close_reason, following, stream_audio

SCRIPT = {"fake.transcript": "still works", "fake.ms_per_word": "100"}


async def assert_healthy(gateway: Gateway) -> None:
    assert (await gateway.http.get("/healthz")).status_code == 200
    session = await gateway.create_session(custom_configuration=SCRIPT)
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.3)
        await close_reason(ws)
    assert events.finals == ["still works"]


@pytest.mark.parametrize(
    ("frame", "code", "error"),
    [
        ("hello", 1003, "bad_message"),  # text that is not JSON
        ('{"type": "end"', 1003, "bad_message"),  # malformed JSON
        ('{"type": "rewind"}', 1003, "bad_message"),  # unknown control type
        ('{"kind": "end"}', 1003, "bad_message"),  # no type
        ("[1, 2]", 1003, "bad_message"),  # not an object
        (b"\x00" * (256 * 1024 + 1), 1009, "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_a_close_code(
    gateway: Gateway, frame: str | bytes, code: int, error: str
) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    async with following(gateway, session) as (ws, events):
        await ws.send_message(frame)
        got_code, reason, frames = await close_reason(ws)
    assert (got_code, reason) == (code, error)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == error and frames[-1]["message"]
    assert events.events[-1].data == {"reason": "client_gone"}
    await assert_healthy(gateway)


async def test_audio_after_end_is_refused_and_the_finals_still_arrive(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration={**SCRIPT, "fake.delay_ms": "300"})
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.2)
        await ws.send_message(b"\x00" * 3200)
        code, reason, _ = await close_reason(ws)
    assert (code, reason) == (1003, "bad_message")
    assert events.finals == ["still works"]
    assert events.events[-1].data == {"reason": "finished"}


async def test_a_second_audio_socket_is_refused_while_one_streams(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    async with audio_socket(gateway, session) as first:
        await first.send_message(b"\x00" * 3200)
        async with audio_socket(gateway, session) as second:
            code, reason, frames = await close_reason(second)
        assert (code, reason) == (4409, "audio_attached")
        assert frames[0]["code"] == "audio_attached"
        await stream_audio(first, seconds=0.2)
        assert (await close_reason(first))[0] == 1000


async def test_a_finished_session_refuses_new_audio(gateway: Gateway) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    async with audio_socket(gateway, session) as ws:
        await stream_audio(ws, seconds=0.2)
        await close_reason(ws)
    async with audio_socket(gateway, session) as ws:
        code, reason, _ = await close_reason(ws)
    assert (code, reason) == (4410, "session_closed")


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [(None, 4401, "unauthorized"), ("not-the-token", 4403, "forbidden")],
)
async def test_audio_socket_needs_the_session_token(
    gateway: Gateway, token: str | None, code: int, reason: str
) -> None:
    session = await gateway.create_session()
    async with audio_socket(gateway, session, token=token) as ws:
        assert (await close_reason(ws))[:2] == (code, reason)


async def test_unknown_session_everywhere(gateway: Gateway) -> None:
    fake = {"audio_url": "/v1/sessions/nope/audio", "token": "x"}
    async with audio_socket(gateway, fake) as ws:
        assert (await close_reason(ws))[:2] == (4404, "not_found")
    for method, path in [
        ("GET", "/v1/sessions/nope"),
        ("DELETE", "/v1/sessions/nope"),
        ("GET", "/v1/sessions/nope/events"),
    ]:
        response = await gateway.http.request(method, path, headers={"Authorization": "Bearer x"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "params", "status", "code"),
    [
        ({}, {}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, {}, 403, "forbidden"),
        ({"Authorization": "Basic abc"}, {}, 401, "unauthorized"),
        ({}, {"token": "wrong"}, 403, "forbidden"),
    ],
)
async def test_session_resources_need_the_token(
    gateway: Gateway, headers: dict[str, str], params: dict[str, str], status: int, code: str
) -> None:
    session = await gateway.create_session()
    for method, path in [
        ("GET", f"/v1/sessions/{session['id']}"),
        ("GET", session["events_url"]),
        ("DELETE", f"/v1/sessions/{session['id']}"),
    ]:
        response = await gateway.http.request(method, path, headers=headers, params=params)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sample_rate_hertz": 4000}, "sample_rate_hertz"),
        ({"sample_rate_hertz": "16000"}, "sample_rate_hertz"),
        ({"encoding": "MP3"}, "encoding"),
        ({"language_code": "english please"}, "language_code"),
        ({"interim_results": "yes"}, "interim_results"),
        ({"max_alternatives": 0}, "max_alternatives"),
        ({"boosted_words": [{"phrases": [], "boost": 5}]}, "boosted_words.0.phrases"),
        ({"endpointing": {"stop_threshold": 2}}, "endpointing.stop_threshold"),
        ({"speaker_diarization": {"enabled": True, "max_speakers": 0}}, "speaker_diarization.max_speakers"),
        ({"custom_configuration": {"k": 1}}, "custom_configuration.k"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_settings_get_422_naming_the_field(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    response = await gateway.http.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert field in [f["field"] for f in error["fields"]]
    assert all(f["reason"] for f in error["fields"])


async def test_malformed_or_oversized_bodies(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/sessions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_request")
    response = await gateway.http.post("/v1/sessions", content=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    response = await gateway.http.post(
        "/v1/sessions", content=b" " * (65 * 1024), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and "error" in response.json()
    await assert_healthy(gateway)


async def test_bad_last_event_id(gateway: Gateway) -> None:
    session = await gateway.create_session()
    response = await gateway.http.get(
        session["events_url"], headers={"Authorization": f"Bearer {session['token']}", "Last-Event-ID": "-3"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_request")


async def test_created_session_has_unguessable_credentials(gateway: Gateway) -> None:
    a, b = await gateway.create_session(), await gateway.create_session()
    assert a["id"] != b["id"] and a["token"] != b["token"]
    assert len(a["id"]) >= 22 and len(a["token"]) >= 43  # >= 128 and 256 random bits, base64url
    assert a["config"]["sample_rate_hertz"] == 16000 and a["config"]["encoding"] == "LINEAR_PCM"
    assert a["audio_url"] == f"/v1/sessions/{a['id']}/audio"
