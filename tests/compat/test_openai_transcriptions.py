"""``client.audio.transcriptions.create`` from OpenAI's SDK, unchanged, against the gateway."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.compat.audio_files import FORMATS, encode, tone
from tests.compat.conftest import in_thread, scripted_gateway
from tests.harness import TEST_API_KEY, Gateway

SCRIPT = "hello there|general kenobi"  # 200 ms of audio per word
TEXT = "hello there general kenobi"


def client_for(gateway: Gateway, key: str = TEST_API_KEY) -> OpenAI:
    return OpenAI(api_key=key, base_url=f"{gateway.base_url}/v1", max_retries=0)


def create(gateway: Gateway, key: str = TEST_API_KEY, **options: Any) -> Any:
    """One call with a client of its own, closed after it (as an application would)."""
    with client_for(gateway, key) as client:
        result = client.audio.transcriptions.create(**options)
        return list(result) if options.get("stream") else result


@pytest.mark.parametrize("container", list(FORMATS))
async def test_every_container_in_json(container: str) -> None:
    audio = encode(container, tone(0.9))
    async with scripted_gateway(SCRIPT) as gateway:
        result = await in_thread(
            lambda: create(gateway, model="gpt-4o-transcribe", file=(f"speech.{container}", audio), language="en")
        )
    assert result.text == TEXT
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(0.9, abs=0.03)


async def test_text_srt_vtt_and_verbose_json() -> None:
    audio = encode("wav", tone(0.9))
    async with scripted_gateway(SCRIPT) as gateway:

        def as_format(**options: Any) -> Any:
            return create(gateway, model="whisper-1", file=("a.wav", audio), **options)

        text = await in_thread(lambda: as_format(response_format="text"))
        srt = await in_thread(lambda: as_format(response_format="srt"))
        vtt = await in_thread(lambda: as_format(response_format="vtt"))
        granularities = ["word", "segment"]
        verbose = await in_thread(
            lambda: as_format(response_format="verbose_json", timestamp_granularities=granularities)
        )
        plain = await in_thread(lambda: as_format(response_format="verbose_json"))
    assert text == TEXT + "\n"
    assert srt == (
        "1\n00:00:00,000 --> 00:00:00,400\nhello there\n\n2\n00:00:00,400 --> 00:00:00,800\ngeneral kenobi\n\n"
    )
    assert vtt == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.400\nhello there\n\n00:00:00.400 --> 00:00:00.800\ngeneral kenobi\n"
    )
    assert verbose.text == TEXT and verbose.language == "english"
    assert verbose.duration == pytest.approx(0.9)
    assert [(s.text, s.start, s.end) for s in verbose.segments] == [
        ("hello there", 0.0, 0.4),
        ("general kenobi", 0.4, 0.8),
    ]
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        ("hello", 0.0, 0.2), ("there", 0.2, 0.4), ("general", 0.4, 0.6), ("kenobi", 0.6, 0.8),
    ]  # fmt: skip
    assert plain.words is None and len(plain.segments) == 2


async def test_stream_sends_deltas_then_done() -> None:
    audio = encode("flac", tone(0.9))
    async with scripted_gateway(SCRIPT) as gateway:
        events = await in_thread(
            lambda: create(gateway, model="gpt-4o-transcribe", file=("a.flac", audio), stream=True)
        )
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2 and "".join(deltas) == TEXT
    assert events[-1].type == "transcript.text.done" and events[-1].text == TEXT


async def test_errors_in_openai_shape() -> None:
    async with scripted_gateway(SCRIPT, max_upload_bytes=100_000, max_upload_audio_s=2) as gateway:
        with pytest.raises(openai.BadRequestError) as bad_file:
            await in_thread(lambda: create(gateway, model="whisper-1", file=("a.mp3", b"not audio")))
        with pytest.raises(openai.PermissionDeniedError) as wrong_key:
            await in_thread(lambda: create(gateway, "wrong", model="whisper-1", file=("a.wav", b"x")))
        response = await gateway.http.post(
            "/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            files={"file": ("a.wav", encode("wav", tone(0.2)))},
            data={"model": "whisper-1", "response_format": "yaml"},
        )
        too_big = await gateway.http.post(
            "/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            files={"file": ("a.wav", bytes(gateway.settings.max_upload_bytes + 1))},
            data={"model": "whisper-1"},
        )
        json_route = await gateway.http.post("/v1/sessions", content=b"{" + b" " * 70_000 + b"}")
        with pytest.raises(openai.BadRequestError) as too_long:  # 3 s of audio in a few kilobytes
            await in_thread(lambda: create(gateway, model="whisper-1", file=("long.mp3", encode("mp3", tone(3.0)))))
    assert bad_file.value.code == "invalid_file" and bad_file.value.param == "file"
    assert wrong_key.value.status_code == 403
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "response_format is one of json, text, srt, vtt, verbose_json",
            "type": "invalid_request_error",
            "param": "response_format",
            "code": "bad_request",
        }
    }
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"
    assert json_route.status_code == 413  # the JSON routes keep RESERVE_MAX_BODY_BYTES
    assert too_long.value.code == "audio_too_long"
