"""Property-based fuzzing of everything a client can send: bodies, query parameters and
WebSocket frames. The answer is always a specified error or a success, never a 500, a
traceback or a hang, and the service stays healthy afterwards."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, given, settings
from trio_websocket import ConnectionClosed

from service.settings import Settings
from tests.harness import Gateway, audio_socket, poll_until, running_gateway

EXAMPLES = int(os.environ.get("RESERVE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
SPECIFIED_HTTP = {200, 201, 204, 400, 401, 403, 404, 409, 413, 415, 422, 429, 503}
SPECIFIED_CLOSE = {1000, 1003, 1007, 1009, 1011, 4401, 4403, 4404, 4409, 4410, 4422}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
settings_like = st.fixed_dictionaries(
    {},
    optional={
        "encoding": st.sampled_from(["LINEAR_PCM", "MULAW", "ALAW", "FLAC", "OGGOPUS", "MP3", ""]) | json_values,
        "sample_rate_hertz": st.integers(-1, 100_000) | json_values,
        "language_code": st.text(max_size=12) | json_values,
        "interim_results": st.booleans() | json_values,
        "max_alternatives": st.integers(-5, 50),
        "boosted_words": st.lists(st.fixed_dictionaries({"phrases": st.lists(st.text()), "boost": json_values})),
        "endpointing": st.dictionaries(st.sampled_from(["stop_history", "stop_threshold", "x"]), json_values),
        "custom_configuration": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | settings_like.map(lambda v: json.dumps(v).encode())
)


async def assert_healthy(gateway: Gateway) -> None:
    assert (await gateway.http.get("/healthz")).status_code == 200


def assert_json_error_or_success(response: Any) -> None:
    assert response.status_code in SPECIFIED_HTTP, (response.status_code, response.text)
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


@FUZZ
@given(body=bodies, content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form"]))
async def test_session_bodies(settings: Settings, body: bytes, content_type: str) -> None:
    async with running_gateway(settings) as gateway:
        await _session_body(gateway, body, content_type)


async def _session_body(gateway: Gateway, body: bytes, content_type: str) -> None:
    with trio.fail_after(5):
        response = await gateway.http.post("/v1/sessions", content=body, headers={"Content-Type": content_type})
    assert_json_error_or_success(response)
    if response.status_code == 201:
        created = response.json()
        await gateway.http.delete(
            f"/v1/sessions/{created['id']}", headers={"Authorization": f"Bearer {created['token']}"}
        )
    await assert_healthy(gateway)


@FUZZ
@given(
    last_event_id=st.text(max_size=30),
    token=st.text(max_size=60),
    session_id=st.text(min_size=1, max_size=40),
)
async def test_event_query_parameters(settings: Settings, last_event_id: str, token: str, session_id: str) -> None:
    async with running_gateway(settings) as gateway:
        await _event_query(gateway, last_event_id, token, session_id)


async def _event_query(gateway: Gateway, last_event_id: str, token: str, session_id: str) -> None:
    session = await gateway.create_session()
    for sid in (session["id"], quote(session_id, safe="")):
        params = {"last_event_id": last_event_id, "token": token}
        with trio.fail_after(5):
            response = await gateway.http.get(f"/v1/sessions/{sid}/events", params=params)
        assert_json_error_or_success(response)
    await gateway.http.delete(f"/v1/sessions/{session['id']}", headers={"Authorization": f"Bearer {session['token']}"})


frames = st.lists(
    st.binary(max_size=4000)
    | st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.sampled_from(['{"type": "end"}', '{"type": "finalize"}', '{"type": "keepalive"}', "", "{}"])
    | st.just(b"\x00" * (300 * 1024)),
    max_size=8,
)


@FUZZ
@given(frames=frames)
async def test_websocket_frames(settings: Settings, frames: list[bytes | str]) -> None:
    async with running_gateway(settings) as gateway:
        await _frames(gateway, frames)


async def _frames(gateway: Gateway, frames: list[bytes | str]) -> None:
    session = await gateway.create_session(custom_configuration={"fake.transcript": "fuzz", "fake.ms_per_word": "50"})
    with trio.fail_after(10):
        async with audio_socket(gateway, session) as ws:
            try:
                for frame in frames:
                    await ws.send_message(frame)
                await ws.send_message('{"type": "end"}')
                while True:
                    await ws.get_message()
            except ConnectionClosed as closed:
                assert closed.reason is not None
                assert closed.reason.code in SPECIFIED_CLOSE, closed.reason
    await assert_healthy(gateway)


async def test_invalid_utf8_in_a_text_frame_is_refused(gateway: Gateway) -> None:
    """Text frames must be UTF-8: a raw one with bad bytes ends that socket and hurts nobody else."""
    session = await gateway.create_session()
    stream = await trio.open_tcp_stream("127.0.0.1", int(gateway.base_url.rsplit(":", 1)[1]))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    await stream.send_all(
        (
            f"GET {session['audio_url']}?token={session['token']} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    handshake = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in handshake:
            handshake += await stream.receive_some()
    assert b" 101 " in handshake.split(b"\r\n", 1)[0]
    payload, mask = b"\xff\xfe\xfd", b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await stream.send_all(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    received = handshake.split(b"\r\n\r\n", 1)[1]
    with trio.fail_after(5):  # no hang: the server ends the connection
        while chunk := await stream.receive_some():
            received += chunk
    # wsproto rejects the frame; hypercorn then drops the connection (with a 1007 close frame
    # when it gets the chance), so the socket is gone either way
    if received:
        assert received[0] == 0x88 and int.from_bytes(received[2:4], "big") == 1007
    auth = {"Authorization": f"Bearer {session['token']}"}

    async def cancelled() -> bool:
        return bool(
            (await gateway.http.get(f"/v1/sessions/{session['id']}", headers=auth)).json()["state"] == "cancelled"
        )

    await poll_until(cancelled)
    await stream.aclose()
    await assert_healthy(gateway)
