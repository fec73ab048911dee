"""A deterministic recognizer whose transcript the test writes in advance.

The script comes from ``custom_configuration``: ``fake.transcript`` holds utterances
separated by ``|``; each word "takes" ``fake.ms_per_word`` of audio. Words are
revealed as audio arrives, so a test controls exactly what is recognised by how
much audio it sends: an utterance is final once all its words are heard (an
endpoint), and end of audio finalises the words heard so far.
"""

from __future__ import annotations

from fake_riva.recognizers.base import Hypothesis, Recognizer, StreamSettings, UnsupportedAudio, Word

BYTES_PER_SAMPLE = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}
DEFAULT_MS_PER_WORD = 200
INTERIM_STABILITY = 0.5
FINAL_CONFIDENCE = 0.95


def make_scripted_recognizer(settings: StreamSettings) -> Recognizer:
    """Time-driven by default; content-driven with ``fake.words_in_audio=true``."""
    if settings.custom_configuration.get("fake.words_in_audio", "").lower() in ("1", "true", "yes"):
        from fake_riva.recognizers.scripted_audio import AudioScriptedRecognizer

        return AudioScriptedRecognizer(settings)
    return ScriptedRecognizer(settings)


class ScriptedRecognizer:
    def __init__(self, settings: StreamSettings) -> None:
        if settings.encoding not in BYTES_PER_SAMPLE:
            raise UnsupportedAudio(
                f"the scripted recognizer cannot time {settings.encoding} audio; "
                f"use one of {', '.join(BYTES_PER_SAMPLE)}"
            )
        custom = settings.custom_configuration
        try:
            self._ms_per_word = int(custom.get("fake.ms_per_word", DEFAULT_MS_PER_WORD))
        except ValueError as exc:
            raise UnsupportedAudio("fake.ms_per_word must be an integer") from exc
        if self._ms_per_word <= 0:
            raise UnsupportedAudio("fake.ms_per_word must be positive")
        script = custom.get("fake.transcript", "")
        self._utterances = [u.split() for u in script.split("|") if u.split()]
        self._settings = settings
        self._bytes_per_second = settings.sample_rate_hertz * BYTES_PER_SAMPLE[settings.encoding]
        self._bytes = 0
        self._utterance = 0  # index of the utterance being heard
        self._first_word = 0  # global index of its first word
        self._last_interim = ""

    @property
    def _audio_ms(self) -> float:
        return self._bytes * 1000 / self._bytes_per_second

    def accept(self, audio: bytes) -> list[Hypothesis]:
        self._bytes += len(audio)
        results: list[Hypothesis] = []
        heard = int(self._audio_ms // self._ms_per_word)  # words fully heard so far
        while self._utterance < len(self._utterances):
            words = self._utterances[self._utterance]
            if heard >= self._first_word + len(words):
                results.append(self._final(words))
                continue
            partial = words[: max(0, heard - self._first_word)]
            text = " ".join(partial)
            if self._settings.interim_results and text and text != self._last_interim:
                self._last_interim = text
                results.append(
                    Hypothesis(
                        text=text,
                        is_final=False,
                        audio_processed_s=self._audio_ms / 1000,
                        stability=INTERIM_STABILITY,
                        confidence=0.0,
                    )
                )
            break
        return results

    def finish(self) -> list[Hypothesis]:
        if self._utterance >= len(self._utterances):
            return []
        heard = int(self._audio_ms // self._ms_per_word) - self._first_word
        words = self._utterances[self._utterance][: max(0, heard)]
        return [self._final(words)] if words else []

    def _final(self, words: list[str]) -> Hypothesis:
        first = self._first_word
        timed = (
            tuple(
                Word(w, (first + i) * self._ms_per_word, (first + i + 1) * self._ms_per_word, FINAL_CONFIDENCE)
                for i, w in enumerate(words)
            )
            if self._settings.word_time_offsets
            else ()
        )
        self._first_word += len(self._utterances[self._utterance])
        self._utterance += 1
        self._last_interim = ""
        return Hypothesis(
            text=" ".join(words),
            is_final=True,
            audio_processed_s=self._audio_ms / 1000,
            stability=1.0,
            confidence=FINAL_CONFIDENCE,
            words=timed,
        )
