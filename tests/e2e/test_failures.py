"""What a client sees when Riva or the client misbehaves, and that nothing is left behind."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from fake_riva import FakeRiva
from service.settings import Settings
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    following,
    read_events,
    running_gateway,
    stream_audio,
    wait_until,
)

SCRIPT = {"fake.transcript": "one two three four five six seven eight", "fake.ms_per_word": "100"}


async def test_client_dropping_its_socket_cancels_the_riva_call_and_frees_the_thread(
    gateway: Gateway, fake_riva: FakeRiva
) -> None:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.3, end=False)
        await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 1)
        busy = gateway_limiter(gateway).borrowed_tokens
        assert busy == 1
        await ws.aclose()  # gone without an end message
    await wait_until(lambda: fake_riva.stats.snapshot()["active"] == 0)
    assert fake_riva.stats.snapshot()["cancelled"] == 1, fake_riva.stats.snapshot()
    assert fake_riva.stats.snapshot()["active"] == 0
    await wait_until(lambda: gateway_limiter(gateway).borrowed_tokens == 0)
    assert events.events[-1].data == {"reason": "client_gone"}


def gateway_limiter(gateway: Gateway) -> trio.CapacityLimiter:
    """The Riva stream limiter of the gateway under test (observed, not mocked)."""
    limiter: trio.CapacityLimiter = gateway.app.extensions["reserve.registry"].runtime.transport.limiter
    return limiter


async def test_riva_unreachable_gives_an_error_event_and_close_code_quickly() -> None:
    settings = Settings(riva_uri="127.0.0.1:9", finish_timeout_s=5)  # nothing listens on port 9
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session()
        with trio.fail_after(5):
            events, (code, reason, frames) = await stream_while_reading(gateway, session, seconds=0.2, end=False)
    assert (code, reason) == (1011, "upstream_unavailable")
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "upstream_unavailable"
    assert events.names[-2:] == ["error", "end"]
    assert events.events[-2].data["code"] == "upstream_unavailable"
    assert events.events[-1].data == {"reason": "error"}


async def test_riva_invalid_argument_reaches_the_client_as_an_actionable_error(gateway: Gateway) -> None:
    # an unknown language is refused at creation now (test_operations); Riva may still refuse the stream
    session = await gateway.create_session(custom_configuration={"fake.refuse": "INVALID_ARGUMENT"})
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=0.1, end=False)
        code, reason, _ = await close_reason(ws)
    assert (code, reason) == (4422, "invalid_config")
    error = events.events[-2].data
    assert error["code"] == "invalid_config" and error["grpc_code"] == "INVALID_ARGUMENT"
    assert "refused with INVALID_ARGUMENT" in error["message"]
    state = (await gateway.http.get(f"/v1/sessions/{session['id']}", params={"token": session["token"]})).json()
    assert state["state"] == "failed"


async def test_riva_refusing_mid_stream_while_audio_flows_reports_its_own_code(gateway: Gateway) -> None:
    # audio sent as fast as the socket takes it keeps gRPC writes in flight when Riva ends the
    # call; its status (not the failed write's) is what the client must see
    session = await gateway.create_session(
        custom_configuration={"fake.fail_after_chunks": "5", "fake.fail_code": "INVALID_ARGUMENT"}
    )
    async with following(gateway, session) as (ws, events):
        try:
            await stream_audio(ws, seconds=3.0, end=False)
        except ConnectionClosed as closed:  # the gateway may close before all of it is sent
            assert closed.reason is not None
            code, reason = closed.reason.code, closed.reason.reason
        else:
            code, reason, _ = await close_reason(ws)
    assert (code, reason) == (4422, "invalid_config")
    assert events.events[-2].data["grpc_code"] == "INVALID_ARGUMENT"
    assert "reconnecting" not in events.names  # a client fault is not retried


async def test_riva_ending_a_stream_early_while_audio_flows_is_not_a_failure(gateway: Gateway) -> None:
    # every stream ends after 5 chunks (as Riva may, e.g. at its longest stream), having answered;
    # the session opens the next one and goes on
    session = await gateway.create_session(custom_configuration={**SCRIPT, "fake.end_after_chunks": "5"})
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=3.0)
        code, _, _ = await close_reason(ws)
    assert code == 1000
    assert "error" not in events.names and "reconnecting" not in events.names
    assert events.events[-1].data == {"reason": "finished"}


@pytest.mark.modes("aio", "h2")  # grpc.aio's quirk; the threads transport takes ~10 s at this load
async def test_many_streams_ended_early_by_riva_at_once_are_none_of_them_failures(gateway: Gateway) -> None:
    # with many streams writing when Riva ends them, some write is always in flight at the end:
    # grpc.aio turned that write's refusal into INTERNAL and lost Riva's own status (OK), so
    # here 1-4 of 10 sessions saw a spurious reconnect
    outcomes: list[tuple[int, list[str]]] = []

    async def one() -> None:
        session = await gateway.create_session(custom_configuration={**SCRIPT, "fake.end_after_chunks": "5"})
        async with following(gateway, session) as (ws, events):
            await stream_audio(ws, seconds=3.0)
            code, _, _ = await close_reason(ws)
        outcomes.append((code, [name for name in events.names if name != "transcript"]))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert outcomes == [(1000, ["end"])] * 20


async def test_riva_failing_on_every_stream_fails_the_session_after_the_reconnect_deadline(gateway: Gateway) -> None:
    session = await gateway.create_session(
        custom_configuration={**SCRIPT, "fake.fail_after_chunks": "3", "fake.fail_code": "INTERNAL"}
    )
    async with following(gateway, session) as (ws, events):
        await stream_audio(ws, seconds=1.0, end=False)
        code, reason, _ = await close_reason(ws)
    assert (code, reason) == (1011, "upstream_error")
    assert events.names[-2:] == ["error", "end"]
    assert "reconnecting" in events.names and "reconnected" in events.names
    assert events.finals == []  # nothing was final yet; what was heard came as interims
    assert [t["text"] for t in events.transcripts][:3] == ["one", "one two", "one two three"]


async def test_riva_silent_after_end_of_audio_times_out(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, finish_timeout_s=0.5)
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(custom_configuration={**SCRIPT, "fake.delay_ms": "3000"})
        async with following(gateway, session) as (ws, events):
            await stream_audio(ws, seconds=0.3)
            code, reason, _ = await close_reason(ws)
    assert (code, reason) == (1011, "upstream_timeout")
    assert events.events[-2].data["code"] == "upstream_timeout"


async def test_a_bug_in_one_session_ends_it_with_a_typed_error_and_the_gateway_serves_on(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect injected where a session's stream is counted on its Riva target (the target
    pool's OverflowError once crashed sessions there): its client gets ``error`` ``internal`` and
    ``end`` ``error``, never a bare end that reads like a shutdown, and the next session works."""
    targets = gateway.app.extensions["reserve.registry"].runtime.targets

    def broken(target: object) -> None:
        raise OverflowError("int too large to convert to float")

    with monkeypatch.context() as patch:
        patch.setattr(targets, "opened", broken)
        session = await gateway.create_session(custom_configuration=SCRIPT)
        with trio.fail_after(10):
            events, (code, reason, _) = await stream_while_reading(gateway, session, seconds=0.2, end=False)
    assert (code, reason) == (1011, "internal")
    assert [(e.event, e.data.get("code", e.data.get("reason"))) for e in events.events[-2:]] == [
        ("error", "internal"),
        ("end", "error"),
    ]
    after = await gateway.create_session(custom_configuration=SCRIPT)
    with trio.fail_after(10):
        healthy, (code, _, _) = await stream_while_reading(gateway, after, seconds=0.3, end=True)
    assert code == 1000 and healthy.events[-1].data == {"reason": "finished"}


async def stream_while_reading(
    gateway: Gateway, session: dict[str, Any], *, seconds: float, end: bool
) -> tuple[EventCollector, tuple[int, str, list[Any]]]:
    """Audio into the session while its events are read; the events, and how the socket closed."""
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            await stream_audio(ws, seconds=seconds, end=end)
            closed = await close_reason(ws)
    return events, closed
