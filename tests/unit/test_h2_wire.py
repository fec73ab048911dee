"""``h2_wire`` against an independent HTTP/2 implementation: the ``h2`` library's server side
(which hypercorn uses), byte for byte in memory, and against hand-made frames for what a
well-behaved server never sends. The end-to-end suite covers grpc-core (fake_riva)."""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from riva.client.proto import riva_asr_pb2 as asr

from service.riva import h2_wire
from service.riva.h2_connection import PREFIX
from service.riva.h2_transport import audio_message
from service.riva.h2_wire import Wire, WireError

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"riva:50051"),
    (b":path", b"/nvidia.riva.asr.RivaSpeechRecognition/StreamingRecognize"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


class Recorder:
    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.heard.append(("data", stream_id, data, end_stream))

    def on_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.heard.append(("headers", stream_id, dict(headers), end_stream))

    def on_reset(self, stream_id: int, error_code: int) -> None:
        self.heard.append(("reset", stream_id, error_code))

    def on_window(self, stream_id: int) -> None:
        self.heard.append(("window", stream_id))

    def on_settings(self) -> None:
        self.heard.append(("settings",))

    def on_ping_ack(self) -> None:
        self.heard.append(("pong",))

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self.heard.append(("goaway", last_stream_id, error_code))

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.heard]


class Pair:
    """A client ``Wire`` and an ``h2`` server, each handed the other's bytes on ``pump``."""

    def __init__(self, server_settings: dict[h2.settings.SettingCodes, int] | None = None) -> None:
        self.heard = Recorder()
        self.client = Wire(self.heard)
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.server.local_settings = h2.settings.Settings(client=False, initial_values=server_settings)
        self.server.initiate_connection()
        self.client.start()
        self.server_events: list[h2.events.Event] = []
        self.pump()

    def pump(self) -> list[h2.events.Event]:
        events: list[h2.events.Event] = []
        for _ in range(10):
            to_server = self.client.take_output()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                break
            if to_server:
                events += self.server.receive_data(to_server)
            if to_client:
                self.client.receive(to_client)
        self.server_events += events
        return events


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">BHBBL", len(payload) >> 16, len(payload) & 0xFFFF, kind, flags, stream_id) + payload


def test_a_whole_call_both_ways() -> None:
    pair = Pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7})
    assert ("settings",) in pair.heard.heard and pair.client.max_concurrent_streams == 7
    stream_id = pair.client.open_stream(REQUEST)
    pair.client.send_data(stream_id, b"\0\0\0\0\3abc")
    pair.client.end_stream(stream_id)
    events = pair.pump()
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert dict(request.headers)[b":path"] == REQUEST[3][1]
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"\0\0\0\0\3abc"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)

    pair.server.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    pair.server.send_data(stream_id, b"\0\0\0\0\2ok")
    pair.server.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)
    pair.pump()
    heard = [entry for entry in pair.heard.heard if entry[0] in ("headers", "data")]
    assert heard == [
        ("headers", stream_id, {b":status": b"200", b"content-type": b"application/grpc"}, False),
        ("data", stream_id, b"\0\0\0\0\2ok", False),
        ("headers", stream_id, {b"grpc-status": b"0"}, True),
    ]
    assert pair.client.open_streams == 0
    assert pair.client.open_stream(REQUEST) == stream_id + 2


def test_sending_respects_the_servers_windows_and_hears_them_grow() -> None:
    pair = Pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    stream_id = pair.client.open_stream(REQUEST)
    assert pair.client.window(stream_id) == 10
    pair.client.send_data(stream_id, b"x" * 10)
    pair.pump()
    assert pair.client.window(stream_id) == 0
    pair.server.acknowledge_received_data(10, stream_id)
    pair.server.increment_flow_control_window(100, stream_id=stream_id)
    pair.pump()
    assert ("window", stream_id) in pair.heard.heard
    assert pair.client.window(stream_id) == 110

    pair.server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 5})  # open streams shrink too
    pair.pump()
    assert pair.client.window(stream_id) == 105


def test_long_header_blocks_go_both_ways_in_continuations() -> None:
    pair = Pair()
    big = b"v" * 40_000
    stream_id = pair.client.open_stream([*REQUEST, (b"x-big", big)])
    request = next(e for e in pair.pump() if isinstance(e, h2.events.RequestReceived))
    assert dict(request.headers)[b"x-big"] == big

    pair.server.send_headers(stream_id, [(b":status", b"200"), (b"x-also", big[:30_000])], end_stream=True)
    pair.pump()
    assert pair.heard.heard[-1] == ("headers", stream_id, {b":status": b"200", b"x-also": big[:30_000]}, True)


