"""Several Riva targets: streams spread over them, and a session moves when one goes down."""

from __future__ import annotations

import trio

from service.settings import Settings
from tests.e2e.test_reliability import CHUNK, assert_exact_transcript, content_config, speech_audio, stream
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    read_events,
    running_fake_riva,
    running_gateway,
    wait_until,
)


async def test_new_streams_spread_across_targets() -> None:
    with running_fake_riva() as a, running_fake_riva() as b:
        async with running_gateway(Settings(riva_uri=f"{a.target},{b.target}")) as gateway:
            sessions = [await gateway.create_session(**content_config()) for _ in range(4)]
            async with trio.open_nursery() as nursery:
                for session in sessions:
                    nursery.start_soon(_stream_all, gateway, session)
        assert a.stats.snapshot()["started"] == 2 and b.stats.snapshot()["started"] == 2


async def _stream_all(gateway: Gateway, session: dict[str, str]) -> None:
    async with audio_socket(gateway, session) as ws:
        await ws.send_message(bytes(CHUNK))
        await trio.sleep(0.2)  # all four streams are open at once
        await ws.send_message('{"type": "end"}')
        assert (await close_reason(ws))[0] == 1000


async def test_a_session_moves_to_another_target_when_its_own_goes_down() -> None:
    with running_fake_riva() as a, running_fake_riva() as b:
        settings = Settings(riva_uri=f"{a.target},{b.target}", riva_reconnect_deadline_s=10)
        async with running_gateway(settings) as gateway:
            session = await gateway.create_session(**content_config())
            events = EventCollector()
            audio = speech_audio()
            async with trio.open_nursery() as nursery:
                await nursery.start(read_events, gateway, session, events)
                async with audio_socket(gateway, session) as ws:
                    await stream(ws, audio[: 10 * CHUNK], end=False)
                    await wait_until(lambda: "one two" in events.finals)
                    first, other = (a, b) if a.stats.snapshot()["active"] else (b, a)
                    await trio.to_thread.run_sync(first.stop, 0)  # that Riva goes away mid-utterance
                    await stream(ws, audio[10 * CHUNK :])
                    assert (await close_reason(ws))[0] == 1000
            assert other.stats.snapshot()["completed"] == 1
            second = await gateway.create_session(**content_config())  # new streams avoid the dead one
            async with audio_socket(gateway, second) as ws:
                await stream(ws, audio[: 3 * CHUNK])
                assert (await close_reason(ws))[0] == 1000
            assert other.stats.snapshot()["completed"] == 2
    assert_exact_transcript(events)
    assert "reconnecting" in events.names
