"""gRPC over one HTTP/2 connection, spoken by trio itself (the ``h2`` transport's wire).

Why not ``grpc.aio``: it runs on an asyncio loop in another thread, so every chunk crosses
threads twice (a pipe write and a wake-up each way) and the two threads take turns on the
GIL. Here every call to a target is a stream of one HTTP/2 connection (``h2_wire`` keeps
the protocol's state, flow control included), and the connection is three trio tasks: one
reads and dispatches frames (a response is decoded and handed to its call in the same
step), one writes whatever the wire has queued (on a plaintext socket the caller writes
itself while that task is idle; the task sends what the socket did not take, and everything
over TLS), and one pings Riva while calls are open, so a silent peer is found.

A call that the connection can no longer carry (the socket failed, Riva went away or sent
GOAWAY) ends with UNAVAILABLE, which sessions treat as retryable; the next call opens a new
connection.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import struct
import urllib.parse
from collections.abc import Callable
from typing import Final

import grpc
import trio

from service.errors import ReserveError, UpstreamUnavailable, from_status
from service.riva import h2_wire
from service.riva.channel import MAX_MESSAGE_BYTES, RivaTarget

log = logging.getLogger("reserve.riva")

PREFIX: Final = struct.Struct(">?I")  # gRPC's length prefix: compressed flag, message length
RECEIVE_BYTES = 256 * 1024
WRITE_TIMEOUT_S = 10.0  # a Riva that takes no bytes this long is gone
PING_TIMEOUT_S = 10.0
_RESET_STATUS: Final = {
    h2_wire.REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    h2_wire.CANCEL: grpc.StatusCode.CANCELLED,
    h2_wire.ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    h2_wire.INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}
_STATUS_CODES: Final = {str(code.value[0]): code for code in grpc.StatusCode}  # grpc-status: "0", "14"...
_HTTP_STATUS: Final = {  # gRPC's mapping of HTTP statuses a proxy may answer with
    "400": grpc.StatusCode.INTERNAL,
    "401": grpc.StatusCode.UNAUTHENTICATED,
    "403": grpc.StatusCode.PERMISSION_DENIED,
    "404": grpc.StatusCode.UNIMPLEMENTED,
    "429": grpc.StatusCode.UNAVAILABLE,
    "502": grpc.StatusCode.UNAVAILABLE,
    "503": grpc.StatusCode.UNAVAILABLE,
    "504": grpc.StatusCode.UNAVAILABLE,
}


class Call:
    """One gRPC call: an HTTP/2 stream of the connection. Every method runs in trio, none
    blocks; ``finished`` is set once Riva's status (or the reason there is none) is in."""

    def __init__(self, connection: Connection, stream_id: int, on_message: Callable[[bytes], None]) -> None:
        self.stream_id = stream_id
        self.finished = trio.Event()
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self._connection = connection
        self._on_message = on_message
        self._inbox = bytearray()
        self._outbox: collections.deque[bytes] = collections.deque()  # framed messages not yet on the wire
        self._offset = 0  # of the outbox's first message, already on the wire
        self._half_close = False  # asked for: end the stream once the outbox is out
        self._responded = False  # Riva's response headers came: the next headers are trailers
        self._sent_end = False
        self._room: trio.Event | None = None
        self._room_limit = 0

    # -- the caller's side ------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Messages not yet handed to the wire (Riva's flow-control window is closed on them)."""
        return len(self._outbox)

    def send_message(self, payload: bytes) -> None:
        self.send_framed(PREFIX.pack(False, len(payload)) + payload)

    def send_framed(self, message: bytes) -> None:
        """A message that already carries its gRPC length prefix."""
        self._outbox.append(message)
        self._pump()

    async def wait_room(self, limit: int) -> None:
        """Until fewer than ``limit`` messages wait for Riva's window (or the call is over)."""
        while len(self._outbox) >= limit and not self.finished.is_set():
            room = self._room = trio.Event()
            self._room_limit = limit
            await room.wait()

    def close_send(self) -> None:
        self._half_close = True
        self._pump()

    def cancel(self) -> None:
        """From a caller that no longer wants the answer: reset the stream."""
        if not self.finished.is_set():
            self._connection.reset(self.stream_id, h2_wire.CANCEL)
            self._finish(grpc.StatusCode.CANCELLED, "cancelled by the gateway")

    def error(self) -> ReserveError | None:
        if self.code is None or self.code == grpc.StatusCode.OK:
            return None
        return from_status(self.code, self.details)

    # -- the connection's side ----------------------------------------------------------
    def _pump(self) -> None:
        """Hand the wire as much of the outbox as Riva's flow-control window takes."""
        if self._sent_end or self.finished.is_set():
            return
        wire = self._connection.wire
        stream_id = self.stream_id
        sent = False
        while self._outbox:
            head = self._outbox[0]
            size = min(wire.window(stream_id), wire.max_frame_size, len(head) - self._offset)
            if size <= 0:
                break
            end = self._offset + size
            wire.send_data(stream_id, head if size == len(head) else head[self._offset : end])
            sent = True
            if end < len(head):
                self._offset = end
                continue
            self._outbox.popleft()
            self._offset = 0
        if self._half_close and not self._outbox:
            wire.end_stream(stream_id)
            self._sent_end = sent = True
        if sent:
            self._connection.mark_dirty()
        self._connection.note_blocked(self, bool(self._outbox) and not self._sent_end)
        room = self._room
        if room is not None and len(self._outbox) < self._room_limit:
            self._room = None
            room.set()

    def _data(self, data: bytes) -> None:
        inbox = self._inbox
        inbox += data
        while len(inbox) >= PREFIX.size and not self.finished.is_set():
            compressed, length = PREFIX.unpack_from(inbox)
            if compressed or length > MAX_MESSAGE_BYTES:
                why = "a compressed message" if compressed else f"a message of {length} bytes"
                self._fail_here(grpc.StatusCode.INTERNAL, f"Riva sent {why}")
                return
            if len(inbox) < PREFIX.size + length:
                return
            message = bytes(inbox[PREFIX.size : PREFIX.size + length])
            del inbox[: PREFIX.size + length]
            try:
                self._on_message(message)
            except Exception as exc:  # one call's unreadable answer must not end the others'
                log.exception("a Riva response could not be handled")
                self._fail_here(grpc.StatusCode.INTERNAL, f"unreadable answer from Riva: {type(exc).__name__}")

    def _headers(self, headers: list[tuple[bytes, bytes]], *, end_stream: bool) -> None:
        """Response headers, trailers, or both at once (a "trailers-only" answer)."""
        first, self._responded = not self._responded, True
        fields = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        status = fields.get("grpc-status")
        if status is not None:
            self._finish(_code(status), urllib.parse.unquote(fields.get("grpc-message", "")))
        elif first and fields.get(":status", "200") != "200":
            http = fields[":status"]
            self._fail_here(_HTTP_STATUS.get(http, grpc.StatusCode.UNKNOWN), f"Riva answered HTTP {http}")
        elif not first or end_stream:
            self._finish(grpc.StatusCode.INTERNAL, "Riva's trailers carry no grpc-status")

    def _ended(self) -> None:
        self._finish(grpc.StatusCode.INTERNAL, "Riva ended the call without a status")

    def _reset(self, error_code: int) -> None:
        code = _RESET_STATUS.get(error_code, grpc.StatusCode.INTERNAL)
        self._finish(code, f"Riva reset the stream ({h2_wire.error_name(error_code)})")

    def _fail_here(self, code: grpc.StatusCode, details: str) -> None:
        self._connection.reset(self.stream_id, h2_wire.CANCEL)
        self._finish(code, details)

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if self.finished.is_set():
            return
        self.code, self.details = code, details
        self._outbox.clear()
        self._connection.note_blocked(self, False)
        self.finished.set()
        if self._room is not None:
            self._room.set()
        self._connection.forget(self)


