"""What both servicers (threaded and grpc.aio) share: Riva's config checks and proto conversion."""

from __future__ import annotations

from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_audio_pb2 as audio_pb

from fake_riva.models import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, MODELS, Model, find_model
from fake_riva.recognizers.base import Hypothesis, Recognizer, RecognizerFactory, StreamSettings, UnsupportedAudio


class ConfigRejected(ValueError):
    """The config is not one Riva would accept; servicers answer INVALID_ARGUMENT with this text."""


def make_recognizer(
    factory: RecognizerFactory,
    config: asr.RecognitionConfig,
    *,
    interim_results: bool,
    models: tuple[Model, ...] = MODELS,
) -> Recognizer:
    """Validate the config as Riva does, then build this stream's recognizer."""
    if config.encoding == audio_pb.ENCODING_UNSPECIFIED:
        raise ConfigRejected("Error: audio encoding must be specified")
    if not MIN_SAMPLE_RATE_HZ <= config.sample_rate_hertz <= MAX_SAMPLE_RATE_HZ:
        raise ConfigRejected(
            f"Error: sample_rate_hertz={config.sample_rate_hertz} is not supported; "
            f"use {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}"
        )
    languages = {m.language_code for m in models}
    if config.language_code not in languages or find_model(config.model, config.language_code, models) is None:
        raise ConfigRejected(
            "Error: Unavailable model requested given these parameters: "
            f"language_code={config.language_code}; model={config.model or '(any)'}; type=online"
        )
    settings = StreamSettings(
        encoding=audio_pb.AudioEncoding.Name(config.encoding),
        sample_rate_hertz=config.sample_rate_hertz,
        language_code=config.language_code,
        interim_results=interim_results,
        word_time_offsets=config.enable_word_time_offsets,
        automatic_punctuation=config.enable_automatic_punctuation,
        custom_configuration=dict(config.custom_configuration),
    )
    try:
        return factory(settings)
    except UnsupportedAudio as exc:
        raise ConfigRejected(f"Error: {exc}") from exc


def alternative(h: Hypothesis) -> asr.SpeechRecognitionAlternative:
    return asr.SpeechRecognitionAlternative(
        transcript=h.text,
        confidence=h.confidence,
        words=[
            asr.WordInfo(word=w.word, start_time=w.start_ms, end_time=w.end_ms, confidence=w.confidence)
            for w in h.words
        ],
    )


def response(results: list[Hypothesis]) -> asr.StreamingRecognizeResponse:
    return asr.StreamingRecognizeResponse(
        results=[
            asr.StreamingRecognitionResult(
                alternatives=[alternative(h)],
                is_final=h.is_final,
                stability=h.stability,
                audio_processed=h.audio_processed_s,
                channel_tag=1,
            )
            for h in results
        ]
    )