def test_padded_data_is_unpadded_and_big_answers_widen_the_windows() -> None:
    pair = Pair()
    stream_id = pair.client.open_stream(REQUEST)
    pair.pump()
    pair.server.send_headers(stream_id, [(b":status", b"200")])
    pair.server.send_data(stream_id, b"abc", pad_length=20)
    pair.pump()
    assert pair.heard.heard[-1] == ("data", stream_id, b"abc", False)
    # far more than one window's worth: the server only gets to send it if we widen in time
    frames = (h2_wire.CONNECTION_WINDOW // 16_384) * 11 // 10  # past the stream's and the connection's
    for _ in range(frames):
        pair.server.send_data(stream_id, b"z" * 16_384)
        pair.pump()
    received = sum(len(entry[2]) for entry in pair.heard.heard if entry[0] == "data")
    assert received == 3 + frames * 16_384


def test_pings_are_answered_and_acknowledged() -> None:
    pair = Pair()
    pair.server.ping(b"12345678")
    events = pair.pump()
    assert any(isinstance(e, h2.events.PingAckReceived) and e.ping_data == b"12345678" for e in events)
    pair.client.ping(b"abcdefgh")
    pair.pump()
    assert pair.heard.kinds()[-1] == "pong"


def test_resets_goaways_and_an_early_end_free_the_stream() -> None:
    pair = Pair()
    first = pair.client.open_stream(REQUEST)
    second = pair.client.open_stream(REQUEST)
    third = pair.client.open_stream(REQUEST)
    pair.pump()
    pair.server.reset_stream(first, h2.errors.ErrorCodes.REFUSED_STREAM)
    # the server answers (trailers-only) before the client ended its side: the client resets
    pair.server.send_headers(second, [(b":status", b"200"), (b"grpc-status", b"3")], end_stream=True)
    events = pair.pump()
    assert ("reset", first, h2_wire.REFUSED_STREAM) in pair.heard.heard
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == second for e in events)
    assert pair.client.open_streams == 1
    pair.server.close_connection(last_stream_id=third)
    pair.pump()
    assert pair.heard.heard[-1] == ("goaway", third, 0)
    pair.client.reset(third, h2_wire.CANCEL)
    assert pair.client.open_streams == 0


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (frame(h2_wire.PUSH_PROMISE, 0x4, 1, b"\0\0\0\2"), "PUSH_PROMISE"),
        (frame(h2_wire.HEADERS, 0x4, 2, b"\x88"), "never opened"),
        (frame(h2_wire.DATA, 0, 1, b"x" * 17_000), "FRAME_SIZE_ERROR"),
        (frame(h2_wire.WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), "WINDOW_UPDATE of 0"),
        (frame(h2_wire.WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1)), r"2\^31-1"),
        (frame(h2_wire.HEADERS, 0, 1, b"\x88") + frame(h2_wire.DATA, 0, 1, b"x"), "interrupted"),
        (frame(h2_wire.CONTINUATION, 0x4, 1, b"\x88"), "without its HEADERS"),
        (frame(h2_wire.DATA, 0x8, 1, b"\x05ab"), "padding"),
        (frame(h2_wire.SETTINGS, 0, 0, struct.pack(">HL", 0x4, 2**31)), "initial window"),
        (frame(h2_wire.PING, 0, 0, b"short"), "malformed PING"),
        (frame(h2_wire.HEADERS, 0x4, 1, b"\xff\xff\xff\xff"), "unreadable headers"),
    ],
)
def test_a_server_that_breaks_http2_gets_a_wire_error(raw: bytes, words: str) -> None:
    pair = Pair()
    pair.client.open_stream(REQUEST)
    with pytest.raises(WireError, match=words):
        pair.client.receive(raw)


def test_frames_arrive_in_any_pieces() -> None:
    pair = Pair()
    stream_id = pair.client.open_stream(REQUEST)
    pair.pump()
    pair.server.send_headers(stream_id, [(b":status", b"200")])
    pair.server.send_data(stream_id, b"hello")
    for byte in pair.server.data_to_send():
        pair.client.receive(bytes([byte]))
    assert pair.heard.heard[-1] == ("data", stream_id, b"hello", False)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 3200, 16_383, 16_384, 2**21 + 5])
def test_the_hand_written_audio_message_is_protobufs_own(size: int) -> None:
    audio = bytes(range(256)) * (size // 256) + bytes(size % 256)
    payload = asr.StreamingRecognizeRequest(audio_content=audio).SerializeToString()
    assert audio_message(audio) == PREFIX.pack(False, len(payload)) + payload
    assert asr.StreamingRecognizeRequest.FromString(audio_message(audio)[PREFIX.size :]).audio_content == audio
