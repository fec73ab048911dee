"""The audio WebSocket: send the audio at its pace, then ``end``, and wait for the server to
close. A dropped socket is opened again with backoff; the server's first message then says how
much audio it has (``{"type": "resumed", "audio_bytes_received": N}``) and the client resends
from byte N out of what it kept since the last point the server confirmed (a final result)."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from service.client.api import Options, Session, describe_transport_error, websocket_url
from service.client.audio import AudioInput, chunk_bytes
from service.client.errors import ClientError
from service.client.events import SessionResult
from service.client.pacing import Pacer
from service.client.resend import SentAudio

GRACE_S = 5.0  # how long a closing handshake may take
END = json.dumps({"type": "end"})
DROPPED = frozenset({1001, 1006, 1012})  # going away, no close frame at all, restarting: reconnect
BUSY_ON_RESUME = frozenset({1013, 4409})  # overloaded, the old socket not yet noticed gone: try again
RETRY_HTTP = frozenset({409, 429, 502, 503, 504})
FINISHED_ON_RESUME = 4410  # the session ended while the socket was away (after ``end``: fine)
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


@dataclass
class _Link:
    """One socket's outcome: how the server closed it and the error frames it sent first."""

    code: int | None = None
    reason: str | None = None
    errors: list[str] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)
    timed_out: bool = False
    streaming: bool = False  # opened (and resumed): audio went out on it


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


def _error_frame(message: str | bytes) -> str | None:
    if not isinstance(message, str):
        return None
    try:
        control = json.loads(message)
    except ValueError:
        return None
    if isinstance(control, dict) and control.get("type") == "error":
        return f"{control.get('code') or 'error'}: {control.get('message') or 'no details'}"
    return None


async def _receive(ws: WebSocketConnection, link: _Link) -> None:
    """Read the socket until the server closes it, keeping its error frames."""
    try:
        while True:
            problem = _error_frame(await ws.get_message())
            if problem is not None:
                link.errors.append(problem)
    except ConnectionClosed as exc:
        if exc.reason is not None:
            link.code, link.reason = exc.reason.code, exc.reason.reason
    finally:
        link.closed.set()


