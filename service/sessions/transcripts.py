"""A Riva result as the ``transcript`` event's JSON: pure, so every owner of a session writes
the same shape, with times counted from the session's first audio."""

from __future__ import annotations

from typing import Any

from service.riva.results import Result


def transcript_data(result: Result, *, seq: int, offset_s: float, word_time_offsets: bool) -> dict[str, Any]:
    """``offset_s``: where the Riva stream that produced ``result`` began in the session's audio."""
    offset_ms = round(offset_s * 1000)
    data: dict[str, Any] = {
        "seq": seq,
        "is_final": result.is_final,
        "text": result.text,
        "stability": round(result.stability, 4),
        "confidence": round(result.confidence, 4),
        "audio_processed": round(offset_s + result.audio_processed_s, 3),
        "channel": result.channel,
    }
    if word_time_offsets:
        data["words"] = [
            {
                "word": w.word,
                "start_ms": w.start_ms + offset_ms,
                "end_ms": w.end_ms + offset_ms,
                "confidence": round(w.confidence, 4),
                **({"speaker": w.speaker} if w.speaker else {}),
            }
            for w in result.words
        ]
    if result.alternatives:
        data["alternatives"] = list(result.alternatives)
    return data
