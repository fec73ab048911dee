"""What a realtime connection asked for, dialect-neutral, and its Reserve ``RecognitionSettings``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from service.realtime.messages import EventError
from service.sessions.config import RecognitionSettings

# OpenAI's clients name languages in ISO-639-1; Riva wants a locale. Others pass through as given.
RIVA_LOCALES = {
    "en": "en-US", "es": "es-US", "de": "de-DE", "fr": "fr-FR", "it": "it-IT", "pt": "pt-BR", "ja": "ja-JP",
    "ko": "ko-KR", "zh": "zh-CN", "ru": "ru-RU", "hi": "hi-IN", "ar": "ar-AR", "nl": "nl-NL",
}  # fmt: skip
OPENAI_MODEL_PREFIXES = ("whisper", "gpt-")  # OpenAI's model names mean "Riva's default model"
VAD_SILENCE_MS = 500  # OpenAI's server_vad defaults, shown in session objects
VAD_PREFIX_MS = 300
VAD_THRESHOLD = 0.5


def riva_language(language: str | None) -> str:
    if not language:
        return "en-US"
    return RIVA_LOCALES.get(language.lower(), language)


def openai_language(locale: str) -> str:
    return locale.split("-")[0]


def riva_model(model: str | None) -> str:
    if not model or model.startswith(OPENAI_MODEL_PREFIXES):
        return ""
    return model


@dataclass(slots=True)
class TranscriptionConfig:
    """``turn_detection`` None: the client commits turns (commit = Reserve's finalize);
    otherwise each Riva final, at Riva's endpointing, is a turn."""

    encoding: str = "LINEAR_PCM"
    sample_rate_hertz: int = 24000
    language: str = "en-US"
    model: str = ""  # the client's name for it, echoed back
    prompt: str = ""
    turn_detection: dict[str, Any] | None = field(
        default_factory=lambda: {
            "type": "server_vad",
            "threshold": VAD_THRESHOLD,
            "prefix_padding_ms": VAD_PREFIX_MS,
            "silence_duration_ms": VAD_SILENCE_MS,
        }
    )
    endpointing: dict[str, int | float] = field(default_factory=dict)  # Riva's EndpointingConfig fields
    keywords: list[str] = field(default_factory=list)
    boosted_words: list[dict[str, Any]] = field(default_factory=list)
    automatic_punctuation: bool = True
    verbatim_transcripts: bool = True
    profanity_filter: bool = False
    word_time_offsets: bool = False
    max_alternatives: int = 1
    speaker_diarization: dict[str, Any] | None = None
    custom_configuration: dict[str, str] = field(default_factory=dict)
    file_mode: bool = False  # NVIDIA "none": a WAV header leads the first chunk and sets the format

    def copy(self) -> TranscriptionConfig:
        return dataclasses.replace(
            self,
            turn_detection=dict(self.turn_detection) if self.turn_detection is not None else None,
            endpointing=dict(self.endpointing),
            keywords=list(self.keywords),
            boosted_words=list(self.boosted_words),
            custom_configuration=dict(self.custom_configuration),
        )

    @property
    def manual_turns(self) -> bool:
        return self.turn_detection is None

    def to_settings(self) -> RecognitionSettings:
        """Reserve's settings; a value Reserve refuses is an ``EventError`` naming it."""
        boosted = list(self.boosted_words)
        if self.keywords:
            boosted.append({"phrases": list(self.keywords), "boost": 10.0})
        wanted: dict[str, Any] = {
            "encoding": self.encoding,
            "sample_rate_hertz": self.sample_rate_hertz,
            "language_code": self.language,
            "model": riva_model(self.model),
            "interim_results": True,
            "automatic_punctuation": self.automatic_punctuation,
            "verbatim_transcripts": self.verbatim_transcripts,
            "profanity_filter": self.profanity_filter,
            "word_time_offsets": self.word_time_offsets,
            "max_alternatives": self.max_alternatives,
            "boosted_words": boosted,
            "custom_configuration": self.custom_configuration,
        }
        if self.endpointing:
            wanted["endpointing"] = self.endpointing
        if self.speaker_diarization is not None:
            wanted["speaker_diarization"] = self.speaker_diarization
        try:
            return RecognitionSettings.model_validate(wanted)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            param = ".".join(str(p) for p in first["loc"])
            raise EventError("invalid_value", f"invalid session setting {param}: {first['msg']}", param=param) from None


def vad_endpointing(turn_detection: dict[str, Any]) -> dict[str, int | float]:
    """``server_vad`` onto Riva's endpointing: silence before a turn ends, and speech before one
    starts; the energy ``threshold`` has no Riva equivalent and only echoes back."""
    endpointing: dict[str, int | float] = {}
    silence = turn_detection.get("silence_duration_ms")
    if isinstance(silence, int) and not isinstance(silence, bool) and silence != VAD_SILENCE_MS:
        endpointing["stop_history"] = silence
        endpointing["stop_history_eou"] = silence
    padding = turn_detection.get("prefix_padding_ms")
    if isinstance(padding, int) and not isinstance(padding, bool) and padding != VAD_PREFIX_MS:
        endpointing["start_history"] = padding
    return endpointing
