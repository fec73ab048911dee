"""Minimal HTTP/1.1 WebSocket and SSE clients on trio streams, for the load generator.

Why not trio-websocket and httpx-sse: at 800 streams the load generator sends 8000
frames and reads 8000 events a second on one core, and those libraries spend most
of it in their own state machines. These clients do only what the benchmark needs
and keep the per-message path to a few bytes operations:

* WebSocket (RFC 6455): one handshake, client frames masked with an all-zero key (a
  valid key; XOR with zero leaves the payload as is, so no per-byte masking work),
  pings answered, the server's close read and answered.
* SSE: one GET with ``Transfer-Encoding: chunked`` decoded by hand, events split on
  blank lines, ``event:`` and ``data:`` picked out. The gateway sends whole events
  per chunk, so a chunk is handled once it is complete.

Both talk real HTTP/1.1 to the real gateway; the server side is unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

MAX_HEAD = 64 * 1024
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
ZERO_MASK = b"\0\0\0\0"


class WireError(Exception):
    """The server answered something this client did not expect."""


async def _open(host: str, port: int, request: bytes) -> tuple[trio.SocketStream, int, dict[str, str], bytearray]:
    """Connect, send one request head, read the response head; return what follows it too."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(request)
        buf = bytearray()
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > MAX_HEAD:
                raise WireError("response head too large")
            data = await stream.receive_some(65536)
            if not data:
                raise WireError("connection closed before the response head")
            buf += data
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        rest = buf[end + 4 :]
        parts = head[0].split(" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return stream, status, headers, rest
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _request_head(method: str, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (zero mask key: the payload goes out as is)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + ZERO_MASK + payload


@dataclass
class WsOutcome:
    close_code: int | None = None
    close_reason: str = ""
    text_frames: list[str] = field(default_factory=list)


class RawWebSocket:
    """One client WebSocket. ``send_*`` is used by one task; ``read_until_closed`` by another.

    The reader never writes while the sender may: pongs it owes wait in ``_owed`` and
    go out with the sender's next frame, and the close reply is sent only once the
    sender is done (``finish_sending``)."""

    def __init__(self, stream: trio.SocketStream, pending: bytearray) -> None:
        self._stream = stream
        self._buf = pending
        self._owed: list[bytes] = []
        self._sender_done = False
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> RawWebSocket:
        key = base64.b64encode(os.urandom(16)).decode()
        head = _request_head(
            "GET",
            host,
            port,
            path,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
                *headers,
            ],
        )
        stream, status, _headers, rest = await _open(host, port, head)
        if status != 101:
            await trio.aclose_forcefully(stream)
            raise WireError(f"websocket handshake answered {status}")
        return cls(stream, rest)

    async def send_binary(self, payload: bytes) -> None:
        await self.send_frame(client_frame(OP_BINARY, payload))

    async def send_text(self, text: str) -> None:
        await self.send_frame(client_frame(OP_TEXT, text.encode()))

    async def send_frame(self, frame: bytes) -> None:
        """Send a frame built by ``client_frame`` (or its head plus payload, built by the caller)."""
        if self._owed:
            frame = b"".join(self._owed) + frame
            self._owed.clear()
        await self._stream.send_all(frame)

    async def finish_sending(self) -> None:
        """The sender is done: from now on the reader may write (pongs, the close reply)."""
        self._sender_done = True
        if self._owed and not self.closed:
            owed = b"".join(self._owed)
            self._owed.clear()
            await self._stream.send_all(owed)

    async def read_until_closed(self) -> WsOutcome:
        outcome = WsOutcome()
        buf = self._buf
        stream = self._stream
        while True:
            frame = _parse_server_frame(buf)
            if frame is None:
                data = await stream.receive_some(65536)
                if not data:
                    return outcome  # TCP closed without a close frame: close_code stays None
                buf += data
                continue
            opcode, payload = frame
            if opcode == OP_CLOSE:
                if len(payload) >= 2:
                    outcome.close_code = int.from_bytes(payload[:2], "big")
                    outcome.close_reason = payload[2:].decode("utf-8", "replace")
                else:
                    outcome.close_code = 1005
                self.closed = True
                if self._sender_done:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(client_frame(OP_CLOSE, payload[:2]))
                return outcome
            if opcode == OP_PING:
                pong = client_frame(OP_PONG, payload)
                if self._sender_done:
                    await stream.send_all(pong)
                else:
                    self._owed.append(pong)
            elif opcode == OP_TEXT:
                outcome.text_frames.append(payload.decode("utf-8", "replace"))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


def _parse_server_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """Take one whole unmasked frame off the front of ``buf`` (servers do not fragment
    control frames, and the gateway sends no fragmented data frames)."""
    if len(buf) < 2:
        return None
    opcode = buf[0] & 0x0F
    size = buf[1] & 0x7F
    pos = 2
    if size == 126:
        if len(buf) < 4:
            return None
        size = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size = int.from_bytes(buf[2:10], "big")
        pos = 10
    if buf[1] & 0x80:
        pos += 4  # a masked server frame is a protocol error, but skip the key rather than crash
    if len(buf) < pos + size:
        return None
    payload = bytes(buf[pos : pos + size])
    del buf[: pos + size]
    return opcode, payload


# An SSE event handler gets (event name, data line, arrival time) and returns True to stop.
EventHandler = Callable[[bytes, bytes, float], bool]


class RawEventStream:
    """One ``text/event-stream`` response, dechunked and split into events."""

    def __init__(self, stream: trio.SocketStream, pending: bytearray, chunked: bool) -> None:
        self._stream = stream
        self._buf = pending
        self._chunked = chunked

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> RawEventStream:
        head = _request_head("GET", host, port, path, [("Accept", "text/event-stream"), *headers])
        stream, status, response_headers, rest = await _open(host, port, head)
        if status != 200:
            await trio.aclose_forcefully(stream)
            raise WireError(f"event stream answered {status}")
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        return cls(stream, rest, chunked)

    async def run(self, on_event: EventHandler) -> bool:
        """Read events until ``on_event`` says stop (True) or the response ends (False)."""
        raw = self._buf
        body = bytearray()
        stream = self._stream
        now = time.perf_counter()
        first = True
        while True:
            if not first:
                data = await stream.receive_some(65536)
                now = time.perf_counter()
                if not data:
                    return False
                raw += data
            first = False
            ended = False
            if self._chunked:
                pos = 0
                while True:
                    eol = raw.find(b"\r\n", pos)
                    if eol < 0:
                        break
                    size = int(raw[pos:eol].split(b";", 1)[0], 16)
                    end = eol + 2 + size + 2
                    if len(raw) < end:
                        break
                    if size == 0:
                        ended = True
                        pos = end
                        break
                    body += raw[eol + 2 : eol + 2 + size]
                    pos = end
                del raw[:pos]
            else:
                body += raw
                raw.clear()
            cut = body.rfind(b"\n\n")
            if cut >= 0:
                blocks = bytes(body[:cut]).split(b"\n\n")
                del body[: cut + 2]
                for block in blocks:
                    name = b"message"
                    data_line = b""
                    for line in block.split(b"\n"):
                        if line.startswith(b"data: "):
                            data_line = line[6:]
                        elif line.startswith(b"event: "):
                            name = line[7:]
                    if data_line and on_event(name, data_line, now):
                        return True
            if ended:
                return False

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)