@contextlib.asynccontextmanager
async def _open_websocket(
    url: str, headers: list[tuple[bytes, bytes]], connect_timeout_s: float
) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's socket, with its TCP stream closed after the closing handshake: 0.12
    leaves it open when the server starts that handshake, and a long-lived program using the
    client must not leak a socket per session."""
    stream = None
    try:
        async with open_websocket_url(
            url, extra_headers=headers, connect_timeout=connect_timeout_s, disconnect_timeout=GRACE_S
        ) as ws:
            stream = ws._stream
            yield ws
    finally:
        if stream is not None:
            await stream.aclose()


class AudioSender:
    """Streams one input into one session, over as many sockets as it takes."""

    def __init__(
        self, options: Options, session: Session, audio: AudioInput, result: SessionResult, stop: trio.Event
    ) -> None:
        self.options = options
        self.session = session
        self.audio = audio
        self.result = result
        self.stop = stop
        self.url = websocket_url(options.base_url, session.audio_url)
        fmt = audio.format
        self.bytes_per_second = fmt.bytes_per_second
        self.frame = chunk_bytes(fmt, options.chunk_ms)
        self.sent = SentAudio(max_bytes=int(options.resend_buffer_s * fmt.bytes_per_second), align=fmt.bytes_per_sample)
        self.pacer = Pacer(fmt.bytes_per_second if options.rate == "realtime" else None)
        self.input_done = False
        self.end_sent = False

    async def run(self) -> None:
        """Until the server closes the socket after ``end``; ClientError when that cannot be."""
        first = True
        outage_since: float | None = None  # when the socket last dropped, while it stays down
        attempt = 0
        while True:
            link = _Link()
            try:
                await self._one_socket(link, resuming=not first)
            except HandshakeError as exc:
                if first or not self._retryable(exc):
                    problem = _handshake_problem(exc)
                    raise ClientError(f"cannot open the audio WebSocket at {self.url}: {problem}") from None
                why = _handshake_problem(exc)
            else:
                if link.timed_out:
                    raise ClientError(
                        f"the server did not finish within {self.options.finish_timeout_s:g} s of the end of audio"
                    )
                if not first and link.code == FINISHED_ON_RESUME and self.end_sent:
                    return  # it finished with what it had: the event stream has the rest
                if link.code not in DROPPED and (first or link.code not in BUSY_ON_RESUME):
                    closed = describe_close(link.code, link.reason, link.errors)
                    if closed is not None:
                        raise ClientError(closed)
                    return
                why = f"closed {link.code}" + (f" {link.reason}" if link.reason else "")
            first = False
            if link.streaming:  # it worked for a while: this is a new outage
                outage_since, attempt = None, 0
            if self.result.events_done.is_set():
                return  # the session is over: nothing to resume
            now = trio.current_time()
            outage_since = now if outage_since is None else outage_since
            if now - outage_since > self.options.reconnect_s:
                raise ClientError(
                    f"lost the audio WebSocket ({why}) and could not resume it within {self.options.reconnect_s:g} s"
                )
            attempt += 1
            self.result.reconnects += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            with trio.move_on_after(delay):
                await self.result.events_done.wait()

    @staticmethod
    def _retryable(exc: HandshakeError) -> bool:
        if isinstance(exc, ConnectionRejected):
            return exc.status_code in RETRY_HTTP
        return True  # refused, reset, timed out: the gateway may be on its way back

    async def _one_socket(self, link: _Link, resuming: bool) -> None:
        headers = [(b"Authorization", f"Bearer {self.session.token}".encode())]
        async with (
            _open_websocket(self.url, headers, self.options.connect_timeout_s) as ws,
            trio.open_nursery() as nursery,
        ):
            backlog: list[bytes] = []
            if resuming:
                offset = await self._resumed_at(ws, link)
                if offset is None:
                    return  # closed at once (an error frame, or the session is over): link says why
                backlog = self._backlog(offset)
            link.streaming = True
            nursery.start_soon(_receive, ws, link)
            try:
                for chunk in backlog:
                    await ws.send_message(chunk)
                await self.send_input(ws)
                await ws.send_message(END)
                self.end_sent = True
            except ConnectionClosed:
                pass  # the server hung up or the network dropped: _receive has the close code
            with trio.move_on_after(self.options.finish_timeout_s) as waiting:
                await link.closed.wait()
            link.timed_out = waiting.cancelled_caught
            nursery.cancel_scope.cancel()

    async def _resumed_at(self, ws: WebSocketConnection, link: _Link) -> int | None:
        """The server's ``resumed`` offset, or None when it closes the socket instead."""
        try:
            with trio.fail_after(self.options.connect_timeout_s):
                message = await ws.get_message()
                while (problem := _error_frame(message)) is not None:
                    link.errors.append(problem)
                    message = await ws.get_message()
        except ConnectionClosed as exc:
            if exc.reason is not None:
                link.code, link.reason = exc.reason.code, exc.reason.reason
            return None
        except trio.TooSlowError:
            raise ClientError("the server did not say where to resume the audio") from None
        try:
            resumed = json.loads(message)
            offset = int(resumed["audio_bytes_received"]) if resumed.get("type") == "resumed" else -1
        except (ValueError, TypeError, KeyError, AttributeError):
            offset = -1
        if not 0 <= offset <= self.sent.end:
            raise ClientError(f"the server's answer to a resumed audio socket makes no sense: {str(message)[:80]!r}")
        return offset

    def _backlog(self, offset: int) -> list[bytes]:
        chunks, lost = self.sent.since(offset)
        if lost:
            keep = self.options.resend_buffer_s
            self.result.warnings.append(
                f"the server needed audio from {offset / self.bytes_per_second:.1f} s on, but only the last {keep:g} s"
                f" since its last final are kept (--resend-buffer): {lost / self.bytes_per_second:.1f} s of audio lost"
            )
        return chunks

    async def send_input(self, ws: WebSocketConnection) -> None:
        """The rest of the input, each frame kept for resending before it goes out."""
        while not self.input_done:
            self.sent.confirm(int(self.result.confirmed_seconds * self.bytes_per_second))
            chunk = b""
            if not self.stop.is_set():
                if self.audio.blocking:
                    chunk = await trio.to_thread.run_sync(self.audio.read, self.frame)
                else:  # a file: a frame is read and decoded in well under a millisecond
                    chunk = self.audio.read(self.frame)
                    await trio.lowlevel.checkpoint()
            if not chunk:
                self.input_done = True
                return
            await self.pacer.wait(self.sent.end, self.stop)
            if self.stop.is_set():  # stopped while this frame waited for its time: it was never "captured"
                self.input_done = True
                return
            self.sent.append(chunk)
            self.result.audio_bytes = self.sent.end
            await ws.send_message(chunk)
