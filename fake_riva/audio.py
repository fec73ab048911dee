"""Turn a stream's raw audio bytes into 16 kHz int16 samples for a recognizer.

Riva accepts LINEAR_PCM, MULAW and ALAW at 8..48 kHz; speech models want 16 kHz.
Audio arrives in ~100 ms chunks, so both decoding and resampling are streaming:
a chunk may end mid-sample, and the resampler carries its filter state across
chunks so that chunked output equals one-shot output (no clicks at boundaries).
G.711 is done with numpy lookup tables because ``audioop`` left Python in 3.13.
No gRPC here: this module is pure and unit-testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from math import gcd
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from fake_riva.models import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from fake_riva.recognizers.base import UnsupportedAudio

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

TARGET_RATE_HZ = 16000
SUPPORTED_ENCODINGS = ("LINEAR_PCM", "MULAW", "ALAW")
BYTES_PER_SAMPLE: Mapping[str, int] = MappingProxyType({"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1})
_EMPTY_I16: Int16Array = np.zeros(0, dtype=np.int16)
_A = TypeVar("_A", bound=np.ndarray[Any, Any])


# -- G.711 (ITU-T G.711, the classic Sun reference algorithm, vectorised) -----------


def _build_mulaw_decode() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    table = np.where(u & 0x80, 0x84 - t, t - 0x84)
    return _frozen(table.astype(np.int16))


def _build_alaw_decode() -> Int16Array:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    table = np.where(a & 0x80, t, -t)
    return _frozen(table.astype(np.int16))


def _segment(values: npt.NDArray[np.int32], ends: tuple[int, ...]) -> npt.NDArray[np.int32]:
    """G.711 segment number: how many segment end points the value exceeds (8 = clip)."""
    return np.searchsorted(np.asarray(ends), values, side="left").astype(np.int32)


def _build_mulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = _segment(mag, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    uval = (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, uval) ^ mask
    return _frozen(_by_uint16(code.astype(np.uint8)))


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(mag, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    aval = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, aval) ^ mask
    return _frozen(_by_uint16(code.astype(np.uint8)))


def _by_uint16(table_from_minus_32768: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Reindex so that ``table[samples.view(np.uint16)]`` looks up a signed sample."""
    return np.roll(table_from_minus_32768, -32768)


def _frozen(array: _A) -> _A:
    array.flags.writeable = False  # shared by every stream's thread: read-only by construction
    return array


_MULAW_DECODE = _build_mulaw_decode()
_ALAW_DECODE = _build_alaw_decode()
_MULAW_ENCODE = _build_mulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()


