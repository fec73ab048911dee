"""Recognizers fake_riva can run, by name."""

from __future__ import annotations

from fake_riva.recognizers.base import RecognizerFactory


def get_factory(name: str) -> RecognizerFactory:
    """Import lazily: pocketsphinx loads a model, which the scripted tests need not pay for."""
    if name == "scripted":
        from fake_riva.recognizers.scripted import make_scripted_recognizer

        return make_scripted_recognizer
    if name == "pocketsphinx":
        from fake_riva.recognizers.pocketsphinx import make_pocketsphinx_recognizer

        return make_pocketsphinx_recognizer
    if name == "tagged":
        from fake_riva.recognizers.tagged import TaggedRecognizer

        return TaggedRecognizer
    raise ValueError(f"unknown recognizer {name!r}; choose scripted, pocketsphinx or tagged")


RECOGNIZERS = ("scripted", "pocketsphinx", "tagged")
