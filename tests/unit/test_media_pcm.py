"""service.media.pcm: the PyAV decoding core the client and the upload endpoint share."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest

from service.media.pcm import NotMedia, PcmDecoder


def _wav(rate: int, seconds: float, channels: int = 1) -> bytes:
    """A 440 Hz tone as 16-bit PCM WAV."""
    frames = int(rate * seconds)
    samples = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames)]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) * channels for s in samples))
    return buffer.getvalue()


def _all_pcm(decoder: PcmDecoder) -> bytes:
    pcm = bytearray()
    while not decoder.ended:
        pcm += decoder.next_pcm()
    return bytes(pcm)


def test_a_stereo_44k1_wav_comes_out_as_16k_mono_s16() -> None:
    decoder = PcmDecoder(io.BytesIO(_wav(44100, 1.0, channels=2)), 16000)
    try:
        assert decoder.declared_seconds == pytest.approx(1.0, abs=0.01)
        pcm = _all_pcm(decoder)
    finally:
        decoder.close()
    assert len(pcm) % 2 == 0
    assert abs(len(pcm) // 2 - 16000) <= 32  # one second at 16 kHz, give or take the resampler's edge
    assert max(abs(s) for (s,) in struct.iter_unpack("<h", pcm)) > 4000  # the tone survived
    assert decoder.next_pcm() == b""  # past the end: nothing more


def test_pcm_at_the_files_own_rate_is_the_samples_as_written() -> None:
    data = _wav(16000, 0.5)
    decoder = PcmDecoder(io.BytesIO(data), 16000)
    try:
        pcm = _all_pcm(decoder)
    finally:
        decoder.close()
    assert pcm == data[44:]  # the canonical 44-byte header, then the samples unchanged


def test_a_file_that_is_not_audio_is_refused() -> None:
    with pytest.raises(NotMedia) as caught:
        PcmDecoder(io.BytesIO(b"this is plain text, not audio\n" * 100), 16000)
    assert caught.value.error is not None
    assert str(caught.value)  # one line, in ffmpeg's words
