"""The pocketsphinx recognizer on real (synthesised) speech, streamed in 100 ms chunks like Riva's clients."""

from __future__ import annotations

import itertools
import json
import wave
from pathlib import Path

import jiwer
import numpy as np
import numpy.typing as npt
import pytest

from fake_riva.audio import encode_alaw, encode_mulaw
from fake_riva.recognizers.base import Hypothesis, StreamSettings, UnsupportedAudio
from fake_riva.recognizers.pocketsphinx import make_pocketsphinx_recognizer

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCES: dict[str, str] = json.loads((DATA / "fixtures.json").read_text())
MAX_WER = 0.15


def _load(name: str) -> tuple[npt.NDArray[np.int16], int]:
    with wave.open(str(DATA / name)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16), w.getframerate()


def _settings(
    encoding: str = "LINEAR_PCM",
    rate_hz: int = 16000,
    *,
    language: str = "en-US",
    interim: bool = True,
    word_times: bool = True,
    punctuation: bool = False,
) -> StreamSettings:
    return StreamSettings(encoding, rate_hz, language, interim, word_times, punctuation)


def _stream(settings: StreamSettings, audio: bytes) -> tuple[list[Hypothesis], list[Hypothesis], list[float]]:
    """Feed 100 ms chunks; returns (results from accept, results from finish, audio sent when each came)."""
    recognizer = make_pocketsphinx_recognizer(settings)
    bytes_per_s = settings.sample_rate_hertz * (2 if settings.encoding == "LINEAR_PCM" else 1)
    chunk = bytes_per_s // 10
    streamed: list[Hypothesis] = []
    sent_at: list[float] = []
    for i in range(0, len(audio), chunk):
        results = recognizer.accept(audio[i : i + chunk])
        streamed.extend(results)
        sent_at.extend([min(i + chunk, len(audio)) / bytes_per_s] * len(results))
    return streamed, recognizer.finish(), sent_at


def _finals(results: list[Hypothesis]) -> list[Hypothesis]:
    return [h for h in results if h.is_final]


def _transcript(results: list[Hypothesis]) -> str:
    return " ".join(h.text for h in _finals(results))


def test_fixtures_are_recognised_within_the_wer_budget() -> None:
    """All fixtures, plus a 44.1 kHz one and G.711 encodings, which exercise decoding and resampling."""
    cases: list[tuple[str, StreamSettings, bytes]] = []
    for name in REFERENCES:
        samples, rate = _load(name)
        cases.append((name, _settings(rate_hz=rate, interim=False, word_times=False), samples.tobytes()))
    keys, _ = _load("find_keys.wav")
    cases.append(("find_keys.wav", _settings("MULAW", interim=False, word_times=False), encode_mulaw(keys)))
    thanks, _ = _load("thank_you.wav")
    cases.append(("thank_you.wav", _settings("ALAW", interim=False, word_times=False), encode_alaw(thanks)))

    references, hypotheses = [], []
    for name, settings, audio in cases:
        streamed, finished, _ = _stream(settings, audio)
        references.append(REFERENCES[name])
        hypotheses.append(_transcript(streamed + finished))
    wer = jiwer.wer(references, hypotheses)
    assert wer <= MAX_WER, list(zip(references, hypotheses, strict=True))


def test_interims_grow_before_the_final() -> None:
    samples, _ = _load("call_back.wav")
    streamed, finished, _ = _stream(_settings(), samples.tobytes())
    results = streamed + finished
    interims = [h for h in results if not h.is_final]
    assert len(interims) >= 3
    first_final = next(i for i, h in enumerate(results) if h.is_final)
    assert all(not h.is_final for h in results[:first_final])
    assert first_final >= 3
    assert all(h.stability == pytest.approx(0.5) and h.text and not h.words for h in interims)
    assert all(a.text != b.text for a, b in itertools.pairwise(interims))  # only when changed
    final = _finals(results)
    assert len(final) == 1
    assert final[0].stability == 1.0 and 0.0 < final[0].confidence <= 1.0
    assert final[0].audio_processed_s == pytest.approx(samples.size / 16000)


def test_no_interims_unless_asked() -> None:
    samples, _ = _load("children_park.wav")
    streamed, finished, _ = _stream(_settings(interim=False), samples.tobytes())
    assert all(h.is_final for h in streamed + finished)
    assert jiwer.wer(REFERENCES["children_park.wav"], _transcript(streamed + finished)) <= MAX_WER


