"""Reserve's command-line client: stream an audio file, print the live transcript.

    python -m service.client speech.wav
    python -m service.client call.wav --url https://reserve.example.com --json | jq .
    arecord -q -f S16_LE -r 16000 -c 1 -t raw | python -m service.client -

It speaks only Reserve's public HTTP API (``POST /v1/sessions``, the audio WebSocket and
the Server-Sent Events stream) and imports nothing else from the server, so it works
against a remote one. Exit status: 0 when the session ends with reason "finished",
1 when the server, the stream or the session fails, 2 for bad arguments or audio the
client cannot send, 130 when interrupted twice. Failures are one line on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import trio
from httpx_sse import SSEError, aconnect_sse
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

PROG = "reserve-client"
DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "RESERVE_API_KEY"
ENCODINGS = ("LINEAR_PCM", "MULAW", "ALAW", "FLAC", "OGGOPUS")
BYTES_PER_SAMPLE = {"LINEAR_PCM": 2, "MULAW": 1, "ALAW": 1}
SUCCESS_REASONS = frozenset({"end", "finished"})
COMPRESSED_CHUNK_BYTES = 4096  # FLAC / Ogg Opus: no fixed byte rate, so fixed-size frames
SNIFF_BYTES = 64  # enough for a RIFF/WAVE preamble or a FLAC STREAMINFO block

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

CONNECT_TIMEOUT_S = 10.0
SSE_READ_TIMEOUT_S = 90.0  # the server sends a heartbeat comment well within this
SSE_RECONNECTS = 5
GRACE_S = 5.0  # how long one stream waits for the other once it has ended
FINISH_TIMEOUT_S = 120.0  # after "end", how long to wait for the server to finish

# WAVE format tags (mmreg.h)
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_WAVE_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}
_STREAMED_SIZES = (0, 0xFFFFFFFF)  # a data chunk written to a pipe: size unknown, read to EOF


# -- errors ------------------------------------------------------------------------------


class ClientError(Exception):
    """A failure the user can act on: printed as one line, with the exit status to use."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UnsupportedAudioError(ClientError):
    """The input is audio this client will not send (or not audio at all)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


# -- audio formats ------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioFormat:
    encoding: str = "LINEAR_PCM"
    sample_rate: int = 16000

    @property
    def bytes_per_sample(self) -> int | None:
        return BYTES_PER_SAMPLE.get(self.encoding)

    @property
    def bytes_per_second(self) -> int | None:
        """The byte rate of uncompressed encodings; None for FLAC and Ogg Opus."""
        per_sample = self.bytes_per_sample
        return None if per_sample is None else per_sample * self.sample_rate


@dataclass(frozen=True)
class WavHeader:
    format: AudioFormat
    channels: int
    bits_per_sample: int
    data_length: int | None  # bytes of audio; None: up to the end of the stream


def chunk_bytes(fmt: AudioFormat, chunk_ms: int) -> int:
    """Bytes in one WebSocket frame of ``chunk_ms`` audio, in whole samples (3200 for 100 ms of 16 kHz PCM)."""
    per_sample = fmt.bytes_per_sample
    if per_sample is None:
        return COMPRESSED_CHUNK_BYTES
    return max(1, fmt.sample_rate * chunk_ms // 1000) * per_sample


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in frames of ``size`` bytes; the last one may be shorter."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_exactly(stream: Reader, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise UnsupportedAudioError(f"truncated WAV file: it ends inside the {what}")
    return data


def _skip(stream: Reader, size: int, what: str) -> None:
    while size > 0:
        data = stream.read(min(size, 65536))
        if not data:
            raise UnsupportedAudioError(f"truncated WAV file: it ends inside the {what}")
        size -= len(data)


def _wav_encoding(tag: int, bits: int) -> str:
    """The Reserve encoding of a WAVE format tag, or UnsupportedAudioError saying what to do."""
    convert = "convert it with e.g. `sox in.wav -e signed -b 16 out.wav`"
    if tag == WAVE_FORMAT_PCM:
        if bits == 16:
            return "LINEAR_PCM"
        raise UnsupportedAudioError(f"unsupported WAV format: {bits}-bit PCM; Reserve takes 16-bit PCM, {convert}")
    if tag in (WAVE_FORMAT_MULAW, WAVE_FORMAT_ALAW):
        name = "mu-law" if tag == WAVE_FORMAT_MULAW else "A-law"
        if bits != 8:
            raise UnsupportedAudioError(f"unsupported WAV format: {name} with {bits} bits per sample (expected 8)")
        return "MULAW" if tag == WAVE_FORMAT_MULAW else "ALAW"
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        raise UnsupportedAudioError(f"unsupported WAV format: {bits}-bit floating point; {convert}")
    name = _WAVE_FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")
    raise UnsupportedAudioError(f"unsupported WAV format: {name}; Reserve takes 16-bit PCM, mu-law or A-law, {convert}")


def _parse_fmt(body: bytes) -> tuple[str, int, int, int]:
    """(encoding, channels, sample rate, bits per sample) from a ``fmt `` chunk's body."""
    if len(body) < 16:
        raise UnsupportedAudioError("malformed WAV file: its fmt chunk is too short")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 26:
            raise UnsupportedAudioError("malformed WAV file: WAVE_FORMAT_EXTENSIBLE without a sub-format")
        (tag,) = struct.unpack_from("<H", body, 24)  # the sub-format GUID starts with the format tag
    encoding = _wav_encoding(tag, bits)
    if channels != 1:
        raise UnsupportedAudioError(
            f"unsupported WAV file: {channels} channels; Reserve takes mono audio, "
            "mix it down with e.g. `sox in.wav -c 1 out.wav`"
        )
    if rate <= 0:
        raise UnsupportedAudioError("malformed WAV file: sample rate 0")
    if block_align not in (0, channels * bits // 8):
        raise UnsupportedAudioError(f"malformed WAV file: block align {block_align} for {channels}x{bits}-bit samples")
    return encoding, channels, rate, bits


def read_wav_header(stream: Reader) -> WavHeader:
    """Read a RIFF/WAVE header up to the start of its audio; ``stream`` is left at the first sample."""
    preamble = stream.read(12)
    if len(preamble) < 12 or preamble[:4] != b"RIFF" or preamble[8:12] != b"WAVE":
        if preamble[:4] == b"RF64":
            raise UnsupportedAudioError("unsupported WAV file: RF64 (files over 4 GiB); split it or send it raw")
        raise UnsupportedAudioError("not a WAV file: it does not start with a RIFF/WAVE header")
    fmt: tuple[str, int, int, int] | None = None
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise UnsupportedAudioError(
                "malformed WAV file: no data chunk" if fmt else "malformed WAV file: no fmt chunk"
            )
        chunk_id, size = head[:4], struct.unpack("<I", head[4:])[0]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(_read_exactly(stream, size, "fmt chunk"))
            if size % 2:
                _skip(stream, 1, "fmt chunk")
        elif chunk_id == b"data":
            if fmt is None:
                raise UnsupportedAudioError("malformed WAV file: the data chunk comes before the fmt chunk")
            encoding, channels, rate, bits = fmt
            length = None if size in _STREAMED_SIZES else size
            return WavHeader(AudioFormat(encoding, rate), channels, bits, length)
        else:
            _skip(stream, size + size % 2, f"{chunk_id.decode('latin-1')!r} chunk")


def parse_wav_header(data: bytes) -> WavHeader:
    """``read_wav_header`` on bytes (the file's start, at least up to its data chunk)."""
    return read_wav_header(io.BytesIO(data))


def parse_flac_streaminfo(head: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, total samples; 0 if unknown) from a FLAC file's first 42 bytes."""
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        raise UnsupportedAudioError("malformed FLAC file: it does not start with a STREAMINFO block")
    info = head[8:42]
    rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
    channels = ((info[12] >> 1) & 0x7) + 1
    total = ((info[13] & 0x0F) << 32) | struct.unpack(">I", info[14:18])[0]
    return rate, channels, total


# -- audio input --------------------------------------------------------------------------


class _Rewound:
    """A stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, stream: Reader) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            data, self._prefix = self._prefix + self._stream.read(), b""
            return data
        head, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(head) == size:
            return head
        return head + self._stream.read(size - len(head))


@dataclass
class AudioInput:
    """What to send and how: its format, the stream at its first byte of audio, how much of it."""

    format: AudioFormat
    stream: Reader
    name: str = "-"
    length: int | None = None  # bytes of audio; None: until EOF
    pace_bytes_per_second: float | None = None  # None: cannot be paced (unknown byte rate)
    blocking: bool = False  # reads may wait on a pipe: read in a worker thread
    closer: Callable[[], None] | None = None  # closes the file it was opened from, if any

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None

    @classmethod
    def from_bytes(cls, data: bytes, fmt: AudioFormat | None = None, name: str = "<bytes>") -> AudioInput:
        """Raw audio in memory (for tests and callers that already hold the audio)."""
        fmt = fmt or AudioFormat()
        return cls(fmt, io.BytesIO(data), name, len(data), fmt.bytes_per_second)


def _check_overrides(name: str, found: AudioFormat, encoding: str | None, sample_rate: int | None) -> None:
    if encoding is not None and encoding != found.encoding:
        raise UnsupportedAudioError(f"{name} holds {found.encoding} audio; --encoding {encoding} contradicts it")
    if sample_rate is not None and sample_rate != found.sample_rate:
        raise UnsupportedAudioError(
            f"{name} is sampled at {found.sample_rate} Hz; --sample-rate {sample_rate} contradicts it"
        )


def open_audio(
    stream: Reader,
    name: str,
    *,
    encoding: str | None = None,
    sample_rate: int | None = None,
    size: int | None = None,
    blocking: bool = False,
) -> AudioInput:
    """Look at the stream's first bytes: a WAV or FLAC header decides the format, anything
    else is raw audio in ``encoding`` at ``sample_rate`` (default 16 kHz LINEAR_PCM).
    ``size`` is the whole stream's size when known (a regular file)."""
    head = stream.read(SNIFF_BYTES)
    rewound = _Rewound(head, stream)
    if head[:4] in (b"RIFF", b"RF64"):
        header = read_wav_header(rewound)
        _check_overrides(name, header.format, encoding, sample_rate)
        return AudioInput(header.format, rewound, name, header.data_length, header.format.bytes_per_second, blocking)
    if name.lower().endswith((".wav", ".wave")):
        raise UnsupportedAudioError(f"{name} is not a WAV file: it does not start with a RIFF/WAVE header")
    if head[:4] == b"fLaC":
        rate, channels, total = parse_flac_streaminfo(head)
        if channels != 1:
            raise UnsupportedAudioError(f"unsupported FLAC file: {channels} channels; Reserve takes mono audio")
        found = AudioFormat("FLAC", rate)
        _check_overrides(name, found, encoding, sample_rate)
        pace = size * rate / total if size and total else None
        return AudioInput(found, rewound, name, None, pace, blocking)
    if head[:4] == b"OggS":
        found = AudioFormat("OGGOPUS", sample_rate or 48000)
        _check_overrides(name, found, encoding, None)
        return AudioInput(found, rewound, name, None, None, blocking)
    fmt = AudioFormat(encoding or "LINEAR_PCM", sample_rate or 16000)
    if not head and size is None and not blocking:
        raise UnsupportedAudioError(f"{name} is empty")
    return AudioInput(fmt, rewound, name, None, fmt.bytes_per_second, blocking)


def open_audio_path(path: str, *, encoding: str | None = None, sample_rate: int | None = None) -> AudioInput:
    """``open_audio`` on a file path, or on stdin for ``-``."""
    if path == "-":
        return open_audio(sys.stdin.buffer, "stdin", encoding=encoding, sample_rate=sample_rate, blocking=True)
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise UnsupportedAudioError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        regular = file.is_file()
        size = file.stat().st_size if regular else None
        if regular and size == 0:
            raise UnsupportedAudioError(f"{path} is empty")
        audio = open_audio(handle, path, encoding=encoding, sample_rate=sample_rate, size=size, blocking=not regular)
    except BaseException:
        handle.close()
        raise
    audio.closer = handle.close
    return audio


# -- output -------------------------------------------------------------------------------


def parse_event_id(raw: str) -> int | str | None:
    if not raw:
        return None
    return int(raw) if raw.isdigit() else raw


def format_event_json(name: str, event_id: int | str | None, data: Any) -> str:
    """One line of ``--json`` output: ``{"event": name, "id": id, "data": {...}}``."""
    return json.dumps({"event": name, "id": event_id, "data": data}, ensure_ascii=False, separators=(",", ":"))


CLEAR_LINE = "\r\x1b[2K"


def fit_line(text: str, width: int) -> str:
    """The end of ``text`` in at most ``width - 1`` columns (an interim line must not wrap)."""
    text = " ".join(text.split())
    room = max(width - 1, 1)
    if len(text) <= room:
        return text
    return "…" + text[-(room - 1) :] if room > 1 else text[-1:]


class EventPrinter(Protocol):
    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonPrinter:
    """``--json``: every event as one JSON object per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        self.out.write(format_event_json(name, event_id, data) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class TextPrinter:
    """Finals as lines; on a terminal the current interim is redrawn in place below them."""

    def __init__(self, out: TextIO, *, tty: bool | None = None, width: Callable[[], int] | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.width = width or (lambda: shutil.get_terminal_size().columns)
        self._interim_shown = False

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        if name != "transcript":
            return  # errors and the end are reported by the caller, on stderr / the exit status
        text = str(data.get("text") or "").strip()
        if data.get("is_final"):
            self._clear()
            if text:
                self.out.write(text + "\n")
        elif self.tty and text:
            self.out.write(CLEAR_LINE + fit_line(text, self.width()))
            self._interim_shown = True
        self.out.flush()

    def _clear(self) -> None:
        if self._interim_shown:
            self.out.write(CLEAR_LINE)
            self._interim_shown = False

    def close(self) -> None:
        self._clear()
        self.out.flush()


# -- HTTP helpers -------------------------------------------------------------------------


def _error_details(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from Reserve's ``{"error": {...}}`` body, or from whatever came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")
    text = " ".join(response.text.split())[:200]
    return "", text or response.reason_phrase


def describe_http_error(what: str, response: httpx.Response) -> str:
    """One line saying why ``what`` failed, with the server's own message."""
    code, message = _error_details(response)
    status = f"HTTP {response.status_code}" + (f" {code}" if code else "")
    line = f"{what} failed ({status}): {message}" if message else f"{what} failed ({status})"
    if response.status_code == 401:
        return f"{line} - Reserve wants an API key: pass --token or set {API_KEY_ENV}"
    if response.status_code == 403:
        return f"{line} - the API key was refused: check --token / {API_KEY_ENV}"
    retry_after = response.headers.get("Retry-After")
    if response.status_code in (429, 503) and retry_after:
        return f"{line}; retry after {retry_after} s"
    return line


def describe_transport_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def unreachable(options: Options, exc: BaseException) -> ClientError:
    return ClientError(f"cannot reach Reserve at {options.display_url}: {describe_transport_error(exc)}")


def websocket_url(base_url: str, path: str) -> str:
    """``path`` resolved against the server's URL, with http(s) turned into ws(s)."""
    parts = urlsplit(urljoin(base_url, path))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def session_settings(fmt: AudioFormat, *, language: str = "en-US", interim: bool = True) -> dict[str, Any]:
    """The body of ``POST /v1/sessions``."""
    return {
        "encoding": fmt.encoding,
        "sample_rate_hertz": fmt.sample_rate,
        "language_code": language,
        "interim_results": interim,
    }


# -- the session --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    url: str = DEFAULT_URL
    api_key: str | None = None
    rate: Literal["realtime", "fast"] = "realtime"
    chunk_ms: int = 100
    language: str = "en-US"
    interim: bool = True
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    finish_timeout_s: float = FINISH_TIMEOUT_S

    @property
    def display_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def base_url(self) -> str:
        """``url`` ending in one slash, so relative paths resolve under any prefix in it."""
        return self.url.rstrip("/") + "/"


@dataclass(frozen=True)
class Session:
    id: str
    token: str
    audio_url: str
    events_url: str
    config: dict[str, Any]


@dataclass
class SessionResult:
    """What happened: filled in as the streams run, returned when the session is over."""

    session: Session | None = None
    end_reason: str | None = None
    finals: list[str] = field(default_factory=list)
    events: int = 0
    audio_bytes: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    failure: ClientError | None = None
    events_done: trio.Event = field(default_factory=trio.Event)
    audio_done: trio.Event = field(default_factory=trio.Event)

    def fail(self, error: ClientError) -> None:
        if self.failure is None:
            self.failure = error

    @property
    def transcript(self) -> str:
        return " ".join(text for text in self.finals if text)


async def create_session(http: httpx.AsyncClient, options: Options, fmt: AudioFormat) -> Session:
    url = urljoin(options.base_url, "v1/sessions")  # relative: keeps a path prefix given in --url
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    body = session_settings(fmt, language=options.language, interim=options.interim)
    try:
        response = await http.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:
        raise unreachable(options, exc) from None
    if response.status_code == 404:
        problem = describe_http_error("creating the session", response)
        raise ClientError(f"{problem} - is {options.display_url} a Reserve server?")
    if response.status_code != 201:
        raise ClientError(describe_http_error("creating the session", response))
    try:
        payload = response.json()
        return Session(
            id=str(payload["id"]),
            token=str(payload["token"]),
            audio_url=str(payload["audio_url"]),
            events_url=str(payload["events_url"]),
            config=dict(payload.get("config") or {}),
        )
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"unexpected answer from {url}: not a Reserve session") from None


