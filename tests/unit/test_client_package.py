"""service.client as a library: its public names, the final transcript and its file formats,
the resend buffer, and the ``reserve`` command table."""

from __future__ import annotations

import json

import pytest

import service.client
from service.cli import COMMANDS
from service.cli import main as reserve_main
from service.client.render import render_transcript
from service.client.resend import SentAudio
from service.client.transcript import Transcript

PUBLIC = {
    "AudioFormat", "AudioInput", "ClientError", "Options", "RawAudio", "Result", "Transcript",
    "UnsupportedAudioError", "Word", "open_audio_path", "render_transcript", "transcribe",
    "transcribe_audio", "transcribe_file",
}  # fmt: skip


def test_the_public_names_are_exported_and_exist() -> None:
    assert set(service.client.__all__) == PUBLIC
    for name in service.client.__all__:
        assert getattr(service.client, name) is not None


def two_finals() -> Transcript:
    transcript = Transcript(session_id="s1", end_reason="finished", audio_seconds=4.0)
    words = [{"word": "Hello", "start_ms": 500, "end_ms": 900, "confidence": 0.9},
             {"word": "world.", "start_ms": 900, "end_ms": 1400, "confidence": 0.8}]  # fmt: skip
    transcript.add_final({"text": "Hello world.", "audio_processed": 1.6, "confidence": 0.85, "words": words})
    transcript.add_final({"text": "", "audio_processed": 2.0})  # an empty final is no result
    transcript.add_final({"text": "Bye.", "audio_processed": 3.25, "words": []})
    return transcript


def test_results_take_word_times_or_follow_the_previous_final() -> None:
    transcript = two_finals()
    assert transcript.text == "Hello world. Bye."
    first, second = transcript.results
    assert (first.start_s, first.end_s, first.confidence) == (0.5, 1.4, 0.85)
    assert [w.text for w in first.words] == ["Hello", "world."]
    assert (second.start_s, second.end_s) == (1.4, 3.25), "no words: from the previous end to audio_processed"


def test_text_json_srt_and_vtt() -> None:
    transcript = two_finals()
    assert render_transcript(transcript, "text") == "Hello world.\nBye.\n"
    as_json = json.loads(render_transcript(transcript, "json"))
    assert as_json["text"] == "Hello world. Bye." and as_json["session_id"] == "s1"
    assert as_json["results"][0]["words"][1] == {"word": "world.", "start_s": 0.9, "end_s": 1.4, "confidence": 0.8}
    assert render_transcript(transcript, "srt") == (
        "1\n00:00:00,500 --> 00:00:01,400\nHello world.\n\n2\n00:00:01,400 --> 00:00:03,250\nBye.\n"
    )
    assert render_transcript(transcript, "vtt") == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.400\nHello world.\n\n00:00:01.400 --> 00:00:03.250\nBye.\n"
    )


def test_a_long_result_is_split_into_cues_at_word_times() -> None:
    transcript = Transcript()
    words = [{"word": f"w{i}", "start_ms": i * 300, "end_ms": i * 300 + 250} for i in range(30)]
    transcript.add_final({"text": " ".join(str(w["word"]) for w in words), "audio_processed": 9.0, "words": words})
    cues = render_transcript(transcript, "vtt").split("\n\n")[1:]
    assert len(cues) == 3
    assert cues[0].splitlines() == ["00:00:00.000 --> 00:00:03.550", " ".join(f"w{i}" for i in range(12))]


def test_sent_audio_keeps_what_the_server_may_ask_for() -> None:
    sent = SentAudio(max_bytes=1000, align=2)
    for i in range(5):
        sent.append(bytes([i]) * 100)
    assert (sent.start, sent.end) == (0, 500)
    chunks, lost = sent.since(250)
    assert b"".join(chunks) == bytes([2]) * 50 + bytes([3]) * 100 + bytes([4]) * 100 and lost == 0
    sent.confirm(301)  # a final covered 301 bytes: whole samples only
    assert sent.start == 300
    assert sent.since(500) == ([], 0)
    chunks, lost = sent.since(200)
    assert lost == 100 and b"".join(chunks) == bytes([3]) * 100 + bytes([4]) * 100


def test_sent_audio_is_bounded() -> None:
    sent = SentAudio(max_bytes=300, align=2)
    for _ in range(10):
        sent.append(bytes(100))
    assert (sent.start, sent.end) == (700, 1000)
    assert sent.since(0)[1] == 700


def test_the_reserve_command_dispatches_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert COMMANDS["transcribe"] == "service.client.cli:main"
    assert reserve_main(["transcribe", "--help"]) == 0
    assert "usage: reserve transcribe" in capsys.readouterr().out
    assert reserve_main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reserve: unknown command 'nonsense'; usage: reserve {serve,transcribe}")
    assert reserve_main([]) == 2
