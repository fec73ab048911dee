"""Scripted recognition driven by the audio's content, so replayed audio is heard again.

With ``fake.words_in_audio=true`` every 16-bit sample names a word: value k > 0 is the
k-th word of ``fake.transcript`` (counting from 1 across all utterances), 0 is silence.
An utterance is final after ``fake.endpoint_ms`` of silence, or at end of audio. Word
times come from sample positions, so a test can check that a reconnecting gateway
replays exactly the audio Riva had not finalised and offsets the times correctly.
"""

from __future__ import annotations

import numpy as np

from fake_riva.recognizers.base import Hypothesis, StreamSettings, UnsupportedAudio, Word

DEFAULT_ENDPOINT_MS = 300
CONFIDENCE = 0.95


class AudioScriptedRecognizer:
    def __init__(self, settings: StreamSettings) -> None:
        if settings.encoding != "LINEAR_PCM":
            raise UnsupportedAudio("fake.words_in_audio needs LINEAR_PCM audio")
        custom = settings.custom_configuration
        self._vocabulary = custom.get("fake.transcript", "").replace("|", " ").split()
        self._endpoint_samples = (
            int(custom.get("fake.endpoint_ms", DEFAULT_ENDPOINT_MS)) * settings.sample_rate_hertz // 1000
        )
        self._rate = settings.sample_rate_hertz
        self._settings = settings
        self._odd = b""
        self._samples = 0  # samples heard so far
        self._words: list[tuple[int, int, int]] = []  # (value, start sample, end sample)
        self._silence = 0  # samples of silence since the last word
        self._last_interim = ""

    def accept(self, audio: bytes) -> list[Hypothesis]:
        data = self._odd + audio
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2")
        results: list[Hypothesis] = []
        if samples.size == 0:
            return results
        edges = np.flatnonzero(np.diff(samples)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [samples.size]))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self._run(int(samples[start]), self._samples + start, self._samples + end, results)
        self._samples += samples.size
        if self._settings.interim_results and self._words:
            text = self._text()
            if text != self._last_interim:
                self._last_interim = text
                results.append(Hypothesis(text, False, self._samples / self._rate, stability=0.5))
        return results

    def finish(self) -> list[Hypothesis]:
        return [self._final()] if self._words else []

    def _run(self, value: int, start: int, end: int, results: list[Hypothesis]) -> None:
        if value <= 0:
            self._silence += end - start
            if self._words and self._silence >= self._endpoint_samples:
                results.append(self._final(at=start + self._endpoint_samples - (self._silence - (end - start))))
            return
        self._silence = 0
        if self._words and self._words[-1][0] == value and self._words[-1][2] == start:
            self._words[-1] = (value, self._words[-1][1], end)  # the same word goes on
        else:
            self._words.append((value, start, end))

    def _text(self) -> str:
        return " ".join(self._word(v) for v, _, _ in self._words)

    def _word(self, value: int) -> str:
        return self._vocabulary[value - 1] if value <= len(self._vocabulary) else f"w{value}"

    def _final(self, at: int | None = None) -> Hypothesis:
        ms = 1000 / self._rate
        words = tuple(Word(self._word(v), round(s * ms), round(e * ms), CONFIDENCE) for v, s, e in self._words)
        text = self._text()
        self._words, self._last_interim = [], ""
        processed = (at if at is not None else self._samples) / self._rate
        return Hypothesis(
            text,
            True,
            processed,
            stability=1.0,
            confidence=CONFIDENCE,
            words=words if self._settings.word_time_offsets else (),
        )