class Connection:
    """One HTTP/2 connection to a target, and the tasks that drive it (``run``). It is the
    wire's listener: what Riva sends reaches the calls from inside ``Wire.receive``."""

    def __init__(self, target: RivaTarget, *, connect_timeout_s: float, keepalive_s: float) -> None:
        self.target = target
        self.wire = h2_wire.Wire(self)
        self.closing = False  # no new calls: it failed, or Riva said GOAWAY
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._calls: dict[int, Call] = {}
        self._blocked: set[Call] = set()  # calls with messages waiting for Riva's window
        self._dirty = trio.Event()
        self._fd: int | None = None  # a plaintext socket's, while nothing else writes to it: see mark_dirty
        self._writing = False  # the writer is inside send_all
        self._unsent = b""  # what a direct write left over: the writer sends it before anything else
        self._pong = trio.Event()
        self._done = trio.Event()
        self._settled = trio.Event()
        self._failure: str | None = None
        self._scheme = b"https" if target.ssl_context is not None else b"http"
        self._base_headers = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":authority", target.uri.encode()),
        ]
        self._call_headers = [
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"reserve-h2"),
            *((name.encode(), value.encode()) for name, value in target.metadata),
        ]

    @property
    def has_room(self) -> bool:
        """Below Riva's limit of concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS)."""
        return self.wire.open_streams < self.wire.max_concurrent_streams

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and exchange settings (raising UpstreamUnavailable if that fails within the
        connect deadline), then serve the calls until the connection ends; a failure then ends
        the calls, never the caller's nursery."""
        stream = await self._connect()
        self.wire.start()
        refused: str | None = None
        if isinstance(stream, trio.SocketStream):
            self._fd = stream.socket.fileno()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guard, self._write_loop, stream)
                nursery.start_soon(self._guard, self._read_loop, stream)
                self.mark_dirty()
                with trio.move_on_after(self._connect_timeout_s):
                    await self._settled.wait()  # Riva's SETTINGS: its stream limit is known
                if self.closing or not self._settled.is_set():
                    refused = self._failure or "no HTTP/2 settings in time"
                    nursery.cancel_scope.cancel()
                else:
                    nursery.start_soon(self._guard, self._keepalive)
                    task_status.started()
                    await self._done.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self.fail_all("the connection to Riva closed")  # forgets the fd before it is closed
            await _close(stream)
        if refused is not None:
            raise UpstreamUnavailable(f"Riva at {self.target.uri} did not start HTTP/2 ({refused})")

    def open_call(self, path: bytes, on_message: Callable[[bytes], None]) -> Call:
        if self.closing:
            raise UpstreamUnavailable("the connection to Riva is closing; retry")
        if not self.wire.ids_left:
            self.closing = True  # every stream id is spent: the next call gets a fresh connection
            raise UpstreamUnavailable("Riva's connection has no stream ids left; retry")
        if not self.has_room:  # Riva lowered its limit since the transport picked this connection
            raise UpstreamUnavailable("Riva's connection takes no more streams; retry")
        stream_id = self.wire.open_stream([*self._base_headers, (b":path", path), *self._call_headers])
        call = self._calls[stream_id] = Call(self, stream_id, on_message)
        self.mark_dirty()
        return call

    def mark_dirty(self) -> None:
        """The wire has bytes to send. On a plaintext socket that the writer is not using, they
        go at once, without blocking, from the caller's task: a chunk of audio then costs one
        ``send`` rather than a wake-up of the writer task as well (a pass of the scheduler);
        whatever the socket does not take, and everything on a TLS stream, the writer sends."""
        fd = self._fd
        if fd is not None and not self._writing and not self._unsent:
            data = self.wire.take_output()
            if not data:
                return
            try:
                written = os.write(fd, data)
            except OSError:  # full (BlockingIOError), or broken: then the writer's send_all fails the same way
                written = 0
            if written == len(data):
                return
            self._unsent = data[written:]
        self._dirty.set()

    def note_blocked(self, call: Call, blocked: bool) -> None:
        if blocked:
            self._blocked.add(call)
        else:
            self._blocked.discard(call)

    def reset(self, stream_id: int, code: int) -> None:
        self.wire.reset(stream_id, code)  # a no-op for a stream already closed both ways
        if self.wire.has_output:
            self.mark_dirty()

    def forget(self, call: Call) -> None:
        self._calls.pop(call.stream_id, None)
        if self.closing and not self._calls:
            self._done.set()

    def fail_all(self, reason: str) -> None:
        self._fd = None  # its number may soon be another file's
        self.closing = True
        self._settled.set()
        for call in list(self._calls.values()):
            call._finish(grpc.StatusCode.UNAVAILABLE, reason)
        self._done.set()

    # -- the three tasks -------------------------------------------------------------------
    async def _guard(self, loop: Callable[..., object], *args: object) -> None:
        try:
            await loop(*args)  # type: ignore[misc]
        except Exception as exc:  # the socket, the peer or the protocol failed: end every call
            self._failure = f"{type(exc).__name__}: {exc}"
            reason = f"lost the connection to Riva ({self._failure})"
            log.warning("%s at %s", reason, self.target.uri)
            self.fail_all(reason)

    async def _write_loop(self, stream: trio.abc.Stream) -> None:
        """One write per scheduling tick carries whatever every call queued meanwhile. Each
        write has a deadline: the one scope's, set for the write and lifted after it."""
        with trio.CancelScope() as write:
            while True:
                await self._dirty.wait()
                self._dirty = trio.Event()
                data = self._unsent + self.wire.take_output()
                self._unsent = b""
                if data:
                    write.deadline = trio.current_time() + WRITE_TIMEOUT_S
                    self._writing = True
                    await stream.send_all(data)
                    self._writing = False
                    write.deadline = math.inf
        raise TimeoutError(f"Riva took no bytes for {WRITE_TIMEOUT_S:g} s")

    async def _read_loop(self, stream: trio.abc.Stream) -> None:
        wire = self.wire
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise ConnectionError("Riva closed the connection")
            wire.receive(data)
            if wire.has_output:  # acknowledgements, window updates, pings' answers
                self.mark_dirty()

    # -- what the wire hears (h2_wire.Listener) -----------------------------------------------
    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        call = self._calls.get(stream_id)
        if call is not None:
            call._data(data)
            if end_stream:
                call._ended()

    def on_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        call = self._calls.get(stream_id)
        if call is not None:
            call._headers(headers, end_stream=end_stream)

    def on_reset(self, stream_id: int, error_code: int) -> None:
        call = self._calls.get(stream_id)
        if call is not None:
            call._reset(error_code)

    def on_window(self, stream_id: int) -> None:
        if stream_id == 0:  # the connection's window: every waiting call may go on
            self._pump_blocked()
            return
        call = self._calls.get(stream_id)
        if call is not None and call in self._blocked:
            call._pump()

    def on_settings(self) -> None:
        self._settled.set()  # Riva's stream limit is known; an initial window may have grown
        self._pump_blocked()

    def _pump_blocked(self) -> None:
        for call in list(self._blocked):  # a pump that empties a call's outbox takes it out of the set
            call._pump()

    def on_ping_ack(self) -> None:
        self._pong.set()

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        if error_code != h2_wire.NO_ERROR:
            log.warning("Riva at %s is closing the connection (%s)", self.target.uri, h2_wire.error_name(error_code))
        self._goaway(last_stream_id)

    async def _keepalive(self) -> None:
        """Ping while calls are open (a gRPC server may refuse pings when there are none)."""
        while True:
            await trio.sleep(self._keepalive_s)
            if not self._calls:
                continue
            self._pong = trio.Event()
            self.wire.ping(os.urandom(8))
            self.mark_dirty()
            with trio.move_on_after(PING_TIMEOUT_S):
                await self._pong.wait()
            if not self._pong.is_set():
                raise TimeoutError(f"Riva did not answer a keepalive ping within {PING_TIMEOUT_S:g} s")

    def _goaway(self, last_stream_id: int) -> None:
        """Riva is going away: calls it never took end retryable, the others may finish."""
        self.closing = True
        for call in list(self._calls.values()):
            if call.stream_id > last_stream_id:
                call._finish(grpc.StatusCode.UNAVAILABLE, "Riva is going away (GOAWAY)")
        if not self._calls:
            self._done.set()

    async def _connect(self) -> trio.abc.Stream:
        host, port = _host_port(self.target.uri)
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self._connect_timeout_s):
                stream = await trio.open_tcp_stream(host, port)
                if self.target.ssl_context is None:
                    return stream
                stream = tls = trio.SSLStream(stream, self.target.ssl_context, server_hostname=host)
                await tls.do_handshake()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            await _close(stream)
            why = "timed out" if isinstance(exc, trio.TooSlowError) else f"{type(exc).__name__}: {exc}"
            raise UpstreamUnavailable(f"cannot connect to Riva at {self.target.uri} ({why})") from None
        except BaseException:
            await _close(stream)
            raise
        if tls.selected_alpn_protocol() != "h2":
            await _close(stream)
            raise UpstreamUnavailable(f"Riva at {self.target.uri} does not speak HTTP/2 over TLS")
        return tls


async def _close(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await trio.aclose_forcefully(stream)


def _code(status: str) -> grpc.StatusCode:
    return _STATUS_CODES.get(status.strip(), grpc.StatusCode.UNKNOWN)


def _host_port(uri: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (gRPC's ``dns:///`` prefix allowed)."""
    address = uri.removeprefix("dns:///").removeprefix("dns:")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UpstreamUnavailable(f"Riva's address must be host:port, got {uri!r}")
    return host.strip("[]"), int(port)
