"""The client resumes a dropped audio socket and resends what the gateway did not get.

A proxy between the client and a real gateway (fake_riva behind it, its content-driven script:
every sample names a word) swallows the client's audio for a while, as a network partition
does, then cuts the TCP connection. The client reconnects, reads ``resumed`` and resends from
the gateway's offset: every word comes back exactly once, at its own time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest
import trio

from fake_riva import FakeRiva
from service.client import ClientError, Options, RawAudio, Transcript, transcribe_audio
from service.client.events import SessionResult
from service.client.session import transcribe
from service.settings import Settings
from tests.harness import TEST_API_KEY, running_fake_riva, running_gateway

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


@dataclass
class CuttingProxy:
    """Forwards TCP to the gateway; the first audio socket gets ``pass_bytes`` of the client's
    bytes through, then the rest is swallowed for ``swallow_s`` and the connection is cut."""

    upstream_port: int
    pass_bytes: int
    swallow_s: float
    port: int = 0
    cuts: int = 0
    swallowed: int = 0

    async def handle(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", self.upstream_port) as server:
            first = await client.receive_some(65536)
            cut_this = b"/audio" in first.split(b"\r\n", 1)[0] and self.cuts == 0
            if cut_this:
                self.cuts += 1
            await server.send_all(first)
            async with trio.open_nursery() as nursery:  # either side ending ends the connection

                async def pipe(source: trio.SocketStream, sink: trio.SocketStream, cut: bool) -> None:
                    await self._pipe(source, sink, cut)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(pipe, server, client, False)
                nursery.start_soon(pipe, client, server, cut_this)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, cut: bool) -> None:
        passed = 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                if cut and passed + len(data) > self.pass_bytes:
                    await sink.send_all(data[: self.pass_bytes - passed])
                    self.swallowed += len(data) - (self.pass_bytes - passed)
                    with trio.move_on_after(self.swallow_s):  # a partition: bytes go nowhere
                        while more := await source.receive_some(65536):
                            self.swallowed += len(more)
                    return  # and then the connection is gone (both sides closed)
                passed += len(data)
                await sink.send_all(data)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def proxy_to(upstream_url: str, pass_bytes: int, swallow_s: float) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(int(upstream_url.rsplit(":", 1)[1]), pass_bytes, swallow_s)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()


@pytest.fixture
def fake_riva() -> Any:
    with running_fake_riva() as server:
        yield server


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
