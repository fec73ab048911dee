"""The model catalogue fake_riva advertises, shaped like Riva's own answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    language_code: str
    streaming: bool = True

    def parameters(self) -> dict[str, str]:
        """Riva's GetRivaSpeechRecognitionConfig lists these as string parameters."""
        return {
            "type": "online" if self.streaming else "offline",
            "language_code": self.language_code,
            "streaming": str(self.streaming),
            "sample_rate": "16000",
        }


MODELS: tuple[Model, ...] = (
    Model("conformer-en-US-asr-streaming", "en-US"),
    Model("conformer-en-US-asr-offline", "en-US", streaming=False),
    Model("conformer-es-US-asr-streaming", "es-US"),
)

LANGUAGES = frozenset(m.language_code for m in MODELS)
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000


def find_model(name: str, language_code: str) -> Model | None:
    """The model Riva would pick: by name when given, else the streaming one for the language."""
    for model in MODELS:
        if name and model.name == name:
            return model
        if not name and model.streaming and model.language_code == language_code:
            return model
    return None
