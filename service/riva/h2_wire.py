"""The client side of HTTP/2, as much of it as gRPC uses: frames, HPACK and flow control.

Why not the ``h2`` library: it is general (server and client, push, priorities, every
validation) and it pays for that on every frame. Profiled at 100 live streams, its receive
path was the largest single cost of the gateway's thread above hypercorn's own, and the
frames it spends it on are the plainest there are: a DATA frame per result, and two or
three WINDOW_UPDATEs per chunk of audio from gRPC servers, which widen windows eagerly.
Here a frame is a 9-byte header unpacked once and a branch on its type; HPACK stays the
``hpack`` library's.

Sans-IO like ``h2``: ``receive`` takes the peer's bytes and calls the ``Listener``,
``take_output`` hands over what to send. A peer that breaks the protocol raises
``WireError``, which ends the connection (its calls then end as UNAVAILABLE).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

import hpack

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER: Final = struct.Struct(">BHBBL")  # length (24 bits: 8 + 16), type, flags, stream id
_SETTING: Final = struct.Struct(">HL")
_U32: Final = struct.Struct(">L")

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 0x0, 0x1, 0x3, 0x6, 0x9
ERROR_NAMES: Final = (  # RFC 9113 section 7, by code
    *("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED"),
    *("FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM"),
    *("INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"),
)
CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY = 0x8, 0x7, 0xB, 0xC

MAX_WINDOW: Final = 2**31 - 1
MAX_STREAM_ID: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65_535
DEFAULT_FRAME_SIZE: Final = 16_384  # what we accept (we never raise it), and the peer's until it says
STREAM_WINDOW: Final = 1 << 20  # what each stream may send us before we widen it again
CONNECTION_WINDOW: Final = 16 << 20
MAX_HEADER_BLOCK: Final = 64 * 1024  # a response's headers or trailers, CONTINUATIONs included


class WireError(Exception):
    """The peer broke HTTP/2; the connection cannot go on."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{error_name(code)}: {message}")
        self.code = code


def error_name(code: int) -> str:
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"error {code:#x}"


class Listener(Protocol):
    """What the connection hears; every method runs inside ``Wire.receive``."""

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    def on_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None: ...

    def on_reset(self, stream_id: int, error_code: int) -> None: ...

    def on_window(self, stream_id: int) -> None:
        """More room to send: on one stream, or (0) on all of them."""

    def on_settings(self) -> None: ...

    def on_ping_ack(self) -> None: ...

    def on_goaway(self, last_stream_id: int, error_code: int) -> None: ...


@dataclass(slots=True)
class _Stream:
    send_window: int
    receive_window: int = STREAM_WINDOW
    sent_end: bool = False


