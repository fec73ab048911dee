"""Riva's streaming results as plain values: converted in the worker thread, published in trio."""

from __future__ import annotations

from dataclasses import dataclass

from riva.client.proto import riva_asr_pb2 as asr


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start_ms: int
    end_ms: int
    confidence: float
    speaker: int


@dataclass(frozen=True, slots=True)
class Result:
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
        if not r.alternatives:
            continue
        best = r.alternatives[0]
        results.append(
            Result(
                text=best.transcript.strip(),
                is_final=r.is_final,
                stability=r.stability,
                confidence=best.confidence,
                audio_processed_s=r.audio_processed,
                channel=r.channel_tag,
                words=tuple(
                    WordTiming(w.word, w.start_time, w.end_time, w.confidence, w.speaker_tag) for w in best.words
                ),
                alternatives=tuple(a.transcript.strip() for a in r.alternatives[1:]),
            )
        )
    return results
