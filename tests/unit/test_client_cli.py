"""service.client's pure parts: WAV headers, framing, pacing, output formats, error lines.

No server here: the client against a running gateway is tested end to end elsewhere.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from service.client import (
    COMPRESSED_CHUNK_BYTES,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    AudioFormat,
    AudioInput,
    ClientError,
    JsonPrinter,
    Options,
    SessionResult,
    TextPrinter,
    UnsupportedAudioError,
    _handle_event,
    chunk_bytes,
    describe_close,
    describe_http_error,
    fit_line,
    format_event_json,
    iter_chunks,
    main,
    open_audio,
    parse_event_id,
    parse_wav_header,
    read_wav_header,
    send_audio,
    session_settings,
    websocket_url,
)

DATA = Path(__file__).resolve().parent.parent / "data"

PCM, FLOAT, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE


def wav_bytes(
    *,
    tag: int = PCM,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    data: bytes = b"",
    data_size: int | None = None,
    before_data: bytes = b"",
    sub_format: int | None = None,
) -> bytes:
    """A RIFF/WAVE file built by hand, so any header the client may meet can be tried."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    if sub_format is not None:  # WAVE_FORMAT_EXTENSIBLE: cbSize, valid bits, channel mask, GUID
        guid = struct.pack("<H", sub_format) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0x4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + before_data
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# -- WAV headers ------------------------------------------------------------------------------


def test_pcm16_wav_from_the_wave_module() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(bytes(6400))
    header = parse_wav_header(buffer.getvalue())
    assert header.format == AudioFormat("LINEAR_PCM", 16000)
    assert (header.channels, header.bits_per_sample, header.data_length) == (1, 16, 6400)


@pytest.mark.parametrize(
    ("tag", "rate", "encoding"),
    [(PCM, 8000, "LINEAR_PCM"), (PCM, 44100, "LINEAR_PCM"), (MULAW, 8000, "MULAW"), (ALAW, 8000, "ALAW")],
)
def test_wav_format_gives_encoding_and_sample_rate(tag: int, rate: int, encoding: str) -> None:
    bits = 16 if tag == PCM else 8
    header = parse_wav_header(wav_bytes(tag=tag, rate=rate, bits=bits, data=bytes(100)))
    assert header.format == AudioFormat(encoding, rate)
    assert header.data_length == 100


def test_extensible_wav_uses_its_sub_format() -> None:
    header = parse_wav_header(wav_bytes(tag=EXTENSIBLE, sub_format=PCM, data=bytes(10)))
    assert header.format.encoding == "LINEAR_PCM"
    mulaw = parse_wav_header(wav_bytes(tag=EXTENSIBLE, sub_format=MULAW, bits=8, rate=8000))
    assert mulaw.format == AudioFormat("MULAW", 8000)


def test_chunks_before_data_are_skipped_and_odd_sizes_padded() -> None:
    odd = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # 5 bytes + a pad byte
    stream = io.BytesIO(wav_bytes(data=b"\x01\x02\x03\x04", before_data=odd))
    header = read_wav_header(stream)
    assert header.data_length == 4
    assert stream.read() == b"\x01\x02\x03\x04", "the stream is left at the first sample"


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_streamed_wav_data_size_means_until_eof(size: int) -> None:
    assert parse_wav_header(wav_bytes(data_size=size)).data_length is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tag": FLOAT, "bits": 32}, "floating point"),
        ({"bits": 24}, "24-bit PCM"),
        ({"bits": 8}, "8-bit PCM"),
        ({"bits": 32}, "32-bit PCM"),
        ({"channels": 2}, "2 channels"),
        ({"tag": MULAW, "bits": 16}, "mu-law with 16 bits"),
        ({"tag": 0x0055, "bits": 0}, "MP3"),
        ({"tag": 0x0011, "bits": 4}, "IMA ADPCM"),
        ({"tag": EXTENSIBLE, "sub_format": FLOAT, "bits": 32}, "floating point"),
    ],
)
def test_unsupported_wav_formats_are_refused_in_words(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(UnsupportedAudioError) as caught:
        parse_wav_header(wav_bytes(**kwargs))
    assert words in caught.value.message
    assert caught.value.exit_code == EXIT_USAGE
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not a WAV file"),
        (b"RF64\xff\xff\xff\xffWAVE", "RF64"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk comes before the fmt chunk"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "truncated"),
    ],
)
def test_malformed_wav_files_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(UnsupportedAudioError, match=words):
        parse_wav_header(data)


def test_bundled_fixtures_parse() -> None:
    for path in sorted(DATA.glob("*.wav")):
        with path.open("rb") as file:
            audio = open_audio(file, path.name)
        assert audio.format.encoding in ("LINEAR_PCM", "MULAW", "ALAW"), path.name
        assert 8000 <= audio.format.sample_rate <= 48000, path.name
        assert audio.length is not None and audio.length > 0, path.name


# -- input sniffing -------------------------------------------------------------------------


def test_raw_input_takes_the_options_or_the_defaults() -> None:
    assert open_audio(io.BytesIO(bytes(10)), "x.raw").format == AudioFormat("LINEAR_PCM", 16000)
    audio = open_audio(io.BytesIO(bytes(10)), "stdin", encoding="MULAW", sample_rate=8000)
    assert audio.format == AudioFormat("MULAW", 8000)
    assert audio.pace_bytes_per_second == 8000
    assert audio.stream.read() == bytes(10), "sniffed bytes are put back"


