"""The RIFF/WAVE header NVIDIA's client sends inside its first chunk in file mode (pure)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from service.realtime.messages import EventError

WAVE_FORMATS = {1: "LINEAR_PCM", 6: "ALAW", 7: "MULAW", 0xFFFE: "LINEAR_PCM"}
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class WavHeader:
    encoding: str
    sample_rate_hertz: int
    data_offset: int  # where the samples begin


def parse_wav_header(data: bytes) -> WavHeader | None:
    """The header, or None if ``data`` ends before the ``data`` chunk; ``EventError`` if not a usable WAV."""
    if len(data) < 12:
        return None
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EventError(
            "invalid_audio", 'input_audio_format "none" expects a WAV file (RIFF/WAVE header)', param="audio"
        )
    offset = 12
    fmt: tuple[str, int] | None = None
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"data":
            if fmt is None:
                raise EventError("invalid_audio", "malformed WAV: data before fmt", param="audio")
            return WavHeader(fmt[0], fmt[1], body)
        if chunk_id == b"fmt ":
            if body + 16 > len(data):
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            encoding = WAVE_FORMATS.get(tag)
            if encoding is None or channels != 1 or (encoding == "LINEAR_PCM" and bits != 16):
                raise EventError("invalid_audio", "WAV files must be mono 16-bit PCM, mu-law or A-law", param="audio")
            fmt = (encoding, rate)
        offset = body + size + (size & 1)
    if len(data) > MAX_HEADER_BYTES:
        raise EventError("invalid_audio", "no WAV data chunk in the first 64 KiB", param="audio")
    return None
