"""Reading audio: any common file decoded by PyAV (ffmpeg's libraries, through
``service.media.pcm``), mixed down to mono and resampled to the session's rate as 16-bit PCM,
streamed a chunk at a time; or raw audio as is.

Decoding everything to LINEAR_PCM keeps byte offsets meaningful, which resending after a
dropped socket relies on (the server counts the audio it has in bytes).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from service.client.errors import UnsupportedAudioError
from service.media.pcm import DecodeFailed, NoAudioStream, NotMedia, PcmDecoder

RAW_ENCODINGS = ("LINEAR_PCM", "MULAW", "ALAW")
BYTES_PER_SAMPLE = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}
DEFAULT_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioFormat:
    """What the session is told the audio is (``encoding``, ``sample_rate_hertz``)."""

    encoding: str = "LINEAR_PCM"
    sample_rate: int = DEFAULT_SAMPLE_RATE

    @property
    def bytes_per_sample(self) -> int:
        return BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_second(self) -> int:
        return self.bytes_per_sample * self.sample_rate


def chunk_bytes(fmt: AudioFormat, chunk_ms: int) -> int:
    """Bytes in one WebSocket frame of ``chunk_ms`` audio, in whole samples (3200 for 100 ms of 16 kHz PCM)."""
    return max(1, fmt.sample_rate * chunk_ms // 1000) * fmt.bytes_per_sample


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in frames of ``size`` bytes; the last one may be shorter."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class AudioInput(Protocol):
    """Audio ready to send: its format, and blocking reads (the caller runs them in a thread)."""

    format: AudioFormat
    name: str
    blocking: bool  # reads may wait on a pipe or terminal: the caller runs them in a thread
    warnings: list[str]  # what the user should hear about (e.g. a damaged end), one line each

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes in whole samples; b"" at the end."""
        ...

    def close(self) -> None: ...


@dataclass
class RawAudio:
    """Raw samples in ``format``, read as they are (``--raw``)."""

    format: AudioFormat
    stream: Reader
    name: str = "-"
    closer: Callable[[], None] | None = None
    blocking: bool = False
    warnings: list[str] = field(default_factory=list)
    _pending: bytes = b""

    def read(self, size: int) -> bytes:
        align = self.format.bytes_per_sample
        data = self._pending
        while len(data) < size:
            more = self.stream.read(size - len(data))
            if not more:
                break
            data += more
        cut = len(data) - len(data) % align
        self._pending = data[cut:] if len(data) >= size else b""  # a trailing half sample is dropped
        return data[:cut]

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None

    @classmethod
    def from_bytes(cls, data: bytes, fmt: AudioFormat | None = None, name: str = "<bytes>") -> RawAudio:
        """Raw audio in memory (for tests and callers that already hold the audio)."""
        return cls(fmt or AudioFormat(), io.BytesIO(data), name)


@dataclass
class DecodedAudio:
    """A file PyAV can decode, as 16-bit mono PCM at ``format.sample_rate``, a chunk at a time."""

    format: AudioFormat
    name: str
    pcm: PcmDecoder
    closer: Callable[[], None] | None = None
    blocking: bool = False
    warnings: list[str] = field(default_factory=list)
    _decoded: int = 0  # bytes of PCM produced so far
    _pending: bytearray = field(default_factory=bytearray)

    def _decode_more(self) -> None:
        try:
            pcm = self.pcm.next_pcm()
        except DecodeFailed as exc:
            problem = str(exc)
            if not self._decoded:
                hint = " (an M4A/MP4 file cannot be read from a pipe: give its path)" if self.name == "stdin" else ""
                raise UnsupportedAudioError(f"cannot decode {self.name}: {problem}{hint}") from None
            # a truncated or damaged end: send what was decoded, and say where it stopped
            seconds = self._decoded / self.format.bytes_per_second
            self.warnings.append(f"{self.name}: decoding stopped after {seconds:.1f} s of audio: {problem}")
            pcm = self.pcm.flush()
        self._decoded += len(pcm)
        self._pending += pcm

    def read(self, size: int) -> bytes:
        while len(self._pending) < size and not self.pcm.ended:
            self._decode_more()
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def close(self) -> None:
        self.pcm.close()
        if self.closer is not None:
            self.closer()
            self.closer = None


def decode(
    file: str | BinaryIO,
    name: str,
    sample_rate: int,
    closer: Callable[[], None] | None = None,
    *,
    blocking: bool = False,
) -> DecodedAudio:
    """Open ``file`` with PyAV and check it holds audio, decoding its first samples."""
    try:
        pcm = PcmDecoder(file, sample_rate)
    except NotMedia as exc:
        raise UnsupportedAudioError(f"cannot read {name}: not an audio file ffmpeg can decode ({exc})") from None
    except NoAudioStream:
        raise UnsupportedAudioError(
            f"cannot read {name}: not an audio file (ffmpeg finds no audio stream in it)"
        ) from None
    fmt = AudioFormat("LINEAR_PCM", sample_rate)
    audio = DecodedAudio(fmt, name, pcm, closer, blocking)
    try:
        audio._decode_more()  # a file that only looks like audio fails here, before any session
    except BaseException:
        audio.close()
        raise
    if audio.pcm.ended and not audio._pending:
        audio.close()
        raise UnsupportedAudioError(f"cannot read {name}: it holds no audio samples")
    return audio


def open_audio_path(
    path: str, *, sample_rate: int | None = None, raw: bool = False, encoding: str | None = None
) -> AudioInput:
    """``path`` (or ``-`` for stdin) decoded to 16-bit mono PCM at ``sample_rate`` (16 kHz by
    default); with ``raw``, its bytes as they are, in ``encoding`` at ``sample_rate``."""
    rate = sample_rate or DEFAULT_SAMPLE_RATE
    if path == "-":
        stdin = sys.stdin.buffer
        if raw:
            return RawAudio(AudioFormat(encoding or "LINEAR_PCM", rate), stdin, "stdin", blocking=True)
        return decode(stdin, "stdin", rate, blocking=True)
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise UnsupportedAudioError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        regular = file.is_file()
        if regular and file.stat().st_size == 0:
            raise UnsupportedAudioError(f"{path} is empty")
        if raw:
            return RawAudio(AudioFormat(encoding or "LINEAR_PCM", rate), handle, path, handle.close, not regular)
        return decode(handle, path, rate, handle.close, blocking=not regular)
    except BaseException:
        handle.close()
        raise