def test_word_offsets_are_ordered_and_inside_the_audio() -> None:
    samples, rate = _load("children_park_44k.wav")  # resampled: times must still be in stream time
    streamed, finished, _ = _stream(_settings(rate_hz=rate), samples.tobytes())
    (final,) = _finals(streamed + finished)
    words = final.words
    assert [w.word for w in words] == final.text.split()
    duration_ms = samples.size * 1000 / rate
    assert words[0].start_ms >= 0
    assert words[-1].end_ms <= duration_ms
    for word in words:
        assert word.start_ms < word.end_ms
        assert 0.0 <= word.confidence <= 1.0
    for before, after in itertools.pairwise(words):
        assert before.end_ms <= after.start_ms
    # The fixture has 0.3 s of leading silence; speech ends 0.4 s before the end.
    assert 250 <= words[0].start_ms <= 700
    assert duration_ms - 1000 <= words[-1].end_ms


def test_no_word_offsets_unless_asked() -> None:
    samples, _ = _load("thank_you.wav")
    streamed, finished, _ = _stream(_settings(word_times=False), samples.tobytes())
    finals = _finals(streamed + finished)
    assert finals and all(h.words == () for h in finals)


def test_silence_ends_an_utterance_mid_stream() -> None:
    first, _ = _load("call_back.wav")
    second, _ = _load("thank_you.wav")
    gap = np.zeros(int(1.5 * 16000), dtype=np.int16)
    audio = np.concatenate([first, gap, second])
    second_starts_s = (first.size + gap.size) / 16000
    streamed, finished, sent_at = _stream(_settings(), audio.tobytes())

    endpoint_finals = [(h, t) for h, t in zip(streamed, sent_at, strict=True) if h.is_final]
    assert endpoint_finals, "expected a final from accept() at the pause, not only at finish()"
    head, head_sent_at = endpoint_finals[0]
    assert head_sent_at < second_starts_s  # emitted during the silence, before the next sentence arrived
    assert jiwer.wer(REFERENCES["call_back.wav"], head.text) <= MAX_WER

    finals = _finals(streamed + finished)
    assert len(finals) == 2
    tail = finals[1]
    assert jiwer.wer(REFERENCES["thank_you.wav"], tail.text) <= MAX_WER
    # The second utterance is timed from the stream's start, not its own.
    assert tail.words[0].start_ms >= second_starts_s * 1000
    assert tail.words[0].start_ms > head.words[-1].end_ms + 1000
    assert tail.audio_processed_s == pytest.approx(audio.size / 16000)


def test_silence_and_steady_noise_yield_nothing() -> None:
    rng = np.random.default_rng(0)
    faint = rng.normal(0, 30, 2 * 16000)  # about -60 dBFS, below anything we call speech
    audio = np.concatenate([np.zeros(16000), faint]).astype(np.int16)
    streamed, finished, _ = _stream(_settings(), audio.tobytes())
    assert streamed + finished == []
    hiss = rng.normal(0, 300, 3 * 16000).astype(np.int16)  # -40 dBFS: WebRTC's VAD alone calls this speech
    streamed, finished, _ = _stream(_settings(), hiss.tobytes())
    assert streamed + finished == []


def test_endpoints_still_happen_in_steady_background_noise() -> None:
    first, _ = _load("call_back.wav")
    second, _ = _load("thank_you.wav")
    clean = np.concatenate([first, np.zeros(16000, dtype=np.int16), second])
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 100, clean.size), -32768, 32767).astype(np.int16)
    streamed, finished, sent_at = _stream(_settings(), noisy.tobytes())
    finals = [t for h, t in zip(streamed, sent_at, strict=True) if h.is_final]
    assert finals and finals[0] < (first.size + 16000) / 16000
    assert len(_finals(streamed + finished)) == 2


def test_automatic_punctuation_capitalises_and_ends_with_a_period() -> None:
    samples, _ = _load("find_keys.wav")
    streamed, finished, _ = _stream(_settings(punctuation=True), samples.tobytes())
    (final,) = _finals(streamed + finished)
    assert final.text[0].isupper() and final.text.endswith(".")
    assert final.words[0].word[0].isupper() and final.words[-1].word.endswith(".")


@pytest.mark.parametrize("language", ["es-US", "de-DE", "fr"])
def test_other_languages_are_unsupported(language: str) -> None:
    with pytest.raises(UnsupportedAudio, match=language):
        make_pocketsphinx_recognizer(_settings(language=language))


@pytest.mark.parametrize(("encoding", "rate_hz"), [("FLAC", 16000), ("OGGOPUS", 48000), ("LINEAR_PCM", 96000)])
def test_undecodable_audio_is_unsupported(encoding: str, rate_hz: int) -> None:
    with pytest.raises(UnsupportedAudio):
        make_pocketsphinx_recognizer(_settings(encoding, rate_hz))
