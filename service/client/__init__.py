"""Reserve's client: transcribe an audio file through a Reserve gateway, from code or the shell.

    from service.client import transcribe_file
    transcript = transcribe_file("meeting.mp3", base_url="http://127.0.0.1:8000", api_key="...")
    print(transcript.text, transcript.results[0].start_s)

    reserve transcribe meeting.mp3 --format srt --out meeting.srt

It speaks only Reserve's public HTTP API (``POST /v1/sessions``, the audio WebSocket and the
Server-Sent Events stream) and imports nothing from the server, so it works against a remote one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio

from service.client.api import DEFAULT_URL, Options
from service.client.audio import AudioFormat, AudioInput, RawAudio, open_audio_path
from service.client.errors import ClientError, UnsupportedAudioError
from service.client.render import render_transcript
from service.client.session import transcribe
from service.client.transcript import Result, Transcript, Word

__all__ = [
    "AudioFormat",
    "AudioInput",
    "ClientError",
    "Options",
    "RawAudio",
    "Result",
    "Transcript",
    "UnsupportedAudioError",
    "Word",
    "open_audio_path",
    "render_transcript",
    "transcribe",
    "transcribe_audio",
    "transcribe_file",
]


async def transcribe_audio(audio: AudioInput, options: Options) -> Transcript:
    """The async core (under trio): stream ``audio`` with ``options``, return its final transcript."""
    return (await transcribe(options, audio)).transcript


def transcribe_file(
    path: str | Path,
    *,
    base_url: str = DEFAULT_URL,
    api_key: str | None = None,
    sample_rate: int = 16000,
    language: str = "en-US",
    realtime: bool = False,
    settings: dict[str, Any] | None = None,
) -> Transcript:
    """Transcribe any audio file ffmpeg decodes (WAV, FLAC, MP3, OGG/Opus, M4A...) and return the
    final text with its timings. ``settings`` adds fields to the session's recognition settings.
    Raises ClientError (with a one-line message) when the file or the session fails."""
    options = Options(
        url=base_url,
        api_key=api_key,
        rate="realtime" if realtime else "fast",
        language=language,
        interim=False,
        settings=dict(settings or {}),
    )
    audio = open_audio_path(str(path), sample_rate=sample_rate)
    try:
        return trio.run(partial(transcribe_audio, audio, options))
    finally:
        audio.close()
