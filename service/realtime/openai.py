"""OpenAI's realtime transcription dialects: GA (``session.update`` with ``type: transcription``)
and beta (``OpenAI-Beta: realtime=v1``, ``transcription_session.update`` with flat fields)."""

from __future__ import annotations

from typing import Any

from service.realtime.config import TranscriptionConfig, openai_language, riva_language
from service.realtime.dialect import apply_turn_detection, invalid, optional_str, unsupported
from service.realtime.messages import new_id, section
from service.realtime.turns import Event, Style

PCM_RATE_HZ = 24000  # OpenAI's pcm16 / audio/pcm
G711_RATE_HZ = 8000
GA_FORMATS = {"audio/pcm": "LINEAR_PCM", "audio/pcmu": "MULAW", "audio/pcma": "ALAW"}
BETA_FORMATS = {
    "pcm16": ("LINEAR_PCM", PCM_RATE_HZ),
    "g711_ulaw": ("MULAW", G711_RATE_HZ),
    "g711_alaw": ("ALAW", G711_RATE_HZ),
}


def _transcription(
    config: TranscriptionConfig, payload: dict[str, Any] | None, param: str, event_id: str | None
) -> None:
    if payload is None:
        return
    model = optional_str(payload, "model", f"{param}.model", event_id)
    if model is not None:
        config.model = model
    language = optional_str(payload, "language", f"{param}.language", event_id)
    languages = payload.get("languages")
    if language is None and isinstance(languages, list) and languages and isinstance(languages[0], str):
        language = languages[0]  # Riva recognises one language per stream
    if language is not None:
        config.language = riva_language(language)
    prompt = optional_str(payload, "prompt", f"{param}.prompt", event_id)
    if prompt is not None:
        config.prompt = prompt  # kept and echoed; Riva takes no free-text prompt
    keywords = payload.get("keywords")
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
            raise invalid(f"{param}.keywords", "a list of words or phrases", event_id)
        config.keywords = list(keywords)  # Riva's word boosting


def _refuse_extras(payload: dict[str, Any], noise_field: str, prefix: str, event_id: str | None) -> None:
    if payload.get(noise_field) is not None:
        raise unsupported(f"{prefix}{noise_field}", "Riva has no input noise reduction; send null", event_id)


def _refuse_include(session: dict[str, Any], event_id: str | None) -> None:
    if session.get("include"):
        raise unsupported("session.include", "Riva gives no log probabilities", event_id)


def _transcription_object(config: TranscriptionConfig) -> dict[str, Any]:
    return {"model": config.model, "language": openai_language(config.language), "prompt": config.prompt}


class OpenAIGA:
    name = "openai"
    style: Style = "ga"
    update_type = "session.update"

    def default_config(self) -> TranscriptionConfig:
        return TranscriptionConfig()

    def greeting(self, config: TranscriptionConfig, session_id: str) -> Event:
        return {
            "type": "session.created",
            "event_id": new_id("event"),
            "session": self.session_object(config, session_id),
        }

    def updated(self, config: TranscriptionConfig, session_id: str) -> Event:
        return {
            "type": "session.updated",
            "event_id": new_id("event"),
            "session": self.session_object(config, session_id),
        }

    def apply_update(self, config: TranscriptionConfig, session: dict[str, Any], event_id: str | None) -> None:
        kind = session.get("type", "transcription")
        if kind != "transcription":
            raise unsupported("session.type", f"{kind!r}: this gateway serves transcription sessions only", event_id)
        _refuse_include(session, event_id)
        audio = section(session, "audio", param="session.audio", event_id=event_id) or {}
        given = section(audio, "input", param="session.audio.input", event_id=event_id) or {}
        _refuse_extras(given, "noise_reduction", "session.audio.input.", event_id)
        fmt = section(given, "format", param="session.audio.input.format", event_id=event_id)
        if fmt is not None:
            encoding = GA_FORMATS.get(fmt.get("type", "audio/pcm"))
            if encoding is None:
                raise invalid("session.audio.input.format.type", "audio/pcm, audio/pcmu or audio/pcma", event_id)
            config.encoding = encoding
            if encoding == "LINEAR_PCM":
                rate = fmt.get("rate", PCM_RATE_HZ)
                if not isinstance(rate, int) or isinstance(rate, bool):
                    raise invalid("session.audio.input.format.rate", "an integer sample rate", event_id)
                config.sample_rate_hertz = rate  # 24000 as OpenAI; other PCM rates are Reserve's extension
            else:
                config.sample_rate_hertz = G711_RATE_HZ
        transcription = section(given, "transcription", param="session.audio.input.transcription", event_id=event_id)
        _transcription(config, transcription, "session.audio.input.transcription", event_id)
        if "turn_detection" in given:
            apply_turn_detection(config, given["turn_detection"], "session.audio.input.turn_detection", event_id)

    def session_object(self, config: TranscriptionConfig, session_id: str) -> dict[str, Any]:
        fmt: dict[str, Any] = {"type": {v: k for k, v in GA_FORMATS.items()}[config.encoding]}
        if config.encoding == "LINEAR_PCM":
            fmt["rate"] = config.sample_rate_hertz
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": 0,
            "include": [],
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": _transcription_object(config),
                    "turn_detection": config.turn_detection,
                    "noise_reduction": None,
                }
            },
        }


class OpenAIBeta:
    name = "openai-beta"
    style: Style = "beta"
    update_type = "transcription_session.update"

    def default_config(self) -> TranscriptionConfig:
        return TranscriptionConfig()

    def greeting(self, config: TranscriptionConfig, session_id: str) -> Event:
        session = self.session_object(config, session_id)
        return {"type": "transcription_session.created", "event_id": new_id("event"), "session": session}

    def updated(self, config: TranscriptionConfig, session_id: str) -> Event:
        session = self.session_object(config, session_id)
        return {"type": "transcription_session.updated", "event_id": new_id("event"), "session": session}

    def apply_update(self, config: TranscriptionConfig, session: dict[str, Any], event_id: str | None) -> None:
        _refuse_include(session, event_id)
        _refuse_extras(session, "input_audio_noise_reduction", "session.", event_id)
        fmt = session.get("input_audio_format")
        if fmt is not None:
            if fmt not in BETA_FORMATS:
                raise invalid("session.input_audio_format", "pcm16, g711_ulaw or g711_alaw", event_id)
            config.encoding, config.sample_rate_hertz = BETA_FORMATS[fmt]
        transcription = section(
            session, "input_audio_transcription", param="session.input_audio_transcription", event_id=event_id
        )
        _transcription(config, transcription, "session.input_audio_transcription", event_id)
        if "turn_detection" in session:
            apply_turn_detection(config, session["turn_detection"], "session.turn_detection", event_id)

    def session_object(self, config: TranscriptionConfig, session_id: str) -> dict[str, Any]:
        fmt = next(name for name, (enc, _) in BETA_FORMATS.items() if enc == config.encoding)
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "modalities": ["text"],
            "input_audio_format": fmt,
            "input_audio_transcription": _transcription_object(config),
            "turn_detection": config.turn_detection,
            "input_audio_noise_reduction": None,
            "include": [],
        }
