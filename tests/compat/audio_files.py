"""Audio files for upload tests, made here with PyAV (ffmpeg's encoders): WAV, FLAC, MP3, OGG/Opus."""

from __future__ import annotations

import io

import av
import numpy as np

FORMATS = {  # container: (codec, sample rate)
    "wav": ("pcm_s16le", 16000),
    "flac": ("flac", 44100),
    "mp3": ("libmp3lame", 44100),
    "ogg": ("libopus", 48000),
}


def encode(container: str, samples: np.ndarray, rate: int = 16000) -> bytes:
    """Mono int16 ``samples`` at ``rate``, encoded as ``container`` at that codec's usual rate."""
    codec, codec_rate = FORMATS[container]
    if codec_rate != rate:
        duration = len(samples) / rate
        positions = np.linspace(0, len(samples) - 1, round(duration * codec_rate))
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.int16)
    out = io.BytesIO()
    with av.open(out, "w", format=container) as file:
        stream = file.add_stream(codec, rate=codec_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.rate = codec_rate
        for packet in stream.encode(frame):
            file.mux(packet)
        for packet in stream.encode(None):
            file.mux(packet)
    return out.getvalue()


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16)
