"""The model catalogues fake_riva advertises, shaped like Riva's own answer: a Riva-like one
for the scripted test recognizers, and what the bundled pocketsphinx recognizer really is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    language_code: str
    streaming: bool = True
    description: str = ""

    def parameters(self) -> dict[str, str]:
        """Riva's GetRivaSpeechRecognitionConfig lists these as string parameters."""
        parameters = {
            "type": "online" if self.streaming else "offline",
            "language_code": self.language_code,
            "streaming": str(self.streaming),
            "sample_rate": "16000",
        }
        if self.description:
            parameters["description"] = self.description
        return parameters


MODELS: tuple[Model, ...] = (
    Model("conformer-en-US-asr-streaming", "en-US"),
    Model("conformer-en-US-asr-offline", "en-US", streaming=False),
    Model("conformer-es-US-asr-streaming", "es-US"),
)

POCKETSPHINX_MODELS: tuple[Model, ...] = (
    Model(
        "pocketsphinx-en-US-asr-streaming",
        "en-US",
        description="CMU PocketSphinx with its bundled US English model: offline, on the CPU, no GPU or Riva",
    ),
)
CATALOGUES = {"pocketsphinx": POCKETSPHINX_MODELS}

LANGUAGES = frozenset(m.language_code for m in MODELS)
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000


def catalogue(recognizer: str) -> tuple[Model, ...]:
    """The models a fake_riva running ``recognizer`` offers."""
    return CATALOGUES.get(recognizer, MODELS)


def find_model(name: str, language_code: str, models: tuple[Model, ...] = MODELS) -> Model | None:
    """The model Riva would pick: by name when given, else the streaming one for the language."""
    for model in models:
        if name and model.name == name:
            return model
        if not name and model.streaming and model.language_code == language_code:
            return model
    return None
