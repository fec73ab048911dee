"""Real offline speech recognition with pocketsphinx, streamed the way Riva streams.

pocketsphinx's bundled US-English model ships inside the wheel, so nothing is
downloaded. Audio is decoded as it arrives (one ``process_raw`` per chunk), a
voice-activity detector finds utterance boundaries, and each utterance gets
interims while it grows and one final when ~600 ms of silence ends it. Words are
timed from the start of the stream, not of the utterance, as Riva times them.

Each stream owns its own ``Decoder``: the C decoder (and its language model's
lookup caches) are not thread-safe. A Decoder costs ~0.2 s and ~90 MB to build,
and ``process_raw`` holds the GIL, so one process decodes roughly 8-10x real time
in total however many threads it runs (about 8 concurrent live streams).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pocketsphinx

from fake_riva.audio import TARGET_RATE_HZ, AudioDecoder, Int16Array
from fake_riva.recognizers.base import Hypothesis, StreamSettings, UnsupportedAudio, Word

log = logging.getLogger("fake_riva.pocketsphinx")

LANGUAGES = frozenset({"en-us", "en"})
INTERIM_STABILITY = 0.5
VAD_FRAME_S = 0.03
ENDPOINT_SILENCE_S = 0.6  # non-speech that ends an utterance
PREROLL_S = 0.3  # audio kept from before the VAD fired, so word onsets are not clipped
MAX_UTTERANCE_S = 60.0  # bounds decoder memory should something keep the VAD "in speech"
# WebRTC's VAD calls even faint steady noise speech, so a frame must also stand out
# from the noise floor (the quietest frame of the last few seconds) and be audible.
NOISE_FLOOR_WINDOW_S = 3.0
SPEECH_ABOVE_FLOOR_DB = 9.0
MIN_SPEECH_DBFS = -55.0
DECODER_FRAME_MS = 10  # pocketsphinx's default frame rate is 100 per second

_SAMPLES_PER_VAD_FRAME = int(TARGET_RATE_HZ * VAD_FRAME_S)
_ENDPOINT_FRAMES = round(ENDPOINT_SILENCE_S / VAD_FRAME_S)
_PREROLL_FRAMES = round(PREROLL_S / VAD_FRAME_S)
_MAX_UTTERANCE_FRAMES = round(MAX_UTTERANCE_S / VAD_FRAME_S)
_NOISE_FLOOR_FRAMES = round(NOISE_FLOOR_WINDOW_S / VAD_FRAME_S)
_SILENT_DBFS = -120.0
_ALTERNATE = re.compile(r"\(\d+\)$")


# Speed over the last drop of accuracy: skipping the second (flat-lexicon) pass and
# scoring 2 rather than 4 Gaussians per frame decodes ~1.5x faster, with the same
# word error rate on our TTS sentences, and makes the final at an endpoint cheaper.
DECODER_SETTINGS: Mapping[str, object] = MappingProxyType({"loglevel": "FATAL", "fwdflat": False, "topn": 2})


@lru_cache(maxsize=1)
def _config_json() -> str:
    """The model paths and settings, resolved once; each Decoder is built from them."""
    return str(pocketsphinx.Config(**DECODER_SETTINGS).dumps())


def _new_decoder() -> pocketsphinx.Decoder:
    return pocketsphinx.Decoder(pocketsphinx.Config.parse_json(_config_json()))


def _clean(word: str) -> str:
    """Drop pocketsphinx's non-words: <s>, </s>, <sil>, [NOISE]...; "word(2)" -> "word"."""
    if not word or word[0] in "<[+":
        return ""
    return _ALTERNATE.sub("", word)


def _frame_dbfs(samples: Int16Array) -> npt.NDArray[np.float64]:
    """Each VAD frame's RMS level in dB below full scale (digital silence -> -120)."""
    frames = samples.reshape(-1, _SAMPLES_PER_VAD_FRAME).astype(np.float64)
    power = np.mean(frames * frames, axis=1) / 32768.0**2
    return np.asarray(10 * np.log10(np.maximum(power, 10 ** (_SILENT_DBFS / 10))), dtype=np.float64)


def _punctuate(words: list[str], *, final: bool) -> list[str]:
    """Riva-style automatic punctuation, kept simple: a capital, and a full stop at the end."""
    if not words:
        return words
    out = list(words)
    out[0] = out[0][:1].upper() + out[0][1:]
    if final:
        out[-1] += "."
    return out


