"""One realtime socket: the client's events in, its Reserve session's events out.

Sockets stay outside (``receive`` and ``send`` are given), so this is the protocol logic
alone. The Reserve session opens at the first audio, once the format is known (NVIDIA's
file mode reads it from the WAV header in that audio); until then ``session.update`` may
change anything, afterwards only what leaves the recognition settings unchanged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from service.errors import InvalidConfig, ReserveError
from service.realtime.dialect import CONVERSATION_EVENTS, Dialect
from service.realtime.messages import EventError, decode_audio, error_event, event_id_of, new_id, parse_client_event
from service.realtime.turns import Event, Turns
from service.realtime.wav import parse_wav_header
from service.sessions.config import RecognitionSettings
from service.sessions.driven import DrivenSession

log = logging.getLogger("reserve.realtime")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
JSON_OVERHEAD_BYTES = 4096  # an append's JSON beyond its base64 audio

OpenSession = Callable[[RecognitionSettings], Awaitable[DrivenSession]]
DIALECT_HINTS = {  # another dialect's configuration event: say how to get that dialect
    "transcription_session.update": "it belongs to OpenAI's beta API (connect with OpenAI-Beta: realtime=v1) "
    "or NVIDIA's (offer a realtime-token.<secret> subprotocol)",
    "session.update": "this connection speaks OpenAI's beta or NVIDIA's dialect: send transcription_session.update",
}


class Connection:
    def __init__(
        self,
        dialect: Dialect,
        *,
        send: Callable[[Event], Awaitable[None]],
        open_session: OpenSession,
        max_audio_bytes: int,
        idle_timeout_s: float,
    ) -> None:
        self.dialect = dialect
        self._idle_timeout_s = idle_timeout_s
        self.config = dialect.default_config()
        self.session_id = new_id("sess")
        self.close_code = CLOSE_NORMAL
        self.close_reason = "session finished"
        self._send = send
        self._open = open_session
        self._max_audio = max_audio_bytes
        self._max_event = max_audio_bytes * 4 // 3 + JSON_OVERHEAD_BYTES
        self._driven: DrivenSession | None = None
        self._settings: RecognitionSettings | None = None
        self._turns = Turns(dialect.style, manual=self.config.manual_turns)
        self._flush_targets: deque[int] = deque()
        self._targets_added = trio.Event()  # wakes the pump to wait for a new flush too
        self._header = bytearray()  # file mode: the first chunk(s), until the WAV data begins
        self._nursery: trio.Nursery | None = None

    @property
    def driven(self) -> DrivenSession | None:
        return self._driven

    async def run(self, receive: Callable[[], Awaitable[str | bytes | None]]) -> None:
        """Until the client goes, or the session ends (then ``close_code`` says how)."""
        await self._send(self.dialect.greeting(self.config, self.session_id))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._close_if_idle)
                while True:
                    message = await receive()
                    try:
                        await self._handle(parse_client_event(message, max_bytes=self._max_event))
                    except EventError as error:
                        await self._send(error_event(error))
        finally:
            if self._driven is not None:
                self._driven.close()

    async def _close_if_idle(self) -> None:
        """No audio within the idle timeout: the connection holds a slot of its key for nothing.
        (Once a session is open, the session's own idle timeout ends it, and the socket with it.)"""
        await trio.sleep(self._idle_timeout_s)
        if self._driven is None:
            error = EventError("idle_timeout", f"no audio within {self._idle_timeout_s:g} s; closing")
            await self._send(error_event(error))
            self._finish(CLOSE_NORMAL, "idle_timeout")

    # -- the client's events ---------------------------------------------------------------
    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        event_id = event_id_of(event)
        if kind == self.dialect.update_type:
            await self._update(event, event_id)
        elif kind == "input_audio_buffer.append":
            await self._append(event)
        elif kind == "input_audio_buffer.commit":
            await self._commit(event_id)
        elif kind == "input_audio_buffer.clear" and self.dialect.style != "nvidia":
            await self._clear()
        elif kind == "input_audio_buffer.done":
            await self._done()
        elif kind in CONVERSATION_EVENTS or kind.startswith(("session.", "transcription_session.")):
            hint = DIALECT_HINTS.get(kind, "it is not part of a transcription session")
            raise EventError(
                "unsupported_event", f"{kind} is not accepted here: {hint}", param="type", event_id=event_id
            )
        else:
            raise EventError("unknown_event", f"unknown event type {kind[:80]!r}", param="type", event_id=event_id)

    async def _update(self, event: dict[str, Any], event_id: str | None) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise EventError("invalid_value", '"session" must be an object', param="session", event_id=event_id)
        config = self.config.copy()
        self.dialect.apply_update(config, session, event_id)
        try:
            settings = config.to_settings()
        except EventError as error:
            error.event_id = event_id
            raise
        streaming = self._settings is not None
        if streaming and (settings != self._settings or config.manual_turns != self._turns.manual):
            raise EventError(
                "session_streaming",
                "recognition settings and turn detection cannot change once audio has started; open a new connection",
                param="session",
                event_id=event_id,
            )
        self.config = config
        if self._driven is None:
            self._turns.manual = config.manual_turns
        await self._send(self.dialect.updated(config, self.session_id))

    async def _append(self, event: dict[str, Any]) -> None:
        audio = decode_audio(event, max_bytes=self._max_audio)
        if self.config.file_mode and self._driven is None:
            samples = self._after_header(audio)
            if samples is None:
                return
            audio = samples
        if not audio:
            return
        driven = self._driven or await self._start()
        if driven is None:
            return
        self._turns.audio_since_commit = True
        await driven.send_audio(audio)
        runtime = event.get("runtime_config")
        if isinstance(runtime, dict) and str(runtime.get("force_eou", "")).lower() == "true":
            await driven.finalize()  # NVIDIA: end the utterance here, keep the stream going

    def _after_header(self, audio: bytes) -> bytes | None:
        self._header += audio
        header = parse_wav_header(bytes(self._header))
        if header is None:
            return None
        self.config.encoding = header.encoding
        self.config.sample_rate_hertz = header.sample_rate_hertz
        rest = bytes(self._header[header.data_offset :])
        self._header.clear()
        return rest

    async def _start(self) -> DrivenSession | None:
        settings = self.config.to_settings()
        try:
            self._driven = await self._open(settings)
        except InvalidConfig as error:  # the client may fix its settings and try again
            raise EventError("invalid_value", error.message, param="session") from None
        except ReserveError as error:
            await self._send(error_event(EventError.from_reserve(error)))
            self._finish(error.ws_close_code, error.code)
            return None
        self._settings = settings
        assert self._nursery is not None
        self._nursery.start_soon(self._pump, self._driven)
        return self._driven

    async def _commit(self, event_id: str | None) -> None:
        if self.dialect.style == "nvidia":
            return  # NVIDIA's client commits after every append: it means "go on"
        if not self._turns.audio_since_commit or self._driven is None:
            raise EventError(
                "input_audio_buffer_commit_empty", "no audio was appended since the last commit", event_id=event_id
            )
        if self._turns.manual:
            for out in self._turns.commit():
                await self._send(out)
            self._await_flush(await self._driven.finalize())
        else:
            self._turns.audio_since_commit = False
            await self._driven.finalize()  # Riva's finals now; each completes a turn as usual

    async def _clear(self) -> None:
        if self._driven is None or not self._turns.audio_since_commit:
            await self._send({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})
            return
        for out in self._turns.clear():
            await self._send(out)
        self._await_flush(await self._driven.finalize())

    def _await_flush(self, target: int) -> None:
        self._flush_targets.append(target)
        self._targets_added.set()

    async def _done(self) -> None:
        if self._driven is not None:
            await self._driven.end()
            return
        for out in self._turns.ended():  # no audio at all: an empty last result
            await self._send(out)
        self._finish(CLOSE_NORMAL, "no audio")

    def _finish(self, code: int, reason: str) -> None:
        self._closing(code, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _closing(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason

    # -- the session's events --------------------------------------------------------------
    async def _pump(self, driven: DrivenSession) -> None:
        while True:
            for event in await driven.pending():
                for out in self._translate(driven, event.name, event.data):
                    await self._send(out)
            while self._flush_targets and driven.session.finalized >= self._flush_targets[0]:
                self._flush_targets.popleft()
                for out in self._turns.flushed():
                    await self._send(out)
            if driven.ended:  # everything it said is sent: close the socket
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
            target = self._flush_targets[0] - 1 if self._flush_targets else None
            await driven.wait(finalized_after=target, or_until=self._targets_added)
            if self._targets_added.is_set():
                self._targets_added = trio.Event()

    def _translate(self, driven: DrivenSession, name: str, data: dict[str, Any]) -> list[Event]:
        if name == "transcript":
            return self._turns.transcript(data)
        if name == "error":
            failure = driven.session.failure
            error = (
                EventError.from_reserve(failure)
                if failure is not None
                else EventError(str(data.get("code")), str(data.get("message")), kind="server_error")
            )
            if failure is not None:
                self._closing(failure.ws_close_code, failure.code)
            return self._turns.failed(error)
        if name == "end":
            reason = data.get("reason")
            if reason == "finished":
                return self._turns.ended()
            if reason == "shutdown":
                self._closing(CLOSE_GOING_AWAY, "gateway shutting down")
            elif reason != "error":
                self._closing(CLOSE_NORMAL, f"session ended: {reason}")
            return []
        return []  # reconnecting / reconnected: failover is the gateway's business
