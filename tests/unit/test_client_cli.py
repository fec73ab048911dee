"""service.client's parts without a server: reading audio, framing, pacing, resending, output, error lines.

No server here: the client against a running gateway is tested end to end elsewhere.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trio

from service.client.api import Options, Session, describe_http_error, session_settings, websocket_url
from service.client.audio import (
    AudioFormat,
    RawAudio,
    chunk_bytes,
    iter_chunks,
    open_audio_path,
)
from service.client.audio_socket import AudioSender, describe_close
from service.client.cli import main
from service.client.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ClientError, UnsupportedAudioError
from service.client.events import SessionResult, handle_event
from service.client.render import JsonPrinter, TextPrinter, fit_line, format_event_json, parse_event_id

DATA = Path(__file__).resolve().parent.parent / "data"


def wav_file(path: Path, *, channels: int = 1, rate: int = 16000, width: int = 2, frames: bytes = b"") -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return path


def read_all(path: Path, **kwargs: Any) -> bytes:
    audio = open_audio_path(str(path), **kwargs)
    try:
        data = b""
        while chunk := audio.read(3200):
            data += chunk
        return data
    finally:
        audio.close()


# -- reading audio ----------------------------------------------------------------------------


def test_a_16k_mono_wav_comes_out_unchanged() -> None:
    with wave.open(str(DATA / "find_keys.wav")) as wav:
        pcm = wav.readframes(wav.getnframes())
    assert read_all(DATA / "find_keys.wav") == pcm


def test_stereo_8bit_and_24bit_wavs_are_mixed_down_and_resampled(tmp_path: Path) -> None:
    """Every kind of WAV decodes to 16 kHz mono 16-bit: 1 s in, 32000 bytes out."""
    tone = np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100) * 0.5
    left = (tone * 2**23).astype("<i4")
    stereo24 = np.stack([left, left], axis=1).reshape(-1)
    packed = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in stereo24)
    data = read_all(wav_file(tmp_path / "s24.wav", channels=2, rate=44100, width=3, frames=packed))
    assert abs(len(data) - 32000) <= 64
    samples = np.frombuffer(data, "<i2").astype(float) / 32768
    assert 0.4 < np.abs(samples).max() < 0.6, "both channels averaged, not summed or dropped"
    eight = read_all(wav_file(tmp_path / "u8.wav", rate=8000, width=1, frames=bytes([128]) * 8000))
    assert abs(len(eight) - 32000) <= 64


def test_the_session_rate_is_what_the_audio_is_resampled_to(tmp_path: Path) -> None:
    assert abs(len(read_all(DATA / "find_keys.wav", sample_rate=8000)) - 98562 // 2) <= 64


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"just some text, not audio\n" * 20, "not an audio file"),
        (b"", "is empty"),
    ],
)
def test_a_file_that_is_not_audio_is_refused_in_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(UnsupportedAudioError) as caught:
        open_audio_path(str(path))
    assert words in caught.value.message and "\n" not in caught.value.message
    assert caught.value.exit_code == EXIT_USAGE


def test_raw_input_is_sent_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audio.ulaw"
    path.write_bytes(bytes(range(200)))
    audio = open_audio_path(str(path), raw=True, encoding="MULAW", sample_rate=8000)
    try:
        assert audio.format == AudioFormat("MULAW", 8000)
        assert audio.read(150) + audio.read(150) == bytes(range(200))
    finally:
        audio.close()


# -- framing and pacing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "chunk_ms", "expected"),
    [
        (AudioFormat("LINEAR_PCM", 16000), 100, 3200),
        (AudioFormat("MULAW", 8000), 100, 800),
        (AudioFormat("ALAW", 8000), 100, 800),
        (AudioFormat("LINEAR_PCM", 8000), 100, 1600),
        (AudioFormat("LINEAR_PCM", 44100), 100, 8820),
        (AudioFormat("LINEAR_PCM", 16000), 20, 640),
        (AudioFormat("LINEAR_PCM", 22050), 10, 440),  # whole samples: 220.5 -> 220
    ],
)
def test_chunk_bytes(fmt: AudioFormat, chunk_ms: int, expected: int) -> None:
    assert chunk_bytes(fmt, chunk_ms) == expected


def test_iter_chunks_splits_into_frames() -> None:
    data = bytes(range(256)) * 30  # 7680 bytes: 2 full frames of 3200 and 1280 left
    frames = list(iter_chunks(data, 3200))
    assert [len(f) for f in frames] == [3200, 3200, 1280]
    assert b"".join(frames) == data
    assert [len(f) for f in iter_chunks(bytes(2400), 800)] == [800, 800, 800]


class RecordingSocket:
    """Stands in for trio-websocket's connection: remembers what was sent and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes | str]] = []

    async def send_message(self, message: bytes | str) -> None:
        self.sent.append((trio.current_time(), message))
        await trio.lowlevel.checkpoint()


