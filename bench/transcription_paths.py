"""``python -m bench.transcription_paths``: a file through ``POST /v1/audio/transcriptions`` (decoded
and streamed through a Reserve session) beside the same audio sent to Riva's offline ``Recognize``
in one request, against fake_riva's pocketsphinx recognizer in its own process. Prints wall time,
the words each got, and how much decoded audio each holds at once."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import riva.client

from bench import procs

DATA = procs.ROOT / "tests" / "data"


def long_wav(seconds: float) -> tuple[bytes, bytes]:
    """The speech fixtures, each followed by 0.5 s of silence, repeated to ``seconds``: (pcm, wav)."""
    pieces = []
    for name in json.loads((DATA / "fixtures.json").read_text()):
        with wave.open(str(DATA / name)) as w:
            if w.getframerate() == 16000:
                pieces.append(w.readframes(w.getnframes()) + bytes(16000))
    pcm = b""
    while len(pcm) < seconds * 32000:
        pcm += b"".join(pieces)
    pcm = pcm[: int(seconds * 32000)]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return pcm, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    pcm, wav = long_wav(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        port = procs.free_port()
        argv = [sys.executable, "-m", "fake_riva", "--port", str(port), "--recognizer", "pocketsphinx"]
        child = procs._spawn("fake_riva", argv, {**os.environ, "PYTHONPATH": str(procs.ROOT)}, log_dir)
        try:
            procs._wait_for(child, "fake_riva ready on", 60)
            target = f"127.0.0.1:{port}"
            service = riva.client.ASRService(riva.client.Auth(uri=target))
            config = riva.client.RecognitionConfig(
                encoding=riva.client.AudioEncoding.LINEAR_PCM, sample_rate_hertz=16000, language_code="en-US"
            )
            t0 = time.monotonic()
            offline = service.offline_recognize(pcm, config)
            offline_s = time.monotonic() - t0
            offline_words = sum(len(r.alternatives[0].transcript.split()) for r in offline.results)
            with procs.gateway(log_dir, target, max_sessions=10) as (_, gw_port):
                t0 = time.monotonic()
                response = httpx.post(
                    f"http://127.0.0.1:{gw_port}/v1/audio/transcriptions",
                    headers={"Authorization": f"Bearer {procs.API_KEY}"},
                    files={"file": ("speech.wav", wav)},
                    data={"model": "whisper-1"},
                    timeout=600,
                )
                streaming_s = time.monotonic() - t0
            response.raise_for_status()
            streaming_words = len(response.json()["text"].split())
        finally:
            child.stop()
    print(f"audio: {args.seconds:g} s, {len(pcm) / 1e6:.2f} MB of 16 kHz PCM")
    held = f"holds all {len(pcm) / 1e6:.2f} MB"
    print(f"Recognize (offline, one request): {offline_s:6.2f} s, {offline_words} words, {held}")
    print(f"POST /v1/audio/transcriptions:    {streaming_s:6.2f} s, {streaming_words} words, holds 0.2 s chunks")


if __name__ == "__main__":
    main()
