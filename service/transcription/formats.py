"""OpenAI's transcription response formats from Riva's finals (pure functions).

A segment is one Riva final (an utterance, ended by Riva's endpointing); its times come from
its words when Riva gave them, else from where the previous final ended to where it ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
LANGUAGE_NAMES = {
    "en": "english", "es": "spanish", "de": "german", "fr": "french", "it": "italian", "pt": "portuguese",
    "ja": "japanese", "ko": "korean", "zh": "chinese", "ru": "russian", "hi": "hindi", "ar": "arabic", "nl": "dutch",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    start: float
    end: float
    confidence: float
    words: tuple[Word, ...] = ()


@dataclass(slots=True)
class Transcript:
    """The finals of one file, in order, and how long the audio was."""

    segments: list[Segment] = field(default_factory=list)
    duration_s: float = 0.0
    language: str = "en-US"
    _last_end: float = 0.0

    def add_final(self, data: dict[str, Any]) -> Segment | None:
        """A ``transcript`` event with ``is_final``; None for a final with no words."""
        end = float(data.get("audio_processed", self._last_end))
        words = tuple(Word(w["word"], w["start_ms"] / 1000, w["end_ms"] / 1000) for w in data.get("words", []))
        text = str(data.get("text", "")).strip()
        start = self._last_end
        self._last_end = end
        if not text:
            return None
        if words:
            start, end = words[0].start, words[-1].end
        segment = Segment(text, round(start, 3), round(end, 3), float(data.get("confidence", 0.0)), words)
        self.segments.append(segment)
        return segment

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(blocks) + ("\n" if blocks else "")


def vtt(transcript: Transcript) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in transcript.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(transcript.duration_s * 1000) / 1000}


def json_body(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text, "usage": usage(transcript)}


def verbose_json(transcript: Transcript, *, words: bool, segments: bool = True) -> dict[str, Any]:
    locale = transcript.language.split("-")[0].lower()
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get(locale, locale),
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
        "usage": usage(transcript),
    }
    if segments:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": round(math.log(s.confidence), 4) if s.confidence > 0 else 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(transcript.segments)
        ]
    if words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for s in transcript.segments for w in s.words]
    return body
