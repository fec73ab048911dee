"""``python -m service.client`` against a real gateway, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import jiwer
import pytest
import trio

from service.settings import Settings
from tests.harness import TEST_API_KEY, Gateway, running_gateway

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCES = json.loads((DATA / "fixtures.json").read_text())


async def run_client(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "RESERVE_API_KEY"}
    env["RESERVE_API_KEY"] = TEST_API_KEY  # the key running_gateway configures, as a user would export it
    return await trio.run_process(
        [sys.executable, "-m", "service.client", *args], stdin=stdin, capture_stdout=True, capture_stderr=True,
        check=False, env=env,
    )  # fmt: skip


@pytest.fixture
async def speech_gateway():  # type: ignore[no-untyped-def]
    async with running_gateway(Settings(riva_uri="", embedded_recognizer="pocketsphinx")) as gateway:
        yield gateway


async def test_streams_a_wav_file_and_prints_json_events(speech_gateway: Gateway) -> None:
    result = await run_client(str(DATA / "find_keys.wav"), "--url", speech_gateway.base_url, "--rate", "fast", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert events[-1] == {"event": "end", "id": events[-1]["id"], "data": {"reason": "finished"}}
    finals = " ".join(e["data"]["text"] for e in events if e["event"] == "transcript" and e["data"]["is_final"])
    assert jiwer.wer(REFERENCES["find_keys.wav"], finals.lower().strip(".")) <= 0.15, finals


async def test_plain_output_prints_finals_as_lines(speech_gateway: Gateway) -> None:
    result = await run_client(str(DATA / "thank_you.wav"), "--url", speech_gateway.base_url, "--rate", "fast")
    assert result.returncode == 0, result.stderr
    assert "thank you very much" in result.stdout.decode().lower()


async def test_raw_audio_from_stdin(speech_gateway: Gateway) -> None:
    with wave.open(str(DATA / "call_back.wav")) as wav:
        pcm = wav.readframes(wav.getnframes())
    result = await run_client(
        "-", "--url", speech_gateway.base_url, "--rate", "fast", "--raw", "--sample-rate", "16000", stdin=pcm
    )
    assert result.returncode == 0, result.stderr
    assert "call me back" in result.stdout.decode().lower()


async def test_a_missing_server_is_one_clear_line() -> None:
    result = await run_client(str(DATA / "find_keys.wav"), "--url", "http://127.0.0.1:9")
    assert result.returncode != 0
    error = result.stderr.decode().strip()
    assert "cannot reach Reserve at http://127.0.0.1:9" in error
    assert "Traceback" not in error and len(error.splitlines()) == 1


async def test_a_file_that_is_not_audio_is_refused_clearly(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes: not audio at all.\n" * 20)
    result = await run_client(str(notes), "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    expected = f"reserve: cannot read {notes}: not an audio file (ffmpeg finds no audio stream in it)\n"
    assert result.stderr.decode() == expected
    assert result.stdout == b""


async def test_a_server_error_is_reported_with_its_message(speech_gateway: Gateway) -> None:
    result = await run_client(str(DATA / "find_keys.wav"), "--url", speech_gateway.base_url, "--language", "xx-XX")
    assert result.returncode == 1
    error = result.stderr.decode()
    assert "language_code=xx-XX" in error or "invalid_config" in error
    assert "Traceback" not in error