def test_wav_header_wins_and_contradicting_options_are_refused() -> None:
    data = wav_bytes(tag=MULAW, bits=8, rate=8000, data=b"\xff" * 8)
    audio = open_audio(io.BytesIO(data), "call.wav")
    assert audio.format == AudioFormat("MULAW", 8000)
    assert audio.stream.read() == b"\xff" * 8, "only the audio is sent, not the header"
    with pytest.raises(UnsupportedAudioError, match="8000 Hz; --sample-rate 16000"):
        open_audio(io.BytesIO(data), "call.wav", sample_rate=16000)
    with pytest.raises(UnsupportedAudioError, match="--encoding LINEAR_PCM"):
        open_audio(io.BytesIO(data), "call.wav", encoding="LINEAR_PCM")


def test_wav_named_file_without_a_riff_header_is_refused() -> None:
    with pytest.raises(UnsupportedAudioError, match="not a WAV file"):
        open_audio(io.BytesIO(b"ID3\x03 an mp3 really"), "song.wav")


def test_flac_streaminfo_gives_rate_and_pace() -> None:
    # STREAMINFO: 16 kHz, mono, 16-bit, 32000 samples (2 s)
    packed = (16000 << 44) | (0 << 41) | (15 << 36) | 32000
    info = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + packed.to_bytes(8, "big") + b"\x00" * 16
    head = b"fLaC" + bytes([0x80]) + (34).to_bytes(3, "big") + info
    audio = open_audio(io.BytesIO(head + bytes(1000)), "a.flac", size=len(head) + 1000)
    assert audio.format == AudioFormat("FLAC", 16000)
    assert audio.pace_bytes_per_second == pytest.approx((len(head) + 1000) / 2)
    assert chunk_bytes(audio.format, 100) == COMPRESSED_CHUNK_BYTES


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


async def _send(audio: AudioInput, rate: str, stop: trio.Event | None = None) -> tuple[RecordingSocket, SessionResult]:
    ws = RecordingSocket()
    result = SessionResult()
    options = Options(rate=rate)  # type: ignore[arg-type]
    await send_audio(ws, audio, options, result, trio.Event() if stop is None else stop)  # type: ignore[arg-type]
    return ws, result


async def test_pcm_goes_out_in_100ms_frames_as_fast_as_accepted(autojump_clock: trio.abc.Clock) -> None:
    audio = AudioInput.from_bytes(bytes(32000 + 100))  # 1 s and a bit
    ws, result = await _send(audio, "fast")
    assert [len(m) for _, m in ws.sent] == [3200] * 10 + [100]
    assert result.audio_bytes == 32100
    assert ws.sent[-1][0] - ws.sent[0][0] < 0.01


async def test_realtime_pace_sends_a_frame_every_100ms(autojump_clock: trio.abc.Clock) -> None:
    audio = AudioInput.from_bytes(bytes(8000), AudioFormat("MULAW", 8000))  # 1 s of mu-law
    ws, _ = await _send(audio, "realtime")
    assert [len(m) for _, m in ws.sent] == [800] * 10
    times = [t - ws.sent[0][0] for t, _ in ws.sent]
    assert times == pytest.approx([i / 10 for i in range(10)], abs=1e-6)


async def test_a_wav_data_length_bounds_what_is_sent(autojump_clock: trio.abc.Clock) -> None:
    trailer = b"LIST" + struct.pack("<I", 4) + b"INFO"
    data = wav_bytes(data=bytes(4000)) + trailer  # 125 ms of PCM, then a trailing chunk
    audio = open_audio(io.BytesIO(data), "x.wav")
    ws, _ = await _send(audio, "fast")
    assert [len(m) for _, m in ws.sent] == [3200, 800]


async def test_a_trailing_half_sample_is_dropped(autojump_clock: trio.abc.Clock) -> None:
    ws, _ = await _send(AudioInput.from_bytes(bytes(3201)), "fast")
    assert [len(m) for _, m in ws.sent] == [3200]


async def test_stop_ends_the_audio_between_frames(autojump_clock: trio.abc.Clock) -> None:
    stop = trio.Event()
    audio = AudioInput.from_bytes(bytes(32000 * 10))
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
        if _handle_event(name, event_id, data, result, printer):
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
    }


# -- main -------------------------------------------------------------------------------------


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert main(["x.wav", "--rate", "slow"]) == EXIT_USAGE
    assert main(["x.wav", "--chunk-ms", "5000"]) == EXIT_USAGE
    assert main(["--help"]) == EXIT_OK
    capsys.readouterr()


def test_unsupported_file_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(channels=2, data=bytes(400)))
    assert main([str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "2 channels" in captured.err and "Traceback" not in captured.err
    assert main([str(tmp_path / "missing.wav")]) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err


def test_unreachable_server_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(data=bytes(3200)))
    assert main([str(path), "--url", f"http://127.0.0.1:{port}"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith(f"reserve-client: cannot reach Reserve at http://127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_client_error_keeps_its_exit_code() -> None:
    assert ClientError("x").exit_code == EXIT_FAILURE
    assert UnsupportedAudioError("x").exit_code == EXIT_USAGE
