"""The recognition settings a client may ask for, validated, and their Riva form."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_audio_pb2 as audio_pb

Encoding = Literal["LINEAR_PCM", "FLAC", "MULAW", "ALAW", "OGGOPUS"]
BYTES_PER_SAMPLE: dict[str, int] = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}
Phrase = Annotated[str, Field(min_length=1, max_length=200)]
ConfigKey = Annotated[str, Field(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BoostedWords(_Strict):
    phrases: list[Phrase] = Field(min_length=1, max_length=1000)
    boost: float = Field(ge=-100, le=100)


class Endpointing(_Strict):
    """Riva's EndpointingConfig: histories in ms, thresholds as a share of frames (0..1)."""

    start_history: int | None = Field(None, ge=0, le=60_000)
    start_threshold: float | None = Field(None, ge=0, le=1)
    stop_history: int | None = Field(None, ge=0, le=60_000)
    stop_threshold: float | None = Field(None, ge=0, le=1)
    stop_history_eou: int | None = Field(None, ge=0, le=60_000)
    stop_threshold_eou: float | None = Field(None, ge=0, le=1)


class SpeakerDiarization(_Strict):
    enabled: bool = False
    max_speakers: int = Field(3, ge=1, le=32)


class RecognitionSettings(_Strict):
    """Every field is optional; the defaults suit a browser streaming 16 kHz PCM."""

    encoding: Encoding = "LINEAR_PCM"
    sample_rate_hertz: int = Field(16000, ge=8000, le=48000)
    language_code: str = Field("en-US", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")
    model: str = Field("", max_length=256)
    interim_results: bool = True
    automatic_punctuation: bool = True
    verbatim_transcripts: bool = True
    profanity_filter: bool = False
    word_time_offsets: bool = False
    max_alternatives: int = Field(1, ge=1, le=10)
    boosted_words: list[BoostedWords] = Field(default_factory=list, max_length=100)
    endpointing: Endpointing | None = None
    speaker_diarization: SpeakerDiarization | None = None
    custom_configuration: dict[ConfigKey, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=64
    )

    @property
    def bytes_per_second(self) -> int | None:
        """Audio rate when the encoding has a fixed one (compressed encodings do not)."""
        per_sample = BYTES_PER_SAMPLE.get(self.encoding)
        return None if per_sample is None else per_sample * self.sample_rate_hertz

    def to_riva(self) -> asr.StreamingRecognitionConfig:
        config = asr.RecognitionConfig(
            encoding=audio_pb.AudioEncoding.Value(self.encoding),
            sample_rate_hertz=self.sample_rate_hertz,
            language_code=self.language_code,
            model=self.model,
            max_alternatives=self.max_alternatives,
            profanity_filter=self.profanity_filter,
            enable_word_time_offsets=self.word_time_offsets,
            enable_automatic_punctuation=self.automatic_punctuation,
            verbatim_transcripts=self.verbatim_transcripts,
            audio_channel_count=1,
            speech_contexts=[asr.SpeechContext(phrases=b.phrases, boost=b.boost) for b in self.boosted_words],
            custom_configuration=self.custom_configuration,
        )
        if self.endpointing is not None:
            config.endpointing_config.CopyFrom(asr.EndpointingConfig(**self.endpointing.model_dump(exclude_none=True)))
        if self.speaker_diarization is not None:
            config.diarization_config.CopyFrom(
                asr.SpeakerDiarizationConfig(
                    enable_speaker_diarization=self.speaker_diarization.enabled,
                    max_speaker_count=self.speaker_diarization.max_speakers,
                )
            )
        return asr.StreamingRecognitionConfig(config=config, interim_results=self.interim_results)