SESSION = Session("id", "token", "/v1/sessions/id/audio", "/v1/sessions/id/events", {})


async def _send(audio: RawAudio, rate: str, stop: trio.Event | None = None) -> tuple[RecordingSocket, SessionResult]:
    ws = RecordingSocket()
    result = SessionResult()
    options = Options(rate=rate)  # type: ignore[arg-type]
    sender = AudioSender(options, SESSION, audio, result, trio.Event() if stop is None else stop)
    await sender.send_input(ws)  # type: ignore[arg-type]
    return ws, result


async def test_pcm_goes_out_in_100ms_frames_as_fast_as_accepted(autojump_clock: trio.abc.Clock) -> None:
    audio = RawAudio.from_bytes(bytes(32000 + 100))  # 1 s and a bit
    ws, result = await _send(audio, "fast")
    assert [len(m) for _, m in ws.sent] == [3200] * 10 + [100]
    assert result.audio_bytes == 32100
    assert ws.sent[-1][0] - ws.sent[0][0] < 0.01


async def test_realtime_pace_sends_a_frame_every_100ms(autojump_clock: trio.abc.Clock) -> None:
    audio = RawAudio.from_bytes(bytes(8000), AudioFormat("MULAW", 8000))  # 1 s of mu-law
    ws, _ = await _send(audio, "realtime")
    assert [len(m) for _, m in ws.sent] == [800] * 10
    times = [t - ws.sent[0][0] for t, _ in ws.sent]
    assert times == pytest.approx([i / 10 for i in range(10)], abs=1e-6)


async def test_a_trailing_half_sample_is_dropped(autojump_clock: trio.abc.Clock) -> None:
    ws, _ = await _send(RawAudio.from_bytes(bytes(3201)), "fast")
    assert [len(m) for _, m in ws.sent] == [3200]


async def test_stop_ends_the_audio_between_frames(autojump_clock: trio.abc.Clock) -> None:
    stop = trio.Event()
    audio = RawAudio.from_bytes(bytes(32000 * 10))
    async with trio.open_nursery() as nursery:

        async def press_stop() -> None:
            await trio.sleep(0.35)
            stop.set()

        nursery.start_soon(press_stop)
        ws, _ = await _send(audio, "realtime", stop)
    assert len(ws.sent) == 4, "frames at 0, 0.1, 0.2, 0.3 s; then stopped"


# -- output -----------------------------------------------------------------------------------


def test_json_line_format() -> None:
    line = format_event_json("transcript", 7, {"seq": 3, "is_final": True, "text": "héllo wörld"})
    assert "\n" not in line
    assert json.loads(line) == {
        "event": "transcript",
        "id": 7,
        "data": {"seq": 3, "is_final": True, "text": "héllo wörld"},
    }
    assert line == '{"event":"transcript","id":7,"data":{"seq":3,"is_final":true,"text":"héllo wörld"}}'


def test_event_ids_are_numbers_when_numeric() -> None:
    assert parse_event_id("12") == 12
    assert parse_event_id("") is None
    assert parse_event_id("abc") == "abc"


def _feed(printer: JsonPrinter | TextPrinter, events: list[tuple[str, int, dict[str, Any]]]) -> SessionResult:
    result = SessionResult()
    for name, event_id, data in events:
        if handle_event(name, event_id, data, result, printer):
            break
    printer.close()
    return result


EVENTS: list[tuple[str, int, dict[str, Any]]] = [
    ("transcript", 1, {"seq": 1, "is_final": False, "text": "hello"}),
    ("transcript", 2, {"seq": 2, "is_final": True, "text": "hello world"}),
    ("transcript", 3, {"seq": 3, "is_final": False, "text": "good"}),
    ("transcript", 4, {"seq": 4, "is_final": True, "text": "good morning"}),
    ("end", 5, {"reason": "finished"}),
]


def test_json_mode_prints_every_event_as_one_object_per_line() -> None:
    out = io.StringIO()
    result = _feed(JsonPrinter(out), EVENTS)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [{"event": n, "id": i, "data": d} for n, i, d in EVENTS]
    assert result.finals == ["hello world", "good morning"]
    assert result.end_reason == "finished"


def test_text_mode_on_a_pipe_prints_finals_only() -> None:
    out = io.StringIO()
    _feed(TextPrinter(out, tty=False), EVENTS)
    assert out.getvalue() == "hello world\ngood morning\n"


def test_text_mode_on_a_terminal_redraws_the_interim_in_place() -> None:
    out = io.StringIO()
    _feed(TextPrinter(out, tty=True, width=lambda: 80), EVENTS)
    clear = "\r\x1b[2K"
    assert out.getvalue() == f"{clear}hello{clear}hello world\n{clear}good{clear}good morning\n"


