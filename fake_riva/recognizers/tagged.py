"""A benchmark recognizer: one result per chunk that names the chunk it answers.

The load generator writes a tag into the first 8 bytes of every chunk (a
little-endian unsigned 64-bit integer, e.g. ``stream_no << 32 | chunk_no``). For each
chunk the recognizer returns one hypothesis whose text is ``t<tag>`` (an interim when
the stream asked for interims, a final otherwise), so the client can match every
result to the moment its chunk was sent. End of audio gives one final, ``t<last tag>
end``. It does no audio processing at all, so it is cheap and deterministic; it
accepts any encoding and ignores ``custom_configuration``.

A gateway may merge frames that queued up into one request (the audio is the same). A
tag followed by ``FRAME_MARK`` and the frame's length (little-endian u32) lets the
recognizer find each frame in a merged request and still answer every one of them.
"""

from __future__ import annotations

from fake_riva.recognizers.base import Hypothesis, StreamSettings, UnsupportedAudio

TAG_BYTES = 8
FRAME_MARK = b"tagN"  # after the tag: this frame's length follows, so merged frames can be told apart
FRAME_HEAD_BYTES = TAG_BYTES + len(FRAME_MARK) + 4
INTERIM_STABILITY = 0.5
BYTES_PER_SAMPLE = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}


def read_tag(chunk: bytes) -> int:
    """The tag at the start of a chunk (shorter chunks: what is there, zero-padded)."""
    return int.from_bytes(chunk[:TAG_BYTES], "little")


def frame_head(tag: int, frame_bytes: int) -> bytes:
    """The start of a tagged frame of ``frame_bytes`` bytes (at least ``FRAME_HEAD_BYTES``)."""
    return tag.to_bytes(TAG_BYTES, "little") + FRAME_MARK + frame_bytes.to_bytes(4, "little")


def read_tags(audio: bytes) -> list[int]:
    """The tags of the frames in one request: one, or several where frames carry their length."""
    tags = []
    at = 0
    while at < len(audio):
        tags.append(read_tag(audio[at:]))
        if audio[at + TAG_BYTES : at + TAG_BYTES + len(FRAME_MARK)] != FRAME_MARK:
            break
        length = int.from_bytes(audio[at + TAG_BYTES + len(FRAME_MARK) : at + FRAME_HEAD_BYTES], "little")
        if length < FRAME_HEAD_BYTES:
            break
        at += length
    return tags


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
        hypotheses = []
        for tag in read_tags(audio):
            self._chunks += 1
            self._last_tag = tag
            interim = self._interim and not (self._final_every > 0 and self._chunks % self._final_every == 0)
            hypotheses.append(
                Hypothesis(
                    text=f"t{tag}",
                    is_final=not interim,
                    audio_processed_s=self._bytes / self._bytes_per_second,
                    stability=INTERIM_STABILITY if interim else 1.0,
                    confidence=0.0 if interim else 1.0,
                )
            )
        return hypotheses

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
