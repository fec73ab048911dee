"""fake_riva.audio: G.711 against the standard tables, and resampling that neither aliases nor clicks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.signal import resample_poly

from fake_riva.audio import (
    AudioDecoder,
    StreamingResampler,
    check_audio,
    decode_alaw,
    decode_mulaw,
    decode_pcm16,
    encode_alaw,
    encode_mulaw,
)
from fake_riva.recognizers.base import UnsupportedAudio

Encoder = Callable[[npt.NDArray[np.int16]], bytes]
Decoder = Callable[[bytes], npt.NDArray[np.int16]]

# (code, linear) pairs from the ITU-T G.711 tables (Sun reference decoder values).
MULAW_KNOWN = [(0x00, -32124), (0x0F, -16764), (0x10, -15996), (0x70, -120), (0x7E, -8), (0x7F, 0),
               (0x80, 32124), (0xF0, 120), (0xFE, 8), (0xFF, 0)]  # fmt: skip
ALAW_KNOWN = [(0x00, -5504), (0x2A, -32256), (0x54, -24), (0x55, -8),
              (0x80, 5504), (0xAA, 32256), (0xD4, 24), (0xD5, 8)]  # fmt: skip


def _tone(freq_hz: float, rate_hz: int, seconds: float = 1.0, amplitude: float = 10000.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return np.rint(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def _rms(x: npt.NDArray[np.signedinteger[Any]]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _resample_chunked(x: npt.NDArray[np.int16], rate_hz: int, chunk: int) -> npt.NDArray[np.int16]:
    resampler = StreamingResampler(rate_hz)
    parts = [resampler.process(x[i : i + chunk]) for i in range(0, x.size, chunk)]
    parts.append(resampler.flush())
    return np.concatenate(parts)


# -- G.711 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "linear"), MULAW_KNOWN)
def test_mulaw_decodes_to_the_g711_table(code: int, linear: int) -> None:
    assert decode_mulaw(bytes([code])).tolist() == [linear]


@pytest.mark.parametrize(("code", "linear"), ALAW_KNOWN)
def test_alaw_decodes_to_the_g711_table(code: int, linear: int) -> None:
    assert decode_alaw(bytes([code])).tolist() == [linear]


def test_g711_codes_round_trip() -> None:
    codes = bytes(range(256))
    assert encode_alaw(decode_alaw(codes)) == codes
    mulaw = encode_mulaw(decode_mulaw(codes))
    # 0x7F is mu-law's "negative zero": it decodes to 0, which encodes as 0xFF.
    assert mulaw == codes.replace(b"\x7f", b"\xff")


def test_g711_encoders_match_known_codes() -> None:
    samples = np.array([0, -1, 1, 100, -100, 1000, 32767, -32768], dtype=np.int16)
    assert list(encode_mulaw(samples)) == [0xFF, 0x7E, 0xFF, 0xF2, 0x72, 0xCE, 0x80, 0x00]
    assert list(encode_alaw(samples)) == [0xD5, 0x55, 0xD5, 0xD3, 0x53, 0xFA, 0xAA, 0x2A]


@pytest.mark.parametrize(("encode", "decode"), [(encode_mulaw, decode_mulaw), (encode_alaw, decode_alaw)])
def test_g711_keeps_a_tone_at_telephone_quality(encode: Encoder, decode: Decoder) -> None:
    tone = _tone(440, 8000)
    restored = decode(encode(tone))
    noise = _rms(restored.astype(np.int32) - tone)
    assert 20 * np.log10(_rms(tone) / noise) > 30  # G.711 gives ~38 dB SNR


def test_pcm16_is_little_endian_signed() -> None:
    assert decode_pcm16(b"\x01\x00\xff\xff\x00\x80").tolist() == [1, -1, -32768]


# -- resampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", [8000, 11025, 22050, 44100, 48000])
def test_a_1khz_tone_stays_at_1khz(rate_hz: int) -> None:
    out = _resample_chunked(_tone(1000, rate_hz), rate_hz, rate_hz // 10)
    assert out.size == 16000
    steady = out[1000:-1000].astype(np.float64)  # skip the filter's edge transients
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    peak_hz = np.argmax(spectrum) * 16000 / steady.size
    assert abs(peak_hz - 1000) < 5
    assert _rms(out[1000:-1000]) == pytest.approx(10000 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize(("rate_hz", "freq_hz"), [(48000, 9500), (48000, 12000), (48000, 20000), (44100, 10000),
                                                  (44100, 15000), (32000, 11000)])  # fmt: skip
def test_content_above_8khz_is_removed_not_aliased(rate_hz: int, freq_hz: int) -> None:
    """Plain decimation would fold these tones back into the speech band at full level."""
    tone = _tone(freq_hz, rate_hz)
    out = _resample_chunked(tone, rate_hz, rate_hz // 10)
    assert _rms(out[1000:-1000]) < _rms(tone) * 0.01  # at least 40 dB down


@pytest.mark.parametrize("rate_hz", [8000, 11025, 12345, 22050, 32000, 44100, 48000])
def test_chunked_resampling_equals_one_shot(rate_hz: int) -> None:
    rng = np.random.default_rng(rate_hz)
    noise = rng.normal(0, 3000, rate_hz).astype(np.int16)
    g = np.gcd(rate_hz, 16000)
    one_shot = np.rint(resample_poly(noise.astype(np.float64), 16000 // g, rate_hz // g))
    resampler = StreamingResampler(rate_hz)
    parts, i = [], 0
    while i < noise.size:
        n = int(rng.integers(1, rate_hz // 8))  # ragged chunks, some of a single sample
        parts.append(resampler.process(noise[i : i + n]))
        i += n
    parts.append(resampler.flush())
    chunked = np.concatenate(parts)
    assert chunked.size == one_shot.size
    assert np.abs(chunked - one_shot).max() <= 1


def test_16khz_passes_through_untouched() -> None:
    x = _tone(300, 16000, 0.1)
    resampler = StreamingResampler(16000)
    assert np.array_equal(resampler.process(x), x)
    assert resampler.flush().size == 0


# -- AudioDecoder ----------------------------------------------------------------------------


def test_pcm_chunks_split_mid_sample_decode_like_one_chunk() -> None:
    audio = _tone(700, 44100, 0.2).tobytes()
    whole = AudioDecoder("LINEAR_PCM", 44100)
    expected = np.concatenate([whole.decode(audio), whole.flush()])
    split = AudioDecoder("LINEAR_PCM", 44100)
    parts = [split.decode(audio[i : i + 441]) for i in range(0, len(audio), 441)]  # odd sizes
    parts.append(split.flush())
    assert np.array_equal(np.concatenate(parts), expected)
    assert split.seconds_received == pytest.approx(0.2)


@pytest.mark.parametrize(("encoding", "encode"), [("MULAW", encode_mulaw), ("ALAW", encode_alaw)])
def test_g711_streams_decode_and_resample(encoding: str, encode: Encoder) -> None:
    tone = _tone(1000, 8000, 0.5)
    decoder = AudioDecoder(encoding, 8000)
    data = encode(tone)
    out = np.concatenate([decoder.decode(data[:1234]), decoder.decode(data[1234:]), decoder.flush()])
    assert out.size == 8000
    assert decoder.seconds_received == pytest.approx(0.5)
    assert _rms(out[500:-500]) == pytest.approx(_rms(tone), rel=0.05)


@pytest.mark.parametrize("encoding", ["FLAC", "OGGOPUS", "AMR", "ENCODING_UNSPECIFIED", ""])
def test_undecodable_encodings_are_refused_by_name(encoding: str) -> None:
    with pytest.raises(UnsupportedAudio, match=f"encoding {encoding} "):
        AudioDecoder(encoding, 16000)


@pytest.mark.parametrize("rate_hz", [0, 7999, 48001, 96000])
def test_out_of_range_sample_rates_are_refused(rate_hz: int) -> None:
    with pytest.raises(UnsupportedAudio, match=f"sample_rate_hertz={rate_hz} "):
        check_audio("LINEAR_PCM", rate_hz)