def test_a_long_interim_shows_its_end_within_the_terminal_width() -> None:
    assert fit_line("short", 80) == "short"
    line = fit_line("word " * 40 + "last", 20)
    assert len(line) == 19 and line.startswith("…") and line.endswith("word last")


def test_error_event_is_recorded_as_the_failure() -> None:
    out = io.StringIO()
    events = [
        ("error", 1, {"code": "upstream_error", "message": "Riva failed: boom"}),
        ("end", 2, {"reason": "error"}),
    ]
    result = _feed(JsonPrinter(out), events)
    assert result.failure is not None
    assert result.failure.message == "Reserve reported an error (upstream_error): Riva failed: boom"
    assert len(out.getvalue().splitlines()) == 2


# -- error lines -----------------------------------------------------------------------------


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return httpx.Response(status, content=content, headers={"Content-Type": "application/json", **(headers or {})})


def test_http_errors_carry_the_servers_message() -> None:
    response = _response(422, {"error": {"code": "invalid_config", "message": "sample_rate_hertz: too low"}})
    assert describe_http_error("creating the session", response) == (
        "creating the session failed (HTTP 422 invalid_config): sample_rate_hertz: too low"
    )


@pytest.mark.parametrize(("status", "hint"), [(401, "pass --token"), (403, "API key was refused")])
def test_auth_errors_say_what_to_do(status: int, hint: str) -> None:
    response = _response(status, {"error": {"code": "x", "message": "no"}})
    assert hint in describe_http_error("creating the session", response)


def test_busy_server_says_when_to_retry() -> None:
    response = _response(503, {"error": {"code": "overloaded", "message": "too many sessions"}}, {"Retry-After": "5"})
    assert describe_http_error("creating the session", response).endswith("too many sessions; retry after 5 s")


def test_non_json_error_body_is_shown_on_one_line() -> None:
    response = httpx.Response(502, content=b"<html>\n<body>Bad Gateway</body>\n</html>")
    assert describe_http_error("x", response) == "x failed (HTTP 502): <html> <body>Bad Gateway</body> </html>"


def test_close_codes_in_words() -> None:
    assert describe_close(1000, "session finished", []) is None
    line = describe_close(4422, "invalid_config", ["invalid_config: bad rate"])
    assert line == "the audio WebSocket was closed by Reserve (4422 invalid_config): invalid_config: bad rate"
    assert describe_close(1006, None, []) == "the audio WebSocket was closed by Reserve (1006)"


def test_websocket_url_and_session_settings() -> None:
    assert websocket_url("http://127.0.0.1:8000/", "/v1/sessions/a/audio") == "ws://127.0.0.1:8000/v1/sessions/a/audio"
    assert websocket_url("https://x.example/", "/v1/sessions/a/audio") == "wss://x.example/v1/sessions/a/audio"
    assert session_settings(AudioFormat("MULAW", 8000), interim=False) == {
        "encoding": "MULAW",
        "sample_rate_hertz": 8000,
        "language_code": "en-US",
        "interim_results": False,
        "word_time_offsets": True,
    }


# -- main -------------------------------------------------------------------------------------


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert main(["x.wav", "--rate", "slow"]) == EXIT_USAGE
    assert main(["x.wav", "--chunk-ms", "5000"]) == EXIT_USAGE
    assert main(["--help"]) == EXIT_OK
    capsys.readouterr()


def test_unsupported_file_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all\n" * 10)
    assert main([str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "not an audio file" in captured.err and "Traceback" not in captured.err
    assert main([str(tmp_path / "missing.wav")]) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err
    assert main([str(path), "--encoding", "MULAW"]) == EXIT_USAGE
    assert "--encoding is for --raw input" in capsys.readouterr().err


def test_unreachable_server_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = wav_file(tmp_path / "a.wav", frames=bytes(3200))
    assert main([str(path), "--url", f"http://127.0.0.1:{port}"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith(f"reserve: cannot reach Reserve at http://127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_client_error_keeps_its_exit_code() -> None:
    assert ClientError("x").exit_code == EXIT_FAILURE
    assert UnsupportedAudioError("x").exit_code == EXIT_USAGE


def test_a_truncated_file_sends_what_decodes_and_says_where_it_stopped(tmp_path: Path) -> None:
    flac = tmp_path / "speech.flac"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(DATA / "find_keys.wav"), str(flac)], check=True
    )
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    audio = open_audio_path(str(cut))
    try:
        data = b""
        while chunk := audio.read(3200):
            data += chunk
        assert 0 < len(data) < 98562
        stopped = f"{cut}: decoding stopped after {len(data) / 32000:.1f} s of audio"
        assert audio.warnings == [f"{stopped}: Invalid data found when processing input"]
    finally:
        audio.close()
