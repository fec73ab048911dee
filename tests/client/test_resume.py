"""The client resumes a dropped audio socket and resends what the gateway did not get.

A proxy between the client and a real gateway (fake_riva behind it, its content-driven script:
every sample names a word) swallows the client's audio for a while, as a network partition
does, then cuts the TCP connection. The client reconnects, reads ``resumed`` and resends from
the gateway's offset: every word comes back exactly once, at its own time.
"""

from __future__ import annotations

import numpy as np
import pytest

from fake_riva import FakeRiva
from service.client import ClientError, Options, RawAudio, Transcript, transcribe_audio
from service.client.events import SessionResult
from service.client.session import transcribe
from service.settings import Settings
from tests.client.cutting_proxy import proxy_to
from tests.harness import TEST_API_KEY, running_gateway

WORDS = "one two|three four|five six"
# every sample names a word of WORDS (0 is silence): see fake_riva/recognizers/scripted_audio.py
SPEECH = [(1, 200), (2, 200), (0, 400), (3, 200), (4, 200), (0, 400), (5, 200), (6, 200), (0, 400)]
EXPECTED_WORDS = [
    ("one", 0.0, 0.2), ("two", 0.2, 0.4), ("three", 0.8, 1.0),
    ("four", 1.0, 1.2), ("five", 1.6, 1.8), ("six", 1.8, 2.0),
]  # fmt: skip
BYTES_PER_S = 32000
SETTINGS = {"custom_configuration": {"fake.transcript": WORDS, "fake.words_in_audio": "true"}}


def speech_audio() -> bytes:
    return np.concatenate([np.full(ms * 16, value, dtype="<i2") for value, ms in SPEECH]).tobytes()


def words_of(transcript: Transcript) -> list[tuple[str, float, float]]:
    return [(w.text, round(w.start_s, 3), round(w.end_s, 3)) for r in transcript.results for w in r.words]


async def test_a_cut_audio_socket_is_resumed_and_every_word_comes_once(fake_riva: FakeRiva) -> None:
    # 1.1 s of audio reaches the gateway ("three" is heard), then 0.5 s is lost in the network
    settings = Settings(riva_uri=fake_riva.target, audio_reconnect_grace_s=5)
    async with running_gateway(settings) as gateway, proxy_to(gateway.base_url, 200 + 35200, 0.5) as proxy:
        options = Options(url=proxy.url, api_key=TEST_API_KEY, chunk_ms=100, settings=SETTINGS)
        result = await transcribe(options, RawAudio.from_bytes(speech_audio()))
    assert proxy.cuts == 1 and proxy.swallowed >= BYTES_PER_S // 4, "the gateway really missed audio"
    assert result.reconnects >= 1 and not result.warnings
    assert [r.text for r in result.transcript.results] == ["one two", "three four", "five six"]
    assert words_of(result.transcript) == EXPECTED_WORDS
    assert result.transcript.end_reason == "finished"


async def test_past_the_resend_buffer_the_loss_is_said_clearly(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, audio_reconnect_grace_s=5)
    async with running_gateway(settings) as gateway, proxy_to(gateway.base_url, 200 + 35200, 0.6) as proxy:
        options = Options(url=proxy.url, api_key=TEST_API_KEY, resend_buffer_s=0.2, settings=SETTINGS)
        result: SessionResult = await transcribe(options, RawAudio.from_bytes(speech_audio()))
    assert proxy.cuts == 1
    assert len(result.warnings) == 1
    assert "only the last 0.2 s since its last final are kept (--resend-buffer)" in result.warnings[0]
    assert result.transcript.end_reason == "finished"


async def test_a_gateway_that_never_comes_back_is_one_clear_error(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, audio_reconnect_grace_s=0)  # the session ends at the drop
    async with running_gateway(settings) as gateway, proxy_to(gateway.base_url, 200 + 16000, 0.0) as proxy:
        options = Options(url=proxy.url, api_key=TEST_API_KEY, settings=SETTINGS, reconnect_s=1)
        with pytest.raises(ClientError) as caught:
            await transcribe_audio(RawAudio.from_bytes(speech_audio()), options)
    # whichever the client learns first: the event stream's end, or the refused reconnect
    message = caught.value.message
    assert message == "the session ended early: client_gone" or "4410 session_closed" in message, message
