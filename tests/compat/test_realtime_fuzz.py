"""Property-based fuzzing of realtime client events: whatever a client sends, each problem is an
``error`` event of the client's kind, the socket stays open (until the client's own ``done``), and
the gateway stays healthy."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, given, settings
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.compat.conftest import scripted_gateway
from tests.harness import TEST_API_KEY, Gateway

EXAMPLES = int(os.environ.get("RESERVE_FUZZ_EXAMPLES", "60")) // 2
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
TYPES = [
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "input_audio_buffer.done",
    "response.create",
]
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
audio_input = st.fixed_dictionaries(
    {},
    optional={
        "format": st.fixed_dictionaries(
            {"type": st.sampled_from(["audio/pcm", "audio/pcmu", "audio/pcma", "audio/x"]) | values},
            optional={"rate": st.integers(0, 100_000) | values},
        ),
        "transcription": st.dictionaries(st.sampled_from(["model", "language", "prompt", "keywords"]), values),
        "turn_detection": st.none() | st.just({"type": "server_vad"}) | values,
        "noise_reduction": st.none() | values,
    },
)
sessions = values | st.fixed_dictionaries(
    {"type": st.just("transcription") | values}, optional={"audio": st.fixed_dictionaries({"input": audio_input})}
)
audio = st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode()) | values
events = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | st.text(max_size=20) | values},
    optional={"session": sessions, "audio": audio, "event_id": st.text(max_size=10) | values},
)
messages = st.lists(
    events.map(json.dumps) | st.text(max_size=100) | st.binary(max_size=100),
    max_size=8,
)


@FUZZ
@given(sent=messages)
async def test_realtime_events(sent: list[str | bytes]) -> None:
    async with scripted_gateway("fuzz words here", {"fake.ms_per_word": "50"}) as gateway:
        await _exchange(gateway, sent)


async def _exchange(gateway: Gateway, sent: list[str | bytes]) -> None:
    url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
    ended = any(isinstance(m, str) and '"input_audio_buffer.done"' in m for m in sent)
    received: list[dict[str, Any]] = []
    with trio.fail_after(10):
        async with open_websocket_url(url, extra_headers=[(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]) as ws:
            try:
                for message in sent:
                    await ws.send_message(message)
                await ws.send_message('{"type": "probe", "event_id": "probe"}')
                while True:
                    received.append(json.loads(await ws.get_message()))
                    if received[-1].get("error", {}).get("event_id") == "probe":
                        break
                await ws.aclose()
            except ConnectionClosed as closed:
                assert ended and closed.reason is not None and closed.reason.code == 1000, (closed.reason, received)
            finally:
                await ws._stream.aclose()
    kinds = {e["error"]["type"] for e in received if e["type"] == "error"}
    assert kinds <= {"invalid_request_error"}, received  # a client's mistake is never the server's error
    assert (await gateway.http.get("/healthz")).status_code == 200


SPECIFIED_HTTP = {200, 400, 401, 403, 413, 415, 422, 429, 503}
form_fields = st.dictionaries(
    st.sampled_from(["model", "language", "response_format", "stream", "timestamp_granularities[]", "prompt", "x"]),
    st.sampled_from(["whisper-1", "json", "srt", "verbose_json", "word", "true", "en", "xx-XX", ""])
    | st.text(max_size=20),
)
files = st.binary(max_size=3000) | st.sampled_from([b"RIFF", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3"])


@FUZZ
@given(fields=form_fields, data=files)
async def test_transcription_uploads(fields: dict[str, str], data: bytes) -> None:
    async with scripted_gateway("fuzz words here", {"fake.ms_per_word": "50"}) as gateway:
        with trio.fail_after(10):
            response = await gateway.http.post(
                "/v1/audio/transcriptions",
                headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                files={"file": ("upload.bin", data)},
                data=fields,
            )
        assert response.status_code in SPECIFIED_HTTP, (response.status_code, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], error
        assert (await gateway.http.get("/healthz")).status_code == 200
