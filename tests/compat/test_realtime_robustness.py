"""The realtime socket under faults: Riva failing mid-connection (every word exactly once, through
the OpenAI SDK), and bad client events, each answered with a typed ``error`` event."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
import trio
from openai import OpenAI
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.compat.conftest import in_thread, scripted_gateway
from tests.harness import TEST_API_KEY, Gateway

RATE = 24000
WORDS = "one two|three four|five six"
# every sample names a word of WORDS (0 is silence): fake_riva's content-driven script
SPEECH = [(1, 200), (2, 200), (0, 400), (3, 200), (4, 200), (0, 400), (5, 200), (6, 200), (0, 400)]
CHUNK = 4800  # 100 ms at 24 kHz


def speech() -> bytes:
    return np.concatenate([np.full(ms * RATE // 1000, value, dtype="<i2") for value, ms in SPEECH]).tobytes()


def vad_transcripts(gateway: Gateway, audio: bytes, turns: int) -> list[Any]:
    client = OpenAI(api_key=TEST_API_KEY, base_url=f"{gateway.base_url}/v1", max_retries=0)
    events: list[Any] = []
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session={"type": "transcription"})
        for start in range(0, len(audio), CHUNK):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[start : start + CHUNK]).decode())
        for event in connection:
            events.append(event)
            if sum(e.type == "conversation.item.input_audio_transcription.completed" for e in events) == turns:
                break
    return events


@pytest.mark.parametrize("transport", ["h2", "aio", "threads"])
async def test_riva_failing_mid_connection_loses_and_repeats_nothing(transport: str) -> None:
    faults = {
        "fake.words_in_audio": "true",
        "fake.fail_after_chunks": "10",  # inside "three four", after the first turn's final
        "fake.fail_code": "UNAVAILABLE",
        "fake.fault_times": "1",
        "fake.fault_id": "realtime",
    }
    async with scripted_gateway(WORDS, faults, riva_transport=transport) as gateway:
        events = await in_thread(lambda: vad_transcripts(gateway, speech(), 3))
        describe = await gateway.http.get("/metrics")
    completed = [e.transcript for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert completed == ["one two", "three four", "five six"]
    assert "error" not in [e.type for e in events]  # failover is invisible to the client
    assert "reserve_riva_reconnects_total 1.0" in describe.text
    assert 'reserve_adapter_sessions_total{protocol="openai"} 1.0' in describe.text


# -- bad client events ---------------------------------------------------------------------------
async def send(ws: WebSocketConnection, message: str | bytes) -> dict[str, Any]:
    await ws.send_message(message)
    with trio.fail_after(5):
        return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def test_bad_events_each_get_a_typed_error_and_the_socket_stays_open() -> None:
    async with scripted_gateway(WORDS) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        headers = [(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]
        max_audio = gateway.settings.max_frame_bytes
        async with open_websocket_url(url, extra_headers=headers) as ws:
            assert json.loads(await ws.get_message())["type"] == "session.created"
            answers = {
                "bad json": await send(ws, "{not json"),
                "no type": await send(ws, '{"audio": "AAAA"}'),
                "unknown": await send(ws, '{"type": "input_audio_buffer.shout", "event_id": "e1"}'),
                "conversation": await send(ws, '{"type": "response.create"}'),
                "bad base64": await send(ws, '{"type": "input_audio_buffer.append", "audio": "***", "event_id": "e2"}'),
                "too large": await send(
                    ws,
                    json.dumps(
                        {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(max_audio + 3)).decode()}
                    ),
                ),
                "binary": await send(ws, b"\x00\x01"),
                "noise": await send(
                    ws,
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {"type": "transcription", "audio": {"input": {"noise_reduction": {}}}},
                        }
                    ),
                ),
                "empty commit": await send(ws, '{"type": "input_audio_buffer.commit"}'),
                "good update": await send(ws, '{"type": "session.update", "session": {"type": "transcription"}}'),
            }
            await ws.aclose()
        metrics = (await gateway.http.get("/metrics")).text
    codes = {name: (a["type"], a.get("error", {}).get("code")) for name, a in answers.items()}
    assert codes == {
        "bad json": ("error", "invalid_json"),
        "no type": ("error", "invalid_event"),
        "unknown": ("error", "unknown_event"),
        "conversation": ("error", "unsupported_event"),
        "bad base64": ("error", "invalid_audio"),
        "too large": ("error", "audio_too_large"),
        "binary": ("error", "invalid_event"),
        "noise": ("error", "unsupported_option"),
        "empty commit": ("error", "input_audio_buffer_commit_empty"),
        "good update": ("session.updated", None),
    }
    assert answers["unknown"]["error"]["event_id"] == "e1" and answers["unknown"]["error"]["param"] == "type"
    assert answers["bad base64"]["error"]["event_id"] == "e2"
    assert answers["noise"]["error"]["param"] == "session.audio.input.noise_reduction"
    assert all(a["error"]["type"] == "invalid_request_error" for a in answers.values() if a["type"] == "error")
    assert 'reserve_realtime_errors_total{code="invalid_json"} 1.0' in metrics


async def closing(url: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
    return await closing_after(url, 1, **kwargs)


async def test_credentials_on_the_socket() -> None:
    async with scripted_gateway(WORDS) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        missing = await closing(url)
        key_as_subprotocol = await closing(url, subprotocols=["realtime", f"openai-insecure-api-key.{TEST_API_KEY}"])
        wrong_key = await closing(url, extra_headers=[("Authorization", "Bearer nope")])
        conversation = await closing(
            f"{gateway.ws_base}/v1/realtime?intent=conversation",
            extra_headers=[(b"Authorization", f"Bearer {TEST_API_KEY}".encode())],
        )
    assert (missing[0]["error"]["code"], missing[1]) == ("unauthorized", 4401)
    assert (key_as_subprotocol[0]["error"]["code"], key_as_subprotocol[1]) == ("forbidden", 4403)
    assert "never be sent from a browser" in key_as_subprotocol[0]["error"]["message"]
    assert (wrong_key[0]["error"]["code"], wrong_key[1]) == ("forbidden", 4403)
    assert (conversation[0]["error"]["code"], conversation[1]) == ("bad_request", 1003)


async def test_riva_down_fails_the_turn_with_a_typed_error_and_a_close_code() -> None:
    custom = {"fake.refuse": "UNAVAILABLE"}
    async with scripted_gateway(WORDS, custom, riva_start_deadline_s=0.3) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        headers = [(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]
        events: list[dict[str, Any]] = []
        async with open_websocket_url(url, extra_headers=headers) as ws:
            try:
                update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                    "turn_detection": None}}}}  # fmt: skip
                await ws.send_message(json.dumps(update))
                audio = base64.b64encode(bytes(CHUNK)).decode()
                await ws.send_message(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
                await ws.send_message('{"type": "input_audio_buffer.commit"}')
                with trio.fail_after(10):
                    while True:
                        events.append(json.loads(await ws.get_message()))
            except ConnectionClosed as closed:
                assert closed.reason is not None
                code = closed.reason.code
            finally:
                await ws._stream.aclose()
    types = [e["type"] for e in events]
    assert types[-2:] == ["error", "conversation.item.input_audio_transcription.failed"]
    assert events[-2]["error"]["code"] == "upstream_unavailable" and events[-2]["error"]["type"] == "server_error"
    assert events[-1]["item_id"] == next(e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed")
    assert code == 1011


async def test_settings_are_fixed_once_audio_has_started() -> None:
    async with scripted_gateway(WORDS) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        async with open_websocket_url(url, extra_headers=[(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]) as ws:
            assert json.loads(await ws.get_message())["type"] == "session.created"
            audio = base64.b64encode(bytes(CHUNK)).decode()
            await ws.send_message(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            manual = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
            await ws.send_message(json.dumps({"type": "session.update", "session": manual, "event_id": "late"}))
            with trio.fail_after(5):
                while (answer := json.loads(await ws.get_message()))["type"] != "error":
                    pass
            await ws.aclose()
    assert answer["error"]["code"] == "session_streaming" and answer["error"]["event_id"] == "late"


async def test_a_connection_that_never_sends_audio_is_closed() -> None:
    async with scripted_gateway(WORDS, idle_session_timeout_s=0.3) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        first, code = await closing_after(url, 2, extra_headers=[(b"Authorization", f"Bearer {TEST_API_KEY}".encode())])
    assert (first["type"], first["error"]["code"], code) == ("error", "idle_timeout", 1000)


async def closing_after(url: str, messages: int, **kwargs: Any) -> tuple[dict[str, Any], int]:
    """The ``messages``-th message, then the close code."""
    async with open_websocket_url(url, **kwargs) as ws:
        try:
            for _ in range(messages):
                last = json.loads(await ws.get_message())
            with trio.fail_after(5):
                await ws.get_message()
        except ConnectionClosed as closed:
            assert closed.reason is not None
            return last, closed.reason.code
        finally:
            await ws._stream.aclose()
    raise AssertionError("the socket stayed open")


async def test_limits_apply_to_realtime_connections() -> None:
    headers = [(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]
    async with scripted_gateway(WORDS, max_sessions_per_key=1) as gateway:
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        async with open_websocket_url(url, extra_headers=headers) as first:
            assert json.loads(await first.get_message())["type"] == "session.created"
            second = await closing(url, extra_headers=headers)  # the key's one live session is taken
            await first.aclose()
    assert (second[0]["error"]["code"], second[1]) == ("rate_limited", 1008)
    async with scripted_gateway(WORDS, max_sessions=1) as gateway:
        held = await gateway.create_session()  # the gateway's one session
        url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        async with open_websocket_url(url, extra_headers=headers) as ws:
            try:
                assert json.loads(await ws.get_message())["type"] == "session.created"
                audio = base64.b64encode(bytes(CHUNK)).decode()
                await ws.send_message(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
                refused = json.loads(await ws.get_message())
                with trio.fail_after(5):
                    await ws.get_message()
            except ConnectionClosed as closed:
                assert closed.reason is not None
                code = closed.reason.code
            finally:
                await ws._stream.aclose()
        await gateway.http.delete(
            held["audio_url"].removesuffix("/audio"), headers={"Authorization": f"Bearer {held['token']}"}
        )
    assert (refused["error"]["code"], refused["error"]["type"], code) == ("overloaded", "server_error", 1013)
