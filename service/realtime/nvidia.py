"""NVIDIA's Riva realtime dialect (``riva.client.realtime.RealtimeClientASR``): the whole session
object in ``transcription_session.update``, ``commit`` after every append meaning "go on",
``input_audio_buffer.done`` ending the audio, and ``completed`` events carrying ``is_last_result``."""

from __future__ import annotations

from typing import Any

from service.realtime.config import TranscriptionConfig, riva_language
from service.realtime.dialect import invalid, optional_str, unsupported
from service.realtime.messages import new_id, section
from service.realtime.turns import Event, Style

DEFAULT_RATE_HZ = 16000
ENDPOINTING_FIELDS = (
    "start_history", "start_threshold", "stop_history", "stop_threshold", "stop_history_eou", "stop_threshold_eou",
)  # fmt: skip
RECOGNITION_FIELDS = {
    "enable_automatic_punctuation": "automatic_punctuation",
    "enable_word_time_offsets": "word_time_offsets",
    "enable_profanity_filter": "profanity_filter",
    "enable_verbatim_transcripts": "verbatim_transcripts",
}


def parse_custom_configuration(value: Any, event_id: str | None) -> dict[str, str]:
    """A map, or NVIDIA's client's ``"key:value,key:value"`` string."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise invalid("session.custom_configuration", 'a map or "key:value,key:value"', event_id)
    pairs: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = pair.partition(":")
        if not sep or not key:
            raise invalid("session.custom_configuration", f"{pair!r} is not key:value", event_id)
        pairs[key.strip()] = val.strip()
    return pairs


class Nvidia:
    name = "nvidia"
    style: Style = "nvidia"
    update_type = "transcription_session.update"

    def default_config(self) -> TranscriptionConfig:
        return TranscriptionConfig(sample_rate_hertz=DEFAULT_RATE_HZ)

    def greeting(self, config: TranscriptionConfig, session_id: str) -> Event:
        conversation = {"id": new_id("conv"), "object": "realtime.conversation"}
        return {"type": "conversation.created", "event_id": new_id("event"), "conversation": conversation}

    def updated(self, config: TranscriptionConfig, session_id: str) -> Event:
        session = self.session_object(config, session_id)
        return {"type": "transcription_session.updated", "event_id": new_id("event"), "session": session}

    def apply_update(self, config: TranscriptionConfig, session: dict[str, Any], event_id: str | None) -> None:
        fmt = session.get("input_audio_format")
        if fmt is not None:
            if fmt not in ("pcm16", "none"):
                raise invalid("session.input_audio_format", '"pcm16", or "none" for a WAV file', event_id)
            config.file_mode = fmt == "none"
            config.encoding = "LINEAR_PCM"
        transcription = (
            section(session, "input_audio_transcription", param="session.input_audio_transcription", event_id=event_id)
            or {}
        )
        language = optional_str(transcription, "language", "session.input_audio_transcription.language", event_id)
        if language:
            config.language = riva_language(language)
        model = optional_str(transcription, "model", "session.input_audio_transcription.model", event_id)
        if model is not None:
            config.model = model
        params = section(session, "input_audio_params", param="session.input_audio_params", event_id=event_id) or {}
        rate = params.get("sample_rate_hz")
        if rate is not None:
            if not isinstance(rate, int) or isinstance(rate, bool):
                raise invalid("session.input_audio_params.sample_rate_hz", "an integer", event_id)
            config.sample_rate_hertz = rate
        channels = params.get("num_channels", 1)
        if channels != 1:
            raise unsupported("session.input_audio_params.num_channels", "send mono audio", event_id)
        recognition = (
            section(session, "recognition_config", param="session.recognition_config", event_id=event_id) or {}
        )
        for name, attr in RECOGNITION_FIELDS.items():
            if name in recognition:
                value = recognition[name]
                if not isinstance(value, bool):
                    raise invalid(f"session.recognition_config.{name}", "true or false", event_id)
                setattr(config, attr, value)
        if "max_alternatives" in recognition:
            config.max_alternatives = recognition["max_alternatives"]
        diarization = section(session, "speaker_diarization", param="session.speaker_diarization", event_id=event_id)
        if diarization is not None:
            enabled = diarization.get("enable_speaker_diarization", False)
            config.speaker_diarization = (
                {"enabled": True, "max_speakers": diarization.get("max_speaker_count", 3)} if enabled else None
            )
        boosting = section(session, "word_boosting", param="session.word_boosting", event_id=event_id)
        if boosting is not None:
            listed = boosting.get("word_boosting_list") or []
            config.boosted_words = list(listed) if boosting.get("enable_word_boosting") else []
        endpointing = section(session, "endpointing_config", param="session.endpointing_config", event_id=event_id)
        if endpointing is not None:  # NVIDIA's 0 means "Riva's default"
            config.endpointing = {k: endpointing[k] for k in ENDPOINTING_FIELDS if endpointing.get(k)}
        if session.get("custom_configuration"):
            config.custom_configuration = parse_custom_configuration(session["custom_configuration"], event_id)

    def session_object(self, config: TranscriptionConfig, session_id: str) -> dict[str, Any]:
        diarization = config.speaker_diarization or {}
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "modalities": ["text"],
            "input_audio_format": "none" if config.file_mode else "pcm16",
            "input_audio_transcription": {"language": config.language, "model": config.model, "prompt": config.prompt},
            "input_audio_params": {"sample_rate_hz": config.sample_rate_hertz, "num_channels": 1},
            "recognition_config": {
                "max_alternatives": config.max_alternatives,
                **{name: getattr(config, attr) for name, attr in RECOGNITION_FIELDS.items()},
            },
            "speaker_diarization": {
                "enable_speaker_diarization": bool(diarization),
                "max_speaker_count": diarization.get("max_speakers", 8),
            },
            "word_boosting": {
                "enable_word_boosting": bool(config.boosted_words),
                "word_boosting_list": config.boosted_words,
            },
            "endpointing_config": {k: config.endpointing.get(k, 0) for k in ENDPOINTING_FIELDS},
            "custom_configuration": ",".join(f"{k}:{v}" for k, v in config.custom_configuration.items()),
        }