class Wire:
    """One HTTP/2 connection's state, client side. Streams we no longer track (reset by us,
    or ended both ways) have their frames dropped, as RFC 9113 allows for closed streams."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._out = bytearray()
        self._in = bytearray()
        self._encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, towards the peer
        self._receive_window = CONNECTION_WINDOW
        self._initial_send_window = DEFAULT_WINDOW
        self._block: tuple[int, bool, bytearray] | None = None  # a header block awaiting CONTINUATION
        self.max_frame_size = DEFAULT_FRAME_SIZE  # the peer's
        self.max_concurrent_streams = 2**31  # the peer's; unlimited until its SETTINGS say

    # -- sending ---------------------------------------------------------------------
    def start(self) -> None:
        settings = _SETTING.pack(0x2, 0) + _SETTING.pack(0x4, STREAM_WINDOW)  # no push; our stream window
        self._out += PREFACE
        self._frame(SETTINGS, 0, 0, settings)
        self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW))

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def ids_left(self) -> bool:
        return self._next_stream_id <= MAX_STREAM_ID

    def open_stream(self, headers: list[tuple[bytes, bytes]]) -> int:
        """Send a request's headers on a new stream; the caller checks ``ids_left`` and
        ``open_streams`` against ``max_concurrent_streams`` first."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        block = self._encoder.encode(headers)
        size = self.max_frame_size
        first, rest = block[:size], block[size:]
        self._frame(HEADERS, END_HEADERS if not rest else 0, stream_id, first)
        while rest:
            piece, rest = rest[:size], rest[size:]
            self._frame(CONTINUATION, END_HEADERS if not rest else 0, stream_id, piece)
        self._streams[stream_id] = _Stream(send_window=self._initial_send_window)
        return stream_id

    def window(self, stream_id: int) -> int:
        """How many DATA bytes the peer takes on this stream now (0 once it is closed)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.sent_end:
            return 0
        return min(self._send_window, stream.send_window)

    def send_data(self, stream_id: int, data: bytes) -> None:
        """At most ``window(stream_id)`` and ``max_frame_size`` bytes."""
        stream = self._streams[stream_id]
        size = len(data)
        stream.send_window -= size
        self._send_window -= size
        self._frame(DATA, 0, stream_id, data)

    def end_stream(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.sent_end:
            stream.sent_end = True
            self._frame(DATA, END_STREAM, stream_id, b"")

    def reset(self, stream_id: int, code: int) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._frame(RST_STREAM, 0, stream_id, _U32.pack(code))

    def ping(self, payload: bytes) -> None:
        self._frame(PING, 0, 0, payload)

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)
        self._out += _HEADER.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id)
        self._out += payload

    # -- receiving -------------------------------------------------------------------
    def receive(self, data: bytes | bytearray) -> None:
        buffer = self._in
        buffer += data
        end_of_buffer = len(buffer)
        position = 0
        while end_of_buffer - position >= 9:
            high, low, kind, flags, stream_id = _HEADER.unpack_from(buffer, position)
            size = (high << 16) | low
            if size > DEFAULT_FRAME_SIZE:
                raise WireError(FRAME_SIZE_ERROR, f"a frame of {size} bytes (at most {DEFAULT_FRAME_SIZE})")
            end = position + 9 + size
            if end > end_of_buffer:
                break
            payload = bytes(buffer[position + 9 : end])
            position = end
            self._receive_frame(kind, flags, stream_id & MAX_STREAM_ID, payload)
        del buffer[:position]

    def _receive_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block is not None and kind != CONTINUATION:
            raise WireError(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == RST_STREAM:
            self._need(len(payload) == 4 and stream_id != 0, "RST_STREAM")
            if self._streams.pop(stream_id, None) is not None:
                self._listener.on_reset(stream_id, _U32.unpack(payload)[0])
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            self._need(len(payload) == 8 and stream_id == 0, "PING")
            if flags & ACK:
                self._listener.on_ping_ack()
            else:
                self._frame(PING, ACK, 0, payload)
        elif kind == GOAWAY:
            self._need(len(payload) >= 8 and stream_id == 0, "GOAWAY")
            last_stream_id, code = struct.unpack_from(">LL", payload)
            self._listener.on_goaway(last_stream_id & MAX_STREAM_ID, code)
        elif kind == PUSH_PROMISE:
            raise WireError(PROTOCOL_ERROR, "PUSH_PROMISE, though push is off")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 says

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        """Every DATA frame is consumed as it arrives (a call decodes its messages at once),
        so the windows are widened as soon as half of one is used: a peer never waits on us,
        and what a call may hold is bounded by the largest message it accepts."""
        self._need(stream_id != 0, "DATA")
        size = len(payload)  # flow control counts padding too
        self._receive_window -= size
        if self._receive_window < CONNECTION_WINDOW // 2:
            self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - self._receive_window))
            self._receive_window = CONNECTION_WINDOW
        data = _unpad(flags, payload)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            return
        end_stream = bool(flags & END_STREAM)
        stream.receive_window -= size
        if stream.receive_window < STREAM_WINDOW // 2 and not end_stream:
            self._frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(STREAM_WINDOW - stream.receive_window))
            stream.receive_window = STREAM_WINDOW
        self._listener.on_data(stream_id, data, end_stream)
        if end_stream:
            self._peer_ended(stream_id)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._need(stream_id != 0, "HEADERS")
        block = _unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            self._need(len(block) >= 5, "HEADERS")
            block = block[5:]
        end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS:
            self._header_block(stream_id, block, end_stream)
        else:
            self._block = (stream_id, end_stream, bytearray(block))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block is None or self._block[0] != stream_id:
            raise WireError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        block = self._block[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise WireError(PROTOCOL_ERROR, f"a header block over {MAX_HEADER_BLOCK} bytes")
        if flags & END_HEADERS:
            end_stream = self._block[1]
            self._block = None
            self._header_block(stream_id, bytes(block), end_stream)

    def _header_block(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        try:  # decoded even for a stream we dropped: the peer's HPACK table depends on it
            headers = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise WireError(COMPRESSION_ERROR, f"unreadable headers ({exc})") from None
        if stream_id not in self._streams:
            self._check_known(stream_id)
            return
        self._listener.on_headers(stream_id, headers, end_stream)  # type: ignore[arg-type]
        if end_stream:
            self._peer_ended(stream_id)

    def _peer_ended(self, stream_id: int) -> None:
        """The peer is done with the stream: so are we (a gRPC call ends with its status).
        If we had not ended our side, a RST_STREAM(NO_ERROR) frees the stream at once."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None and not stream.sent_end:
            self._frame(RST_STREAM, 0, stream_id, _U32.pack(NO_ERROR))

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._need(stream_id == 0 and len(payload) % 6 == 0, "SETTINGS")
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == 0x1:
                self._encoder.header_table_size = value
            elif key == 0x3:
                self.max_concurrent_streams = value
            elif key == 0x4:
                if value > MAX_WINDOW:
                    raise WireError(FLOW_CONTROL_ERROR, f"an initial window of {value}")
                delta, self._initial_send_window = value - self._initial_send_window, value
                for stream in self._streams.values():  # may go below zero: RFC 9113 6.9.2
                    stream.send_window += delta
            elif key == 0x5:
                if not DEFAULT_FRAME_SIZE <= value < 1 << 24:
                    raise WireError(PROTOCOL_ERROR, f"a maximum frame size of {value}")
                self.max_frame_size = value
        self._frame(SETTINGS, ACK, 0, b"")
        self._listener.on_settings()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        self._need(len(payload) == 4, "WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & MAX_WINDOW
        if increment == 0:
            raise WireError(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise WireError(FLOW_CONTROL_ERROR, "the connection's window passed 2^31-1")
            self._listener.on_window(0)
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise WireError(FLOW_CONTROL_ERROR, f"stream {stream_id}'s window passed 2^31-1")
        self._listener.on_window(stream_id)

    def _check_known(self, stream_id: int) -> None:
        """A frame for a stream we do not track: fine if we opened it once (it closed since),
        a protocol error if the server names a stream nobody opened."""
        if stream_id % 2 == 0 or stream_id >= self._next_stream_id:
            raise WireError(PROTOCOL_ERROR, f"a frame for stream {stream_id}, which was never opened")

    @staticmethod
    def _need(ok: bool, kind: str) -> None:
        if not ok:
            raise WireError(PROTOCOL_ERROR, f"a malformed {kind} frame")


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise WireError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