class PocketsphinxRecognizer:
    """One stream: bytes in, Riva-like interim and final hypotheses out."""

    def __init__(self, settings: StreamSettings) -> None:
        if settings.language_code.lower() not in LANGUAGES:
            raise UnsupportedAudio(
                f"the pocketsphinx recognizer only has an English model; "
                f"language_code={settings.language_code} is not supported (use en-US)"
            )
        self._settings = settings
        self._audio = AudioDecoder(settings.encoding, settings.sample_rate_hertz)
        self._decoder = _new_decoder()
        self._vad = pocketsphinx.Vad(pocketsphinx.Vad.LOOSE, TARGET_RATE_HZ, VAD_FRAME_S)
        self._pending: Int16Array = np.zeros(0, dtype=np.int16)  # < one VAD frame, awaiting more
        self._consumed = 0  # 16 kHz samples walked through so far: the stream clock
        self._preroll: deque[Int16Array] = deque(maxlen=_PREROLL_FRAMES)
        self._recent_dbfs: deque[float] = deque(maxlen=_NOISE_FLOOR_FRAMES)
        self._in_utterance = False
        self._utterance_start = 0  # stream sample where the current utterance's audio begins
        self._utterance_frames = 0
        self._silent_frames = 0
        self._last_interim = ""

    # -- Recognizer ------------------------------------------------------------------
    def accept(self, audio: bytes) -> list[Hypothesis]:
        results = self._consume(self._audio.decode(audio))
        if self._settings.interim_results and self._in_utterance:
            results.extend(self._interim())
        return results

    def finish(self) -> list[Hypothesis]:
        results = self._consume(self._audio.flush())
        if self._in_utterance:
            if self._pending.size:
                self._decoder.process_raw(self._pending.tobytes())
            results.extend(self._end_utterance())
        self._consumed += self._pending.size
        self._pending = np.zeros(0, dtype=np.int16)
        return results

    # -- streaming -------------------------------------------------------------------
    def _consume(self, samples: Int16Array) -> list[Hypothesis]:
        """Walk the new audio one VAD frame at a time, feeding the decoder in batches.

        Batching matters: one ``process_raw`` per chunk rather than per 30 ms frame.
        """
        results: list[Hypothesis] = []
        buffer = np.concatenate((self._pending, samples)) if self._pending.size else samples
        n_frames = buffer.size // _SAMPLES_PER_VAD_FRAME
        levels = _frame_dbfs(buffer[: n_frames * _SAMPLES_PER_VAD_FRAME])
        batch: list[Int16Array] = []
        for i in range(n_frames):
            frame = buffer[i * _SAMPLES_PER_VAD_FRAME : (i + 1) * _SAMPLES_PER_VAD_FRAME]
            frame_start = self._consumed
            self._consumed += frame.size
            speech = self._is_speech(frame, float(levels[i]))
            if not self._in_utterance:
                if not speech:
                    self._preroll.append(frame)
                    continue
                self._start_utterance(frame_start)
                batch.extend(self._preroll)
                self._preroll.clear()
            batch.append(frame)
            self._utterance_frames += 1
            self._silent_frames = 0 if speech else self._silent_frames + 1
            if self._silent_frames >= _ENDPOINT_FRAMES or self._utterance_frames >= _MAX_UTTERANCE_FRAMES:
                self._feed(batch)
                batch = []
                results.extend(self._end_utterance())
        self._feed(batch)
        self._pending = buffer[n_frames * _SAMPLES_PER_VAD_FRAME :].copy()
        return results

    def _is_speech(self, frame: Int16Array, dbfs: float) -> bool:
        self._recent_dbfs.append(dbfs)
        floor = min(self._recent_dbfs)
        if dbfs < MIN_SPEECH_DBFS or dbfs < floor + SPEECH_ABOVE_FLOOR_DB:
            return False
        return bool(self._vad.is_speech(frame.tobytes()))

    def _start_utterance(self, speech_start: int) -> None:
        self._in_utterance = True
        self._utterance_start = speech_start - sum(f.size for f in self._preroll)
        self._utterance_frames = len(self._preroll)
        self._silent_frames = 0
        self._last_interim = ""
        self._decoder.start_utt()

    def _feed(self, batch: list[Int16Array]) -> None:
        if batch:
            self._decoder.process_raw(np.concatenate(batch).tobytes())

    def _end_utterance(self) -> list[Hypothesis]:
        """Close the utterance; a final only if words were heard (never for noise/silence)."""
        self._decoder.end_utt()
        self._in_utterance = False
        self._last_interim = ""
        words, probs = self._segments()
        if not words:
            log.debug("utterance at %.2fs had no words", self._utterance_start / TARGET_RATE_HZ)
            return []
        texts = [w.word for w in words]
        if self._settings.automatic_punctuation:
            texts = _punctuate(texts, final=True)
            words = [Word(t, w.start_ms, w.end_ms, w.confidence) for t, w in zip(texts, words, strict=True)]
        return [
            Hypothesis(
                text=" ".join(texts),
                is_final=True,
                audio_processed_s=self._audio.seconds_received,
                stability=1.0,
                confidence=float(np.mean(probs)),
                words=tuple(words) if self._settings.word_time_offsets else (),
            )
        ]

    def _segments(self) -> tuple[list[Word], list[float]]:
        """The utterance's words, timed from the start of the stream."""
        offset_ms = self._utterance_start * 1000 // TARGET_RATE_HZ
        words: list[Word] = []
        probs: list[float] = []
        for seg in self._decoder.seg():
            text = _clean(seg.word)
            if not text:
                continue
            prob = min(max(float(seg.prob), 0.0), 1.0)
            words.append(
                Word(
                    text,
                    offset_ms + seg.start_frame * DECODER_FRAME_MS,
                    offset_ms + (seg.end_frame + 1) * DECODER_FRAME_MS,
                    prob,
                )
            )
            probs.append(prob)
        return words, probs

    def _interim(self) -> list[Hypothesis]:
        hyp = self._decoder.hyp()
        words = [w for w in (_clean(t) for t in hyp.hypstr.split()) if w] if hyp is not None else []
        if self._settings.automatic_punctuation:
            words = _punctuate(words, final=False)
        text = " ".join(words)
        if not text or text == self._last_interim:
            return []
        self._last_interim = text
        return [
            Hypothesis(
                text=text,
                is_final=False,
                audio_processed_s=self._audio.seconds_received,
                stability=INTERIM_STABILITY,
            )
        ]


def make_pocketsphinx_recognizer(settings: StreamSettings) -> PocketsphinxRecognizer:
    """The RecognizerFactory for ``--recognizer pocketsphinx``."""
    return PocketsphinxRecognizer(settings)
