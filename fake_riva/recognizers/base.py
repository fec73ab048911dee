"""The interface every fake_riva recognizer implements.

A recognizer turns one stream's audio into hypotheses. The servicer owns the gRPC
details (config checks, proto conversion, faults); a recognizer only sees bytes.
One recognizer instance serves exactly one stream, from one thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class UnsupportedAudio(ValueError):
    """The stream's audio settings cannot be decoded; becomes INVALID_ARGUMENT."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What a recognizer needs to know from the stream's RecognitionConfig."""

    encoding: str  # riva AudioEncoding name, e.g. "LINEAR_PCM"
    sample_rate_hertz: int
    language_code: str
    interim_results: bool
    word_time_offsets: bool
    automatic_punctuation: bool
    custom_configuration: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_ms: int
    end_ms: int
    confidence: float = 1.0


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One StreamingRecognitionResult, before proto conversion."""

    text: str
    is_final: bool
    audio_processed_s: float
    stability: float = 0.0
    confidence: float = 0.0
    words: tuple[Word, ...] = ()


class Recognizer(Protocol):
    def accept(self, audio: bytes) -> list[Hypothesis]:
        """Feed one chunk; return the results it produced (interims, endpoint finals)."""

    def finish(self) -> list[Hypothesis]:
        """End of audio: return the final results for whatever is pending."""


class RecognizerFactory(Protocol):
    def __call__(self, settings: StreamSettings) -> Recognizer:
        """Make a recognizer for one stream; raise UnsupportedAudio when it cannot."""