def _handle_event(
    name: str, event_id: int | str | None, data: Any, result: SessionResult, printer: EventPrinter
) -> bool:
    """Print one event and note what it means; True once it is the last (``end``)."""
    if not isinstance(data, dict):
        data = {"value": data}
    result.events += 1
    printer.event(name, event_id, data)
    if name == "transcript" and data.get("is_final") and data.get("text"):
        result.finals.append(str(data["text"]))
    elif name == "error":
        code = data.get("code") or "error"
        result.fail(ClientError(f"Reserve reported an error ({code}): {data.get('message') or 'no details'}"))
    elif name == "end":
        result.end_reason = str(data.get("reason") or "")
        return True
    return False


async def follow_events(
    http: httpx.AsyncClient,
    options: Options,
    session: Session,
    printer: EventPrinter,
    result: SessionResult,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print the session's events until ``end``; reconnect with Last-Event-ID if the stream drops."""
    url = urljoin(options.base_url, session.events_url)
    timeout = httpx.Timeout(options.connect_timeout_s, read=SSE_READ_TIMEOUT_S)
    last_id = ""
    retry_s = 1.0
    started = False
    drops = 0
    while True:
        headers = {"Authorization": f"Bearer {session.token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            async with aconnect_sse(http, "GET", url, headers=headers, timeout=timeout) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise ClientError(describe_http_error("following the session's events", response))
                if not started:
                    started = True
                    task_status.started()
                async for sse in source.aiter_sse():
                    if sse.retry:
                        retry_s = sse.retry / 1000
                    if not sse.data:
                        continue  # the retry preamble; heartbeats are comments and never show up
                    drops = 0
                    last_id = sse.id or last_id
                    try:
                        data = json.loads(sse.data)
                    except ValueError:
                        raise ClientError(f"the server sent an event that is not JSON: {sse.data[:80]!r}") from None
                    if _handle_event(sse.event, parse_event_id(sse.id), data, result, printer):
                        return
        except SSEError as exc:
            raise ClientError(f"the server did not answer with an event stream: {exc}") from None
        except httpx.TransportError as exc:
            if not started:
                raise unreachable(options, exc) from None
            reason = describe_transport_error(exc)
        else:
            reason = "the server closed it before the end event"
        drops += 1
        if drops > SSE_RECONNECTS:
            raise ClientError(f"lost the event stream ({reason}) and could not resume it")
        await trio.sleep(retry_s)


class Pacer:
    """Holds each frame back until its audio would have been captured live (``bytes_per_second``)."""

    def __init__(self, bytes_per_second: float | None) -> None:
        self.bytes_per_second = bytes_per_second
        self.start: float | None = None

    def due(self, sent_bytes: int) -> float | None:
        """When the frame starting at ``sent_bytes`` may go (trio clock); None: right away."""
        if not self.bytes_per_second:
            return None
        if self.start is None:
            self.start = trio.current_time()
        return self.start + sent_bytes / self.bytes_per_second

    async def wait(self, sent_bytes: int, stop: trio.Event) -> None:
        """Sleep until the frame is due, or until ``stop`` is set."""
        due = self.due(sent_bytes)
        if due is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_at(due):
            await stop.wait()


async def _read_chunk(audio: AudioInput, size: int, stop: trio.Event) -> bytes:
    """Up to ``size`` bytes; b"" at the end of the input or once ``stop`` is set."""
    if not audio.blocking:
        return audio.stream.read(size)
    data = b""
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            nonlocal data
            data = await trio.to_thread.run_sync(audio.stream.read, size, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(read)
        nursery.start_soon(watch)
    return b"" if stop.is_set() else data


async def send_audio(
    ws: WebSocketConnection, audio: AudioInput, options: Options, result: SessionResult, stop: trio.Event
) -> None:
    """Frames of ``chunk_ms`` audio, paced or not, until the input ends or ``stop`` is set.

    A send is never cancelled half-way (that would corrupt the socket's framing): ``stop``
    only ends the waits between frames and the reads.
    """
    size = chunk_bytes(audio.format, options.chunk_ms)
    pacer = Pacer(audio.pace_bytes_per_second if options.rate == "realtime" else None)
    align = audio.format.bytes_per_sample or 1
    left = audio.length
    pending = b""
    while not stop.is_set():
        want = size - len(pending) if left is None else min(size - len(pending), left)
        data = await _read_chunk(audio, want, stop) if want > 0 else b""
        if not data:
            break
        if left is not None:
            left -= len(data)
        pending += data
        if len(pending) < size:
            continue  # a short read (a pipe) or the end: fill the frame first
        await pacer.wait(result.audio_bytes, stop)
        if stop.is_set():
            return
        await ws.send_message(pending)
        result.audio_bytes += len(pending)
        pending = b""
    pending = pending[: len(pending) - len(pending) % align]  # whole samples only
    if pending and not stop.is_set():
        await pacer.wait(result.audio_bytes, stop)
        await ws.send_message(pending)
        result.audio_bytes += len(pending)


async def _receive(ws: WebSocketConnection, result: SessionResult, errors: list[str], closed: trio.Event) -> None:
    """Read the socket until the server closes it, keeping its error frames."""
    try:
        while True:
            message = await ws.get_message()
            if isinstance(message, str):
                try:
                    control = json.loads(message)
                except ValueError:
                    continue
                if isinstance(control, dict) and control.get("type") == "error":
                    errors.append(f"{control.get('code') or 'error'}: {control.get('message') or 'no details'}")
    except ConnectionClosed as exc:
        if exc.reason is not None:
            result.close_code, result.close_reason = exc.reason.code, exc.reason.reason
    finally:
        closed.set()


def describe_close(code: int | None, reason: str | None, errors: list[str]) -> str | None:
    """None for a normal close (1000), else one line saying why the server closed the audio socket."""
    if code == 1000 and not errors:
        return None
    said = (f"{code}" + (f" {reason}" if reason else "")) if code is not None else "no close code"
    detail = f": {errors[-1]}" if errors else ""
    return f"the audio WebSocket was closed by Reserve ({said}){detail}"


def _handshake_problem(exc: HandshakeError) -> str:
    if isinstance(exc, ConnectionRejected):
        body = " ".join((exc.body or b"").decode("utf-8", "replace").split())[:200]
        return f"HTTP {exc.status_code}" + (f": {body}" if body else "")
    if isinstance(exc, ConnectionTimeout):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    return describe_transport_error(cause if cause is not None and not str(exc) else exc)


async def stream_session_audio(
    options: Options, session: Session, audio: AudioInput, result: SessionResult, stop: trio.Event
) -> None:
    """Open the audio socket, send the audio then ``end``, and wait for the server to close it."""
    url = websocket_url(options.base_url, session.audio_url)
    headers = [(b"Authorization", f"Bearer {session.token}".encode())]
    errors: list[str] = []
    closed = trio.Event()
    timed_out = False
    try:
        async with (
            open_websocket_url(
                url, extra_headers=headers, connect_timeout=options.connect_timeout_s, disconnect_timeout=GRACE_S
            ) as ws,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_receive, ws, result, errors, closed)
            try:
                await send_audio(ws, audio, options, result, stop)
                await ws.send_message(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass  # the server hung up: _receive has its close code and error frame
            with trio.move_on_after(options.finish_timeout_s) as waiting:
                await closed.wait()
            timed_out = waiting.cancelled_caught
            nursery.cancel_scope.cancel()
    except HandshakeError as exc:
        raise ClientError(f"cannot open the audio WebSocket at {url}: {_handshake_problem(exc)}") from None
    if timed_out:
        raise ClientError(f"the server did not finish within {options.finish_timeout_s:g} s of the end of audio")
    problem = describe_close(result.close_code, result.close_reason, errors)
    if problem is not None:
        raise ClientError(problem)


async def _audio_task(
    options: Options,
    session: Session,
    audio: AudioInput,
    result: SessionResult,
    stop: trio.Event,
    cancel: trio.CancelScope,
) -> None:
    try:
        await stream_session_audio(options, session, audio, result, stop)
    except ClientError as error:
        result.fail(error)
    finally:
        result.audio_done.set()
    with trio.move_on_after(GRACE_S):  # let the event stream deliver the error and end events
        await result.events_done.wait()
    cancel.cancel()


async def _events_task(
    http: httpx.AsyncClient,
    options: Options,
    session: Session,
    printer: EventPrinter,
    result: SessionResult,
    cancel: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await follow_events(http, options, session, printer, result, task_status=task_status)
    except ClientError as error:
        result.fail(error)
        raise  # before ``started`` this fails nursery.start; after it, it cancels the nursery
    finally:
        result.events_done.set()
    with trio.move_on_after(GRACE_S):  # the server closes the audio socket as the session ends
        await result.audio_done.wait()
    cancel.cancel()


async def _interrupts(stop: trio.Event, cancel: trio.CancelScope, result: SessionResult) -> None:
    """First Ctrl-C: stop sending and let the server finish; second: give up."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            if not stop.is_set():
                stop.set()
                print(f"{PROG}: stopping; waiting for the final results (Ctrl-C again to abort)", file=sys.stderr)
                continue
            result.fail(ClientError("interrupted", EXIT_INTERRUPTED))
            cancel.cancel()
            return


async def transcribe(
    options: Options,
    audio: AudioInput,
    printer: EventPrinter,
    *,
    stop: trio.Event | None = None,
    handle_interrupts: bool = False,
) -> SessionResult:
    """Create a session, stream ``audio`` to it while printing its events, and return once it is over.

    Raises ClientError when anything fails, including a session that ends for a reason other
    than "finished". Setting ``stop`` ends the audio early (then ``end``) and lets the session
    finish; ``handle_interrupts`` makes the first Ctrl-C do that (main thread only).
    """
    result = SessionResult()
    stop = trio.Event() if stop is None else stop
    timeout = httpx.Timeout(options.connect_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, headers={"User-Agent": f"{PROG}/1"}) as http:
        session = await create_session(http, options, audio.format)
        result.session = session
        try:
            async with trio.open_nursery() as nursery:
                if handle_interrupts:
                    nursery.start_soon(_interrupts, stop, nursery.cancel_scope, result)
                await nursery.start(_events_task, http, options, session, printer, result, nursery.cancel_scope)
                nursery.start_soon(_audio_task, options, session, audio, result, stop, nursery.cancel_scope)
        except* ClientError:
            pass  # already in result.failure, put there by the task that raised it
        finally:
            printer.close()
    if result.failure is not None:
        raise result.failure
    if result.end_reason is None:
        raise ClientError("the session's event stream stopped before its end event")
    if result.end_reason not in SUCCESS_REASONS:
        raise ClientError(f"the session ended early: {result.end_reason}")
    return result


# -- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.client",
        description="Stream audio to Reserve and print the live transcript.",
        epilog=(
            "A WAV file's header gives its encoding and sample rate (16-bit PCM, mu-law or A-law, mono). "
            "Other files and stdin are raw audio in --encoding at --sample-rate (default 16 kHz LINEAR_PCM). "
            "Exit status: 0 finished, 1 failed, 2 bad arguments or unsupported audio, 130 interrupted."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="a .wav file, a raw audio file, or - for raw audio on stdin")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Reserve's base URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--token",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"API key sent as 'Authorization: Bearer' when creating the session (default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--rate",
        choices=("realtime", "fast"),
        default="realtime",
        help="send at real-time pace (default) or as fast as the server accepts",
    )
    parser.add_argument(
        "--chunk-ms", type=_chunk_ms, default=100, help="audio per WebSocket frame, 10-1000 ms (default 100)"
    )
    parser.add_argument(
        "--json", action="store_true", help='print every event as one JSON object per line: {"event", "id", "data"}'
    )
    parser.add_argument(
        "--encoding", type=str.upper, choices=ENCODINGS, help="encoding of raw input (default LINEAR_PCM)"
    )
    parser.add_argument(
        "--sample-rate", type=_positive_int, metavar="N", help="sample rate of raw input in Hz (default 16000)"
    )
    parser.add_argument("--language", default="en-US", help="BCP-47 language code (default en-US)")
    parser.add_argument("--no-interim", dest="interim", action="store_false", help="ask for final results only")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _chunk_ms(text: str) -> int:
    value = _positive_int(text)
    if not 10 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 10 and 1000 ms: {value}")
    return value


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--url must be an http:// or https:// URL, got {url!r}", EXIT_USAGE)
    return url


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        url=_check_url(args.url),
        api_key=args.token,
        rate=args.rate,
        chunk_ms=args.chunk_ms,
        language=args.language,
        interim=args.interim,
    )


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def run(options: Options, audio: AudioInput, printer: EventPrinter, *, handle_interrupts: bool = False) -> int:
    """``transcribe`` as an exit status, failures reported as one line on stderr."""
    try:
        await transcribe(options, audio, printer, handle_interrupts=handle_interrupts)
    except ClientError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return error.exit_code
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    audio: AudioInput | None = None
    try:
        options = options_from_args(args)
        audio = open_audio_path(args.file, encoding=args.encoding, sample_rate=args.sample_rate)
        printer: EventPrinter = JsonPrinter(sys.stdout) if args.json else TextPrinter(sys.stdout)
        interrupts = threading.current_thread() is threading.main_thread()
        return trio.run(partial(run, options, audio, printer, handle_interrupts=interrupts))
    except ClientError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug rather than the user's problem: still one line, no traceback
        leaf = _leaf(error)
        print(f"{PROG}: unexpected error: {type(leaf).__name__}: {leaf}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if audio is not None:
            audio.close()


if __name__ == "__main__":
    sys.exit(main())
