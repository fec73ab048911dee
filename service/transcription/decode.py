"""Uploaded audio in any container ffmpeg reads (WAV, FLAC, MP3, OGG/Opus, ...) as 16 kHz mono
16-bit PCM, decoded packet by packet by ``service.media.pcm``: only a chunk of decoded audio
exists at a time, however long the file. What is the endpoint's own lives here: the duration
bound, the copy a streamed response decodes, and OpenAI-shaped errors.

``Decoder.read`` blocks (ffmpeg works in C); callers run it in a worker thread.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import IO

from service.errors import BadRequest
from service.media.pcm import DecodeFailed, NotMedia, PcmDecoder, PcmError

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
            self._pcm = PcmDecoder(file, RATE_HZ)
        except PcmError as exc:
            if copy:
                file.close()
            if isinstance(exc, NotMedia):
                raise UnsupportedFile(
                    f"the file is not audio this gateway can decode: {exc.error}", param="file"
                ) from None
            raise UnsupportedFile("the file has no audio stream", param="file") from None
        declared = self._pcm.declared_seconds
        if declared is not None and declared > max_seconds:
            self.close()
            raise self._too_long()

    def read(self) -> bytes:
        """The next chunk of PCM (``b""`` at the end); ``UnsupportedFile`` if the file is corrupt."""
        try:
            while len(self._buffer) < self._chunk and not self._pcm.ended:
                self._buffer += self._pcm.next_pcm()
        except DecodeFailed as exc:
            raise UnsupportedFile(f"the audio could not be decoded: {exc.error}", param="file") from None
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
        self._pcm.close()
        if self._file is not None:
            self._file.close()
