"""A benchmark recognizer: one result per chunk that names the chunk it answers.

The load generator writes a tag into the first 8 bytes of every chunk (a
little-endian unsigned 64-bit integer, e.g. ``stream_no << 32 | chunk_no``). For each
chunk the recognizer returns one hypothesis whose text is ``t<tag>`` (an interim when
the stream asked for interims, a final otherwise), so the client can match every
result to the moment its chunk was sent. End of audio gives one final, ``t<last tag>
end``. It does no audio processing at all, so it is cheap and deterministic; it
accepts any encoding and ignores ``custom_configuration``.
"""

from __future__ import annotations

from fake_riva.recognizers.base import Hypothesis, StreamSettings, UnsupportedAudio

TAG_BYTES = 8
INTERIM_STABILITY = 0.5
BYTES_PER_SAMPLE = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}


def read_tag(chunk: bytes) -> int:
    """The tag at the start of a chunk (shorter chunks: what is there, zero-padded)."""
    return int.from_bytes(chunk[:TAG_BYTES], "little")


class TaggedRecognizer:
    __slots__ = ("_bytes", "_bytes_per_second", "_chunks", "_final_every", "_interim", "_last_tag")

    def __init__(self, settings: StreamSettings) -> None:
        self._interim = settings.interim_results
        try:
            self._final_every = int(settings.custom_configuration.get("fake.final_every", "0"))
        except ValueError as exc:
            raise UnsupportedAudio("fake.final_every must be an integer") from exc
        self._chunks = 0
        width = BYTES_PER_SAMPLE.get(settings.encoding, 2)
        self._bytes_per_second = settings.sample_rate_hertz * width or 32000
        self._bytes = 0
        self._last_tag = -1

    def accept(self, audio: bytes) -> list[Hypothesis]:
        if not audio:
            return []
        self._bytes += len(audio)
        self._chunks += 1
        tag = self._last_tag = read_tag(audio)
        interim = self._interim and not (self._final_every > 0 and self._chunks % self._final_every == 0)
        return [
            Hypothesis(
                text=f"t{tag}",
                is_final=not interim,
                audio_processed_s=self._bytes / self._bytes_per_second,
                stability=INTERIM_STABILITY if interim else 1.0,
                confidence=0.0 if interim else 1.0,
            )
        ]

    def finish(self) -> list[Hypothesis]:
        if self._last_tag < 0:
            return []
        return [
            Hypothesis(
                text=f"t{self._last_tag} end",
                is_final=True,
                audio_processed_s=self._bytes / self._bytes_per_second,
                stability=1.0,
                confidence=1.0,
            )
        ]
