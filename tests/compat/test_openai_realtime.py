"""OpenAI's SDK, unchanged, transcribing through ``/v1/realtime`` (GA and beta dialects)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from openai import OpenAI

from tests.compat.conftest import gateway_settings, in_thread, scripted_gateway, scripted_riva
from tests.harness import TEST_API_KEY, Gateway, running_gateway

PCM24_CHUNK = 4800  # 100 ms at 24 kHz, 16-bit
SCRIPT = "hello there|general kenobi"  # 200 ms of audio per word
MANUAL = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": None,
        }
    },
}
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def client_for(gateway: Gateway) -> OpenAI:
    return OpenAI(api_key=TEST_API_KEY, base_url=f"{gateway.base_url}/v1", max_retries=0)


def audio_events(seconds: float) -> list[str]:
    chunk = base64.b64encode(bytes(PCM24_CHUNK)).decode()
    return [chunk] * round(seconds * 10)


def ga_transcribe(gateway: Gateway, session: dict[str, Any], seconds: float, *, completions: int) -> list[Any]:
    events: list[Any] = []
    with client_for(gateway).realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session=session)  # type: ignore[arg-type]
        for audio in audio_events(seconds):
            connection.input_audio_buffer.append(audio=audio)
        if session["audio"]["input"].get("turn_detection", "vad") is None:
            connection.input_audio_buffer.commit()
        for event in connection:
            events.append(event)
            if sum(e.type == COMPLETED for e in events) == completions:
                break
    return events


async def test_ga_manual_commit_is_one_turn(caplog: pytest.LogCaptureFixture) -> None:
    async with scripted_gateway(SCRIPT) as gateway:
        events = await in_thread(lambda: ga_transcribe(gateway, MANUAL, 0.8, completions=1))
    assert "kenobi" not in caplog.text and TEST_API_KEY not in caplog.text  # nothing private in the logs
    assert "realtime connection (openai) streams into session" in caplog.text
    types = [e.type for e in events]
    assert types[:2] == ["session.created", "session.updated"]
    assert events[1].session.audio.input.turn_detection is None
    completed = events[-1]
    assert completed.transcript == "hello there general kenobi"
    assert completed.usage.type == "duration" and completed.usage.seconds == 0.8
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    added = next(e for e in events if e.type == "conversation.item.added")
    assert committed.item_id == added.item.id == completed.item_id
    deltas = [e for e in events if e.type == DELTA]
    assert "".join(d.delta for d in deltas) == "hello there general kenobi"
    assert {d.item_id for d in deltas} == {completed.item_id}
    assert "input_audio_buffer.speech_started" not in types  # no VAD events with turn detection off


async def test_ga_server_vad_turns_are_riva_finals() -> None:
    session = {**MANUAL, "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}
    async with scripted_gateway(SCRIPT) as gateway:
        events = await in_thread(lambda: ga_transcribe(gateway, session, 0.8, completions=2))
    assert events[1].session.audio.input.turn_detection.type == "server_vad"
    completed = [e for e in events if e.type == COMPLETED]
    assert [c.transcript for c in completed] == ["hello there", "general kenobi"]
    first, second = completed
    turn = [e.type for e in events if getattr(e, "item_id", None) == first.item_id]
    assert turn.index("input_audio_buffer.speech_started") < turn.index("input_audio_buffer.speech_stopped")
    assert "conversation.item.done" in [e.type for e in events]
    added = [e for e in events if e.type == "conversation.item.added"]
    assert [a.item.id for a in added] == [first.item_id, second.item_id]
    assert added[1].previous_item_id == first.item_id


async def test_deltas_pause_while_riva_revises_and_completed_is_the_final() -> None:
    """fake_riva's tagged recognizer answers each chunk with a hypothesis naming that chunk
    (``t0``, ``t1``...): every interim revises the last, and every fifth chunk is a final."""
    with scripted_riva("tagged", **{"fake.final_every": "5"}) as riva:
        async with running_gateway(gateway_settings(riva)) as gateway:

            def run() -> list[Any]:
                events: list[Any] = []
                with client_for(gateway).realtime.connect(extra_query={"intent": "transcription"}) as connection:
                    connection.session.update(session={"type": "transcription"})
                    for n in range(5):
                        chunk = n.to_bytes(8, "little") + bytes(PCM24_CHUNK - 8)
                        connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                    for event in connection:
                        events.append(event)
                        if event.type == COMPLETED:
                            return events
                return events

            events = await in_thread(run)
    assert [e.delta for e in events if e.type == DELTA] == ["t0"]  # t1, t2, t3 revised it: nothing more sent
    assert events[-1].transcript == "t4"


def beta_transcribe(gateway: Gateway, api_key: str) -> list[Any]:
    events: list[Any] = []
    client = OpenAI(  # the beta client assumes wss:// unless told the socket's base
        api_key=api_key, base_url=f"{gateway.base_url}/v1", websocket_base_url=f"{gateway.ws_base}/v1", max_retries=0
    )
    with client.beta.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as connection:
        connection.transcription_session.update(
            session={
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": None,  # type: ignore[typeddict-item]  # the API takes null: no turn detection
            }
        )
        for audio in audio_events(0.8):
            connection.input_audio_buffer.append(audio=audio)
        connection.input_audio_buffer.commit()
        for event in connection:
            events.append(event)
            if event.type == COMPLETED:
                break
    return events


async def test_beta_transcription_session_with_a_minted_secret() -> None:
    async with scripted_gateway(SCRIPT) as gateway:

        def mint() -> str:
            with client_for(gateway) as client:
                return client.beta.realtime.transcription_sessions.create(
                    input_audio_format="pcm16"
                ).client_secret.value

        secret = await in_thread(mint)
        events = await in_thread(lambda: beta_transcribe(gateway, secret))
    types = [e.type for e in events]
    assert types[:2] == ["transcription_session.created", "transcription_session.updated"]
    assert events[1].session.input_audio_format == "pcm16" and events[1].session.turn_detection is None
    assert "conversation.item.created" in types and "conversation.item.added" not in types
    assert events[-1].transcript == "hello there general kenobi"


async def test_ga_client_secret_opens_one_connection() -> None:
    async with scripted_gateway(SCRIPT) as gateway:

        def mint() -> Any:
            with client_for(gateway) as client:
                return client.realtime.client_secrets.create(
                    session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
                )

        secret = await in_thread(mint)
        keyed = OpenAI(api_key=secret.value, base_url=f"{gateway.base_url}/v1", max_retries=0)

        def connect_twice() -> list[Any]:
            firsts = []
            for _ in range(2):
                with keyed.realtime.connect(extra_query={"intent": "transcription"}) as connection:
                    firsts.append(connection.recv())
            return firsts

        first, second = await in_thread(connect_twice)
    assert secret.session.audio.input.turn_detection is None
    assert first.type == "session.created"
    assert second.type == "error" and second.error.code == "forbidden"  # single use
