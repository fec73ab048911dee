"""Real speech through the whole path: client -> gateway -> Riva (or pocketsphinx) -> SSE.

The same cases run against the bundled recognizer in CI and against a GPU Riva or NVIDIA's
cloud when ``RESERVE_ACCEPTANCE_RIVA_URI`` names one (see conftest.py).
"""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path
from typing import Any

import jiwer
import pytest
import trio

from tests.harness import EventCollector, Gateway, audio_socket, close_reason, read_events

pytestmark = pytest.mark.acceptance

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCES: dict[str, str] = json.loads((DATA / "fixtures.json").read_text())
CHUNK_S = 0.1
PACE = 4.0  # times real time: incremental enough for interims, quick enough for CI


def normalise(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def read_wav(name: str) -> tuple[bytes, int]:
    with wave.open(str(DATA / name)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes()), wav.getframerate()


async def transcribe(gateway: Gateway, name: str, **config: Any) -> EventCollector:
    pcm, rate = read_wav(name)
    session = await gateway.create_session(sample_rate_hertz=rate, **config)
    chunk = int(rate * CHUNK_S) * 2
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            for start in range(0, len(pcm), chunk):
                await ws.send_message(pcm[start : start + chunk])
                await trio.sleep(CHUNK_S / PACE)
            await ws.send_message('{"type": "end"}')
            code, _, frames = await close_reason(ws)
            assert code == 1000, frames
    assert events.events[-1].data == {"reason": "finished"}, events.events[-3:]
    return events


@pytest.mark.parametrize("name", sorted(REFERENCES))
async def test_word_error_rate_within_threshold(target_gateway: Gateway, name: str, max_wer: float) -> None:
    events = await transcribe(target_gateway, name, automatic_punctuation=False)
    hypothesis = normalise(" ".join(events.finals))
    error_rate = jiwer.wer(REFERENCES[name], hypothesis)
    assert error_rate <= max_wer, f"{name}: WER {error_rate:.2f} for {hypothesis!r}"


async def test_interim_results_arrive_before_the_final(target_gateway: Gateway) -> None:
    events = await transcribe(target_gateway, "children_park.wav", interim_results=True)
    kinds = [t["is_final"] for t in events.transcripts]
    assert False in kinds, "no interim results"
    assert kinds.index(False) < kinds.index(True)
    assert all(t["audio_processed"] > 0 for t in events.transcripts)


async def test_punctuation_when_asked(target_gateway: Gateway) -> None:
    events = await transcribe(target_gateway, "thank_you.wav", automatic_punctuation=True)
    assert any(re.search(r"[.?!,]", text) for text in events.finals), events.finals


async def test_word_time_offsets_when_asked(target_gateway: Gateway) -> None:
    events = await transcribe(target_gateway, "call_back.wav", word_time_offsets=True, interim_results=False)
    words = [w for t in events.transcripts for w in t["words"]]
    assert words, "no word timings"
    starts = [w["start_ms"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start_ms"] <= w["end_ms"] <= 6000 for w in words)
