"""What only the h2 transport (gRPC spoken by trio over HTTP/2) has to get right itself:
Riva's per-connection stream limit, and peers that are not, or no longer, HTTP/2."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import pytest
import trio

from service.settings import Settings
from tests.harness import close_reason, following, running_fake_riva, running_gateway, stream_audio

pytestmark = pytest.mark.modes("h2")

SCRIPT = {"fake.transcript": "one two three", "fake.ms_per_word": "100"}


async def test_a_riva_that_limits_streams_per_connection_gets_more_connections(settings: Settings) -> None:
    """grpc servers may set SETTINGS_MAX_CONCURRENT_STREAMS; streams past it must neither fail
    nor reconnect: the transport opens another connection."""
    with running_fake_riva(http2_max_streams=2) as riva:
        limited = settings.model_copy(update={"riva_uri": riva.target})
        async with running_gateway(limited) as gateway:
            outcomes: list[tuple[list[str], list[str]]] = []

            async def one() -> None:
                session = await gateway.create_session(custom_configuration=SCRIPT)
                async with following(gateway, session) as (ws, events):
                    await stream_audio(ws, seconds=1.0)
                outcomes.append((events.finals, events.names))

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
        assert riva.stats.snapshot()["started"] == 5
    for finals, names in outcomes:
        assert finals == ["one two three"]
        assert "reconnecting" not in names and names[-1] == "end"


async def _serve_tcp(handler: Callable[[trio.SocketStream], Awaitable[None]], nursery: trio.Nursery) -> str:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"127.0.0.1:{port}"


async def _silent(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()  # accepts, then never says a word


async def _not_http2(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
    await stream.aclose()


@pytest.mark.parametrize(
    ("peer", "code", "words"),
    [(_silent, "upstream_timeout", "did not answer"), (_not_http2, "upstream_unavailable", "HTTP/2")],
    ids=["silent", "not-http2"],
)
async def test_a_peer_that_does_not_speak_http2_fails_the_session_in_time_with_a_clear_error(
    settings: Settings, peer: Callable[[trio.SocketStream], Awaitable[None]], code: str, words: str
) -> None:
    async with trio.open_nursery() as servers:
        uri = await _serve_tcp(peer, servers)
        broken = settings.model_copy(
            update={"riva_uri": uri, "riva_connect_timeout_s": 0.5, "riva_start_deadline_s": 1.0}
        )
        with trio.fail_after(15):
            async with running_gateway(broken) as gateway:
                response = await gateway.http.post("/v1/sessions", json={"custom_configuration": SCRIPT})
                if response.status_code == 201:  # refused when the audio comes
                    session = response.json()
                    async with following(gateway, session) as (ws, events):
                        await stream_audio(ws, seconds=0.3, end=False)
                        close, _, frames = await close_reason(ws)
                    assert close == 1011 and events.names[-2:] == ["error", "end"]
                    error = frames[-1]
                else:
                    assert response.status_code == 503
                    error = response.json()["error"]
        servers.cancel_scope.cancel()
    assert error["code"] == code and words in error["message"], error
