"""Any audio file ffmpeg reads, decoded with PyAV to 16-bit mono PCM at a given rate, one decoded
frame at a time (resampled with ``av.AudioResampler``): only a frame of audio exists at a time,
however long the file. The client (``service.client.audio``) and the upload endpoint
(``service.transcription.decode``) both read through it and word its errors their own way.

Reads block (ffmpeg works in C); async callers run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import av
import av.error

OPEN_ERRORS = (av.error.FFmpegError, ValueError, OSError)  # av.open on something that is not media
DECODE_ERRORS = (av.error.FFmpegError, ValueError)  # a damaged or truncated stream


class PcmError(Exception):
    """``error``: what PyAV raised (``None`` when the file opened but holds no audio stream)."""

    def __init__(self, error: BaseException | None = None) -> None:
        super().__init__(describe(error) if error is not None else "no audio stream")
        self.error = error


class NotMedia(PcmError):
    """ffmpeg cannot open the file."""


class NoAudioStream(PcmError):
    """The file opens but has no audio stream."""


class DecodeFailed(PcmError):
    """The audio stream is damaged; ``PcmDecoder.flush`` still gives what the resampler holds."""


def describe(exc: BaseException) -> str:
    """``exc`` in one line: ffmpeg's own words when it has them."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


class PcmDecoder:
    """The first audio stream of ``file`` as s16 mono PCM at ``rate`` Hz, one decoded frame per
    ``next_pcm``; ``ended`` once the stream is done (or failed and was flushed)."""

    def __init__(self, file: str | IO[bytes], rate: int) -> None:
        try:
            self.container: Any = av.open(file, mode="r")
        except OPEN_ERRORS as exc:
            raise NotMedia(exc) from None
        streams = self.container.streams.audio
        if not streams:
            self.container.close()
            raise NoAudioStream()
        self.rate = rate
        self.ended = False
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._frames: Iterator[Any] = self.container.decode(streams[0])

    @property
    def declared_seconds(self) -> float | None:
        """The duration the container declares, if it does (it may be wrong)."""
        duration = self.container.duration  # in av.time_base units
        return None if duration is None else float(duration / av.time_base)

    def next_pcm(self) -> bytes:
        """PCM from the next decoded frame (``b""`` while the resampler gathers); at the end of the
        stream, what the resampler still holds, with ``ended`` set. ``DecodeFailed`` if the stream is
        damaged (then ``flush``, or give up)."""
        try:
            frame = next(self._frames, None)
            pcm = self._resample(frame)  # None flushes the resampler
        except DECODE_ERRORS as exc:
            raise DecodeFailed(exc) from None
        self.ended = frame is None
        return pcm

    def flush(self) -> bytes:
        """End the stream here (after ``DecodeFailed``): what the resampler still holds."""
        self.ended = True
        return self._resample(None)

    def _resample(self, frame: Any) -> bytes:
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._resampler.resample(frame))

    def close(self) -> None:
        self.container.close()
