"""Real speech through the compatibility endpoints against the bundled pocketsphinx recognizer:
uploads in four containers, and a GA realtime socket at OpenAI's 24 kHz, within a word error rate."""

from __future__ import annotations

import base64
import json
import re
import wave
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
from openai import OpenAI

from service.settings import Settings
from tests.compat.audio_files import encode
from tests.compat.conftest import in_thread
from tests.compat.nvidia_client import client_args, file_chunks, transcribe
from tests.harness import TEST_API_KEY, Gateway, running_gateway

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCES: dict[str, str] = json.loads((DATA / "fixtures.json").read_text())
MAX_WER = 0.15
UPLOADS = {"call_back.wav": "mp3", "find_keys.wav": "ogg", "thank_you.wav": "flac", "children_park.wav": "wav"}


def normalise(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def samples(name: str) -> np.ndarray:
    with wave.open(str(DATA / name)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


@pytest.fixture
async def bundled() -> Any:
    settings = Settings(riva_uri="", embedded_recognizer="pocketsphinx", finish_timeout_s=15)
    async with running_gateway(settings) as gateway:
        yield gateway


def client_for(gateway: Gateway) -> OpenAI:
    return OpenAI(api_key=TEST_API_KEY, base_url=f"{gateway.base_url}/v1", max_retries=0)


async def test_uploads_in_four_containers(bundled: Gateway) -> None:
    files = {name: encode(container, samples(name)) for name, container in UPLOADS.items()}

    def transcribe_all() -> dict[str, str]:
        with client_for(bundled) as client:
            return {
                name: client.audio.transcriptions.create(
                    model="whisper-1", file=(f"speech.{UPLOADS[name]}", data), language="en"
                ).text
                for name, data in files.items()
            }

    texts = await in_thread(transcribe_all)
    for name, text in texts.items():
        assert jiwer.wer(REFERENCES[name], normalise(text)) <= MAX_WER, (name, UPLOADS[name], text)


async def test_realtime_at_24khz(bundled: Gateway) -> None:
    speech = samples("children_park.wav")
    positions = np.linspace(0, len(speech) - 1, len(speech) * 3 // 2)  # 16 kHz -> OpenAI's 24 kHz
    pcm = np.interp(positions, np.arange(len(speech)), speech).astype("<i2").tobytes()

    def transcribe() -> str:
        with client_for(bundled).realtime.connect(extra_query={"intent": "transcription"}) as connection:
            connection.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
            for start in range(0, len(pcm), 4800):
                connection.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + 4800]).decode())
            connection.input_audio_buffer.commit()
            for event in connection:
                if event.type == "conversation.item.input_audio_transcription.completed":
                    return event.transcript
        raise AssertionError("the connection closed before the transcript")

    text = await in_thread(transcribe)
    assert jiwer.wer(REFERENCES["children_park.wav"], normalise(text)) <= MAX_WER, text


async def test_nvidia_client_in_file_mode(bundled: Gateway) -> None:
    chunks = file_chunks(DATA / "find_keys.wav")  # the client's own file reader, header first
    result = await in_thread(lambda: transcribe(client_args(bundled, mic=False), chunks))
    assert jiwer.wer(REFERENCES["find_keys.wav"], normalise(result["final"])) <= MAX_WER, result["final"]
