"""NVIDIA's ``riva.client.realtime.RealtimeClientASR``, unchanged, against the gateway: it mints a
session at ``POST /v1/realtime/transcription_sessions``, offers the secret as a subprotocol, and
streams microphone-style PCM chunks or a WAV file (``input_audio_format: "none"``)."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import httpx
import numpy as np

from tests.compat.conftest import in_thread, scripted_gateway
from tests.compat.nvidia_client import client_args, file_chunks, transcribe
from tests.harness import TEST_API_KEY

PCM16_CHUNK = 3200  # 100 ms at 16 kHz
SCRIPT = "hello there|general kenobi"  # 200 ms of audio per word


def wav_file(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return out.getvalue()


async def test_microphone_chunks() -> None:
    chunks = [bytes(PCM16_CHUNK)] * 9
    async with scripted_gateway(SCRIPT) as gateway:
        result = await in_thread(lambda: transcribe(client_args(gateway, mic=True), chunks))
    assert result["final"] == "hello there general kenobi"  # the last result holds the whole transcript
    completed = result["completed"]
    assert [(c["transcript"], c["is_last_result"]) for c in completed] == [
        ("hello there", False),
        ("general kenobi", False),
        ("hello there general kenobi", True),
    ]
    words = [(w["word"], w["start_time"], w["end_time"]) for w in completed[1]["words_info"]["words"]]
    assert words == [("general", 400, 600), ("kenobi", 600, 800)]
    assert result["deltas"] == ["hello", " there", "general", " kenobi"]  # each item's deltas append to its text


async def test_file_mode_reads_the_wav_header(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_file(bytes(16000 * 2 * 9 // 10)))  # 0.9 s at 16 kHz
    async with scripted_gateway(SCRIPT) as gateway:
        # the client's own file reader: the WAV header rides in the first chunk
        result = await in_thread(lambda: transcribe(client_args(gateway, mic=False), file_chunks(path)))
    assert result["final"] == "hello there general kenobi"


async def test_force_eou_ends_an_utterance_and_the_stream_goes_on() -> None:
    audio = np.concatenate([np.full(3200, word, dtype="<i2") for word in (1, 2, 3, 4)]).tobytes()  # 200 ms each
    chunks = [audio[i : i + PCM16_CHUNK] for i in range(0, len(audio), PCM16_CHUNK)]
    force = [i == 3 for i in range(len(chunks))]  # after 400 ms: two words heard
    content_driven = {"fake.words_in_audio": "true"}  # every sample names its word, whatever the stream
    async with scripted_gateway("one two three four", content_driven) as gateway:
        result = await in_thread(lambda: transcribe(client_args(gateway, mic=True), chunks, force))
    assert [c["transcript"] for c in result["completed"]] == ["one two", "three four", "one two three four"]


async def test_minting_needs_an_api_key() -> None:
    async with scripted_gateway(SCRIPT) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as http:
        missing = await http.post("/v1/realtime/transcription_sessions", json={})
        minted = await http.post(
            "/v1/realtime/transcription_sessions", json={}, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
        )
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    session = minted.json()
    assert session["object"] == "realtime.transcription_session"
    assert session["input_audio_params"] == {"sample_rate_hz": 16000, "num_channels": 1}
    assert session["client_secret"]["value"].startswith("rsv1.")
    assert minted.headers["Cache-Control"] == "no-store"
