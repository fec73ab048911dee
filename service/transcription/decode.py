"""Uploaded audio in any container ffmpeg reads (WAV, FLAC, MP3, OGG/Opus, ...) as 16 kHz mono
16-bit PCM, decoded packet by packet with PyAV and resampled with ``av.AudioResampler``: only a
chunk of decoded audio exists at a time, however long the file.

``Decoder.read`` blocks (ffmpeg works in C); callers run it in a worker thread.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import IO

import av
import av.error

from service.errors import BadRequest

RATE_HZ = 16000
BYTES_PER_SECOND = RATE_HZ * 2
CHUNK_BYTES = BYTES_PER_SECOND // 5  # 200 ms per read
SPOOL_MEMORY_BYTES = 1024 * 1024  # a copied upload beyond this goes to a temporary file


class UnsupportedFile(BadRequest):
    """The upload is not audio ffmpeg can decode."""

    code = "invalid_file"


class AudioTooLong(BadRequest):
    """More audio than ``RESERVE_MAX_UPLOAD_AUDIO_S`` (a small compressed file can hold hours)."""

    code = "audio_too_long"


class Decoder:
    def __init__(
        self, file: IO[bytes], *, max_seconds: float, chunk_bytes: int = CHUNK_BYTES, copy: bool = False
    ) -> None:
        """``copy``: decode a copy of ``file`` (the request closes its uploads when the handler returns,
        and a streamed response decodes after that)."""
        if copy:
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed by close()
            shutil.copyfileobj(file, spool)
            spool.seek(0)
            file = spool
        self._file = file if copy else None
        self._chunk = chunk_bytes
        self._max_seconds = max_seconds
        self._buffer = bytearray()
        self.decoded_bytes = 0
        try:
            self._container = av.open(file, mode="r")
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            if copy:
                file.close()
            raise UnsupportedFile(f"the file is not audio this gateway can decode: {exc}", param="file") from None
        streams = self._container.streams.audio
        if not streams:
            self.close()
            raise UnsupportedFile("the file has no audio stream", param="file")
        declared = self._container.duration  # in av.time_base units, when the container says
        if declared is not None and declared / av.time_base > max_seconds:
            self.close()
            raise self._too_long()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
        self._frames: Iterator[av.AudioFrame] = self._container.decode(streams[0])
        self._finished = False

    def read(self) -> bytes:
        """The next chunk of PCM (``b""`` at the end); ``UnsupportedFile`` if the file is corrupt."""
        try:
            while len(self._buffer) < self._chunk and not self._finished:
                frame = next(self._frames, None)
                resampled = self._resampler.resample(frame)  # None flushes the resampler
                for out in resampled:
                    self._buffer += bytes(out.planes[0])[: out.samples * 2]
                self._finished = frame is None
        except av.error.FFmpegError as exc:
            raise UnsupportedFile(f"the audio could not be decoded: {exc}", param="file") from None
        chunk = bytes(self._buffer[: self._chunk])
        del self._buffer[: self._chunk]
        self.decoded_bytes += len(chunk)
        if self.seconds > self._max_seconds:
            raise self._too_long()
        return chunk

    def _too_long(self) -> AudioTooLong:
        return AudioTooLong(f"the audio is longer than {self._max_seconds:g} s; send a shorter file", param="file")

    @property
    def seconds(self) -> float:
        return self.decoded_bytes / BYTES_PER_SECOND

    def close(self) -> None:
        self._container.close()
        if self._file is not None:
            self._file.close()
