"""The final transcript a session produced: its results with their times and words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    confidence: float = 0.0


@dataclass(frozen=True)
class Result:
    """One final result: its text and where it lies in the audio (seconds from the start)."""

    text: str
    start_s: float
    end_s: float
    confidence: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass
class Transcript:
    """What ``transcribe_file`` returns: the finals in order, with their timings."""

    results: list[Result] = field(default_factory=list)
    session_id: str = ""
    end_reason: str = ""
    audio_seconds: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(result.text for result in self.results if result.text)

    def add_final(self, data: dict[str, Any]) -> Result | None:
        """Record a ``transcript`` event with ``is_final``; its start is its first word's, or
        where the previous final ended."""
        text = str(data.get("text") or "").strip()
        if not text:
            return None
        words = tuple(_word(w) for w in data.get("words") or () if isinstance(w, dict))
        previous_end = self.results[-1].end_s if self.results else 0.0
        processed = _number(data.get("audio_processed"), previous_end)
        start = words[0].start_s if words else previous_end
        end = max(words[-1].end_s if words else processed, start)
        result = Result(text, start, end, _number(data.get("confidence"), 0.0), words)
        self.results.append(result)
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "text": self.text,
            "end_reason": self.end_reason,
            "audio_seconds": round(self.audio_seconds, 3),
            "results": [
                {
                    "text": r.text,
                    "start_s": round(r.start_s, 3),
                    "end_s": round(r.end_s, 3),
                    "confidence": r.confidence,
                    "words": [_word_json(w) for w in r.words],
                }
                for r in self.results
            ],
        }


def _word_json(word: Word) -> dict[str, Any]:
    return {"word": word.text, "start_s": round(word.start_s, 3), "end_s": round(word.end_s, 3),
            "confidence": word.confidence}  # fmt: skip


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _word(data: dict[str, Any]) -> Word:
    start = _number(data.get("start_ms"), 0.0) / 1000
    return Word(
        str(data.get("word") or ""), start, _number(data.get("end_ms"), start * 1000) / 1000,
        _number(data.get("confidence"), 0.0),
    )  # fmt: skip
