"""The form fields of ``POST /v1/audio/transcriptions`` as OpenAI's SDK sends them (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import BadRequest
from service.realtime.config import riva_language, riva_model
from service.sessions.config import RecognitionSettings
from service.transcription.decode import RATE_HZ
from service.transcription.formats import RESPONSE_FORMATS


@dataclass(frozen=True, slots=True)
class Options:
    model: str
    language: str  # Riva's locale
    response_format: str
    stream: bool
    words: bool  # timestamp_granularities[] has "word"
    segments: bool

    def settings(self) -> RecognitionSettings:
        return RecognitionSettings(
            encoding="LINEAR_PCM",
            sample_rate_hertz=RATE_HZ,
            language_code=self.language,
            model=riva_model(self.model),
            interim_results=self.stream,  # deltas come from interims
            word_time_offsets=True,  # segment and word times
        )


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise BadRequest(f"{name} is true or false", param=name)


def parse_options(form: Any) -> Options:
    """``model``, ``language``, ``response_format``, ``stream``, ``timestamp_granularities[]``;
    ``prompt`` and ``temperature`` are accepted and ignored (Riva takes neither)."""
    model = form.get("model")
    if not model:
        raise BadRequest("model is required (any OpenAI name means Riva's default model)", param="model")
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise BadRequest(f"response_format is one of {', '.join(RESPONSE_FORMATS)}", param="response_format")
    granularities = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
    unknown = set(granularities) - {"word", "segment"}
    if unknown:
        raise BadRequest("timestamp_granularities[] holds word and/or segment", param="timestamp_granularities[]")
    if granularities and response_format != "verbose_json":
        raise BadRequest(
            "timestamp_granularities[] needs response_format=verbose_json", param="timestamp_granularities[]"
        )
    if "logprobs" in form.getlist("include[]"):
        raise BadRequest("include[]=logprobs is not supported: Riva gives no log probabilities", param="include[]")
    language = form.get("language")
    if language is not None and not (2 <= len(language) <= 16):
        raise BadRequest("language is an ISO-639-1 code such as en, or a locale such as en-US", param="language")
    return Options(
        model=model,
        language=riva_language(language),
        response_format=response_format,
        stream=_flag(form.get("stream"), "stream"),
        words="word" in granularities,
        segments=not granularities or "segment" in granularities,
    )
