"""The realtime adapters' pure parts: deltas when Riva revises, turns, events, WAV headers, formats."""

from __future__ import annotations

import base64
import io
import wave

import pytest

from service.realtime.messages import EventError, decode_audio, parse_client_event
from service.realtime.nvidia import parse_custom_configuration
from service.realtime.turns import Turns, delta
from service.realtime.wav import parse_wav_header
from service.transcription import formats


def interim(text: str, processed: float = 0.0) -> dict[str, object]:
    return {"is_final": False, "text": text, "audio_processed": processed}


def final(text: str, processed: float, words: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"is_final": True, "text": text, "audio_processed": processed, **({"words": words} if words else {})}


def deltas(events: list[dict[str, object]]) -> list[object]:
    return [e["delta"] for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]


def test_a_delta_extends_what_was_sent_at_a_word_boundary() -> None:
    assert delta("", "hello") == "hello"
    assert delta("hello", "hello there") == " there"
    assert delta("hello there", "hello there") is None  # nothing new
    assert delta("hello", "hellos") is None  # a revised word is not extended letter by letter
    assert delta("hello there", "yellow there") is None  # a revision: wait


def test_revised_interims_pause_deltas_and_the_final_is_authoritative() -> None:
    turns = Turns("ga", manual=False)
    sent = []
    for text in ["hello", "hello there", "yellow there", "hello there general"]:
        sent += deltas(turns.transcript(interim(text)))
    assert sent == ["hello", " there", " general"]  # the revision sent nothing; the recovery went on
    out = turns.transcript(final("yellow there general kenobi", 1.0))
    assert deltas(out) == []  # the final revised sent words: no delta can fix that
    completed = [e for e in out if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert [c["transcript"] for c in completed] == ["yellow there general kenobi"]
    assert [e["type"] for e in out] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]


def test_manual_turns_gather_finals_until_the_commit_is_flushed() -> None:
    turns = Turns("ga", manual=True)
    assert turns.transcript(final("one two", 0.4))[0]["delta"] == "one two"
    assert deltas(turns.transcript(interim("three", 0.6))) == [" three"]
    announced = turns.commit()
    assert [e["type"] for e in announced] == ["input_audio_buffer.committed", "conversation.item.added"]
    assert deltas(turns.transcript(final("three four", 0.8))) == [" four"]
    done = turns.flushed()
    completed = done[0]
    assert completed["transcript"] == "one two three four"
    assert completed["item_id"] == announced[0]["item_id"]
    assert completed["usage"] == {"type": "duration", "seconds": 0.8}
    assert turns.flushed() == []  # nothing else was committed


def test_clear_drops_the_uncommitted_turn() -> None:
    turns = Turns("ga", manual=True)
    turns.transcript(interim("noise", 0.2))
    assert [e["type"] for e in turns.clear()] == ["input_audio_buffer.cleared"]
    assert turns.transcript(final("noise here", 0.4)) == []  # the cleared audio's final: dropped
    assert turns.flushed() == []
    assert deltas(turns.transcript(interim("hello", 0.6))) == ["hello"]  # the next turn starts clean
    turns.commit()
    turns.transcript(final("hello", 0.8))
    assert turns.flushed()[0]["transcript"] == "hello"


def test_nvidia_turns_end_with_the_whole_transcript() -> None:
    turns = Turns("nvidia", manual=False)
    first = turns.transcript(final("one two", 0.4, [{"word": "one", "start_ms": 0, "end_ms": 200}]))
    turns.transcript(final("three", 0.6))
    assert [e["type"] for e in first] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert first[1]["is_last_result"] is False
    assert first[1]["words_info"]["words"] == [
        {"word": "one", "start_time": 0, "end_time": 200, "confidence": 0.0, "speaker_tag": 0}
    ]
    last = turns.ended()[0]
    assert (last["transcript"], last["is_last_result"]) == ("one two three", True)


def test_client_events_are_validated() -> None:
    assert parse_client_event('{"type": "x"}', max_bytes=100) == {"type": "x"}
    cases: list[tuple[str | bytes | None, str]] = [
        ("[1]", "invalid_event"),
        ("{", "invalid_json"),
        ('{"type": 1}', "invalid_event"),
        (None, "invalid_event"),  # Quart's empty frame
        (b"{}", "invalid_event"),
    ]
    for bad, code in cases:
        with pytest.raises(EventError) as caught:
            parse_client_event(bad, max_bytes=100)
        assert caught.value.code == code
    with pytest.raises(EventError) as too_big:
        parse_client_event("x" * 101, max_bytes=100)
    assert too_big.value.code == "event_too_large"
    assert decode_audio({"audio": base64.b64encode(b"abcd").decode()}, max_bytes=4) == b"abcd"
    with pytest.raises(EventError) as large:
        decode_audio({"audio": base64.b64encode(bytes(9)).decode()}, max_bytes=4)
    assert large.value.code == "audio_too_large"


def test_custom_configuration_from_nvidias_client_string() -> None:
    assert parse_custom_configuration("a:1, b:two", None) == {"a": "1", "b": "two"}
    assert parse_custom_configuration({"a": 1}, None) == {"a": "1"}
    with pytest.raises(EventError):
        parse_custom_configuration("novalue", None)


def test_wav_header_in_the_first_chunk() -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(bytes(10))
    data = out.getvalue()
    header = parse_wav_header(data)
    assert header is not None and (header.encoding, header.sample_rate_hertz, header.data_offset) == (
        "LINEAR_PCM",
        22050,
        44,
    )
    assert parse_wav_header(data[:20]) is None  # wait for more
    with pytest.raises(EventError):
        parse_wav_header(b"OggS" + bytes(40))


def test_subtitles_from_finals() -> None:
    transcript = formats.Transcript()
    transcript.add_final(final("hi", 1.5))
    transcript.add_final(final("", 2.0))  # silence: no segment, but time moves on
    transcript.add_final(final("there", 3661.25))
    assert formats.srt(transcript) == (
        "1\n00:00:00,000 --> 00:00:01,500\nhi\n\n2\n00:00:02,000 --> 01:01:01,250\nthere\n\n"
    )
    assert formats.vtt(formats.Transcript()) == "WEBVTT\n\n"
