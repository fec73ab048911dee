"""The client reads common audio files (made here with Debian's ffmpeg from a test WAV) and
transcribes them through a real gateway with the bundled pocketsphinx recognizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import jiwer
import pytest
import trio

from service.client import Options, open_audio_path, transcribe_audio, transcribe_file
from service.settings import Settings
from tests.harness import TEST_API_KEY, Gateway, running_gateway

DATA = Path(__file__).resolve().parents[1] / "data"
SOURCE = "find_keys.wav"
REFERENCE = json.loads((DATA / "fixtures.json").read_text())[SOURCE]
MAX_WER = 0.2
# name -> ffmpeg output options: what users have lying around
FORMATS = {
    "stereo-44k-24bit.wav": ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s24le"],
    "speech.flac": ["-ar", "44100", "-ac", "2", "-c:a", "flac"],
    "speech.mp3": ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "64k"],
    "speech.ogg": ["-ar", "48000", "-ac", "2", "-c:a", "libopus", "-b:a", "32k"],
    "speech.m4a": ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "64k"],
}


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for name, options in FORMATS.items():
        files[name] = folder / name
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(DATA / SOURCE), *options, str(files[name])],
            check=True,
        )
    return files


@pytest.fixture
async def speech_gateway() -> AsyncIterator[Gateway]:
    async with running_gateway(Settings(riva_uri="", embedded_recognizer="pocketsphinx")) as gateway:
        yield gateway


def words_of(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c.isspace()).split())


async def test_every_common_format_is_transcribed(speech_gateway: Gateway, audio_files: dict[str, Path]) -> None:
    options = Options(url=speech_gateway.base_url, api_key=TEST_API_KEY, rate="fast", interim=False)
    for name, path in audio_files.items():
        audio = open_audio_path(str(path))
        try:
            transcript = await transcribe_audio(audio, options)
        finally:
            audio.close()
        assert jiwer.wer(REFERENCE, words_of(transcript.text)) <= MAX_WER, (name, transcript.text)
        assert transcript.end_reason == "finished"
        assert 2.9 < transcript.audio_seconds < 3.3, (name, transcript.audio_seconds)
        assert transcript.results and transcript.results[-1].end_s <= transcript.audio_seconds + 0.1


async def test_transcribe_file_is_the_one_call_for_user_code(
    speech_gateway: Gateway, audio_files: dict[str, Path]
) -> None:
    call = partial(transcribe_file, audio_files["speech.flac"], base_url=speech_gateway.base_url, api_key=TEST_API_KEY)
    transcript = await trio.to_thread.run_sync(call)  # it runs its own trio loop, as a user's script would
    assert jiwer.wer(REFERENCE, words_of(transcript.text)) <= MAX_WER, transcript.text
    assert transcript.results[0].words and transcript.results[0].start_s < transcript.results[-1].end_s


async def run_reserve(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """The ``reserve`` console script, as installed beside this Python."""
    env = {**os.environ, "RESERVE_API_KEY": TEST_API_KEY}
    return await trio.run_process(
        [str(Path(sys.executable).parent / "reserve"), *args], stdin=stdin, capture_stdout=True,
        capture_stderr=True, check=False, env=env,
    )  # fmt: skip


async def test_reserve_transcribe_writes_subtitles(
    speech_gateway: Gateway, audio_files: dict[str, Path], tmp_path: Path
) -> None:
    srt = tmp_path / "speech.srt"
    mp3 = audio_files["speech.mp3"]
    result = await run_reserve(
        "transcribe", str(mp3), "--url", speech_gateway.base_url, "--rate", "fast", "--out", str(srt)
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    blocks = srt.read_text().strip().split("\n\n")
    first = blocks[0].splitlines()
    assert first[0] == "1"
    start, arrow, end = first[1].split(" ")
    assert arrow == "-->" and start.startswith("00:00:0") and "," in start and start < end
    text = " ".join(" ".join(block.splitlines()[2:]) for block in blocks)
    assert jiwer.wer(REFERENCE, words_of(text)) <= MAX_WER, text
    assert words_of(text) == words_of(result.stdout.decode()), "the file holds the finals that were printed"


async def test_audio_on_stdin_is_decoded_too(speech_gateway: Gateway, audio_files: dict[str, Path]) -> None:
    ogg = audio_files["speech.ogg"].read_bytes()
    result = await run_reserve(
        "transcribe", "-", "--url", speech_gateway.base_url, "--rate", "fast", "--format", "vtt", stdin=ogg
    )
    assert result.returncode == 0, result.stderr
    assert jiwer.wer(REFERENCE, words_of(result.stdout.decode())) <= MAX_WER