def decode_pcm16(data: bytes) -> Int16Array:
    """LINEAR_PCM is 16-bit little-endian signed; ``data`` must be whole samples."""
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def decode_mulaw(data: bytes) -> Int16Array:
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> Int16Array:
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def encode_mulaw(samples: Int16Array) -> bytes:
    """The inverse of :func:`decode_mulaw`, for tests and for clients faking a phone line."""
    return _MULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def encode_alaw(samples: Int16Array) -> bytes:
    return _ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def check_audio(encoding: str, sample_rate_hertz: int) -> None:
    """Fail early, with a message a client can act on, for audio we cannot decode."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedAudio(
            f"audio encoding {encoding} is not supported by fake_riva; use one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hertz <= MAX_SAMPLE_RATE_HZ:
        raise UnsupportedAudio(
            f"sample_rate_hertz={sample_rate_hertz} is not supported; use {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}"
        )


# -- resampling -----------------------------------------------------------------------


@lru_cache(maxsize=32)
def _polyphase_filter(up: int, down: int) -> tuple[FloatArray, int]:
    """The anti-aliasing FIR ``scipy.signal.resample_poly`` would use, split into phases.

    Returns ``(bank, half_len)`` where ``bank[p, j] = h[p + j * up]``. Cached because
    designing it for awkward ratios (e.g. 44.1k -> 16k) costs more than a stream start
    should; the arrays are read-only, so sharing them across threads is safe.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    # firwin(2 * half_len + 1, 1 / max_rate, window=("kaiser", 5.0)), written out in numpy
    # so that importing this module does not cost scipy.signal's ~0.4 s.
    n = np.arange(-half_len, half_len + 1, dtype=np.float64)
    h = np.sinc(n / max_rate) * np.kaiser(n.size, 5.0)
    h *= up / h.sum()
    taps = -(-len(h) // up)
    padded = np.zeros(taps * up)
    padded[: len(h)] = h
    bank = np.ascontiguousarray(padded.reshape(taps, up).T)
    return _frozen(bank), half_len


class StreamingResampler:
    """Polyphase rational resampler whose chunked output equals ``resample_poly``'s.

    Output sample ``m`` sits at ``m * down`` on the upsampled grid; the filter is
    centred (zero delay, as in ``resample_poly``), so each output waits for roughly
    ``half_len / up`` future input samples (< 2 ms). Only the few input samples the
    filter still needs are kept between chunks.
    """

    def __init__(self, rate_in_hz: int, rate_out_hz: int = TARGET_RATE_HZ) -> None:
        if rate_in_hz <= 0 or rate_out_hz <= 0:
            raise UnsupportedAudio(f"cannot resample {rate_in_hz} Hz to {rate_out_hz} Hz")
        g = gcd(rate_in_hz, rate_out_hz)
        self.up = rate_out_hz // g
        self.down = rate_in_hz // g
        self._passthrough = self.up == self.down
        if self._passthrough:
            return
        self._bank, self._half_len = _polyphase_filter(self.up, self.down)
        self._taps = self._bank.shape[1]
        self._buffer: FloatArray = np.zeros(0)
        self._buffer_start = 0  # absolute index of self._buffer[0]
        self._received = 0  # input samples so far
        self._emitted = 0  # output samples so far

    def process(self, samples: Int16Array) -> Int16Array:
        """Resample one chunk; returns what can be computed without future input."""
        if self._passthrough:
            return np.asarray(samples, dtype=np.int16)
        self._append(np.asarray(samples, dtype=np.float64))
        # Output m is complete once the newest input it needs, i_max(m), has arrived.
        end = (self._received * self.up - 1 - self._half_len) // self.down + 1
        return self._emit(max(end, self._emitted))

    def flush(self) -> Int16Array:
        """End of stream: emit the tail, treating input past the end as silence."""
        if self._passthrough:
            return _EMPTY_I16
        total = -(-self._received * self.up // self.down)  # resample_poly's output length
        return self._emit(total)

    def _append(self, chunk: FloatArray) -> None:
        self._buffer = np.concatenate((self._buffer, chunk)) if self._buffer.size else chunk
        self._received += chunk.size

    def _emit(self, end: int) -> Int16Array:
        start = self._emitted
        if end <= start:
            return _EMPTY_I16
        m = np.arange(start, end, dtype=np.int64)
        pos = m * self.down + self._half_len
        newest = pos // self.up  # i_max: the newest input sample each output uses
        phase = pos - newest * self.up
        idx = newest[:, None] - np.arange(self._taps, dtype=np.int64)[None, :] - self._buffer_start
        # Before the stream's start and past its end (only at flush) the input is silence.
        padded = np.concatenate(([0.0], self._buffer, [0.0]))
        x = padded[np.clip(idx + 1, 0, padded.size - 1)]
        y: FloatArray = np.einsum("mk,mk->m", x, self._bank[phase])
        self._emitted = end
        self._trim()
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)

    def _trim(self) -> None:
        """Drop input that no future output can reach."""
        next_newest = (self._emitted * self.down + self._half_len) // self.up
        keep_from = next_newest - self._taps + 1
        drop = min(max(keep_from - self._buffer_start, 0), self._buffer.size)
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop


class AudioDecoder:
    """One stream's bytes -> 16 kHz int16 samples, tolerant of chunks split mid-sample."""

    def __init__(self, encoding: str, sample_rate_hertz: int, rate_out_hz: int = TARGET_RATE_HZ) -> None:
        check_audio(encoding, sample_rate_hertz)
        self.encoding = encoding
        self.sample_rate_hertz = sample_rate_hertz
        self._resampler = StreamingResampler(sample_rate_hertz, rate_out_hz)
        self._pending = b""  # an odd trailing byte of 16-bit PCM, kept for the next chunk
        self.bytes_received = 0

    @property
    def seconds_received(self) -> float:
        """Audio duration received so far, at the client's rate (what Riva reports)."""
        return self.bytes_received / BYTES_PER_SAMPLE[self.encoding] / self.sample_rate_hertz

    def decode(self, data: bytes) -> Int16Array:
        self.bytes_received += len(data)
        if self.encoding == "LINEAR_PCM":
            data = self._pending + data
            whole = len(data) - len(data) % 2
            self._pending = data[whole:]
            samples = decode_pcm16(data[:whole])
        elif self.encoding == "MULAW":
            samples = decode_mulaw(data)
        else:
            samples = decode_alaw(data)
        return self._resampler.process(samples)

    def flush(self) -> Int16Array:
        """End of stream; a dangling half sample is dropped, as Riva would."""
        self._pending = b""
        return self._resampler.flush()
