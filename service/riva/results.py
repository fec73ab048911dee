"""Riva's streaming results as plain values: converted on the Riva side, published in trio.

Named tuples rather than frozen dataclasses: a result is built for every response on the
thread that reads Riva, and a frozen dataclass's ``__init__`` (one ``object.__setattr__``
per field) cost three times as much (docs/benchmark.md).
"""

from __future__ import annotations

from typing import NamedTuple

from riva.client.proto import riva_asr_pb2 as asr


class WordTiming(NamedTuple):
    word: str
    start_ms: int
    end_ms: int
    confidence: float
    speaker: int


class Result(NamedTuple):
    text: str
    is_final: bool
    stability: float
    confidence: float
    audio_processed_s: float
    channel: int
    words: tuple[WordTiming, ...]
    alternatives: tuple[str, ...]  # further alternatives' text, when more than one was asked for


def from_response(response: asr.StreamingRecognizeResponse) -> list[Result]:
    results = []
    for r in response.results:
        alternatives = r.alternatives
        if not alternatives:
            continue
        best = alternatives[0]
        words = best.words
        results.append(
            Result(
                best.transcript.strip(),
                r.is_final,
                r.stability,
                best.confidence,
                r.audio_processed,
                r.channel_tag,
                tuple([WordTiming(w.word, w.start_time, w.end_time, w.confidence, w.speaker_tag) for w in words])
                if words
                else (),
                tuple([a.transcript.strip() for a in alternatives[1:]]) if len(alternatives) > 1 else (),
            )
        )
    return results
