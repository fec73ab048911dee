"""A session: one client's recognition, owned by one trio nursery.

Audio arrives from the WebSocket handler through a bounded channel (a full channel
makes the handler stop reading, so TCP slows the client). The session forwards it
into one Riva stream at a time (``finalize`` starts a fresh one), publishes results
into its event log, and ends with exactly one ``end`` event, whatever happens.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from service.errors import (
    BadMessage,
    Forbidden,
    ReserveError,
    SessionBusy,
    SessionClosed,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from service.events.log import EventLog, MemoryEventLog
from service.protocol import Control
from service.riva.channel import RivaTarget
from service.riva.results import Result
from service.riva.stream import RivaStream
from service.sessions.config import RecognitionSettings
from service.sessions.state import State, Trigger, next_state
from service.settings import Settings

log = logging.getLogger("reserve.session")
_encode = msgspec.json.encode

AudioItem = bytes | Control


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every session shares: settings, the Riva target, the worker-thread limiter."""

    settings: Settings
    target: RivaTarget
    limiter: trio.CapacityLimiter


@dataclass(slots=True)
class Counters:
    audio_bytes: int = 0
    audio_frames: int = 0
    riva_streams: int = 0
    interim_results: int = 0
    final_results: int = 0
    dropped_interims: int = 0


class Session:
    def __init__(self, runtime: Runtime, config: RecognitionSettings) -> None:
        self.id = secrets.token_urlsafe(16)  # 128 random bits
        self.token = secrets.token_urlsafe(32)
        self.config = config
        self.state = State.WAITING
        self.created_at = time.time()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.counters = Counters()
        self.log: EventLog = MemoryEventLog()
        self.done = trio.Event()
        self._runtime = runtime
        self._finals: list[str] = []
        self._seq = 0
        self._offset_s = 0.0  # audio time before the current Riva stream
        self._audio_tx, self._audio_rx = trio.open_memory_channel[AudioItem](runtime.settings.audio_queue_chunks)
        self._attached = trio.Event()
        self._socket: AudioAttachment | None = None
        self._scope = trio.CancelScope()
        self._cancel_reason = "shutdown"
        self._failure: ReserveError | None = None
        self._socket_ended = False  # the client sent ``end``: no new socket may attach
        self._last_processed_s = 0.0

    # -- access -----------------------------------------------------------------
    def check_token(self, token: str | None) -> None:
        if not token:
            raise Unauthorized("this session needs its token: Authorization: Bearer <token> or ?token=")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise Forbidden("the token does not match this session")

    @property
    def final_text(self) -> str:
        return " ".join(self._finals)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "end_reason": self.end_reason,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "final_transcript": self.final_text,
            "last_event_id": self.log.last_id,
            "audio_attached": self._socket is not None,
            "counters": {
                "audio_bytes": self.counters.audio_bytes,
                "audio_frames": self.counters.audio_frames,
                "riva_streams": self.counters.riva_streams,
                "interim_results": self.counters.interim_results,
                "final_results": self.counters.final_results,
                "dropped_interims": self.counters.dropped_interims,
            },
            "config": self.config.model_dump(),
        }

    # -- the audio socket ---------------------------------------------------------
    def attach(self) -> AudioAttachment:
        """Claim the session's one audio socket; raise if taken or the session is over."""
        if self.state.terminal:
            raise SessionClosed(f"session is {self.state.value}; create a new one")
        if self._socket is not None:
            raise SessionBusy("another audio socket is already streaming to this session")
        if self.state is not State.WAITING and self._socket_ended:
            raise SessionClosed("this session's audio has already ended")
        self._transition(Trigger.ATTACH)
        self._socket = AudioAttachment(self)
        self._attached.set()
        log.info("session %s audio socket attached", self.id)
        return self._socket

    def _detach(self, socket: AudioAttachment) -> None:
        if self._socket is not socket:
            return
        self._socket = None
        if socket.ended:
            log.info("session %s audio socket closed after end of audio", self.id)
        elif not self.state.terminal:
            log.info("session %s audio socket dropped before end; cancelling", self.id)
            self.cancel("client_gone")

    # -- lifecycle --------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        """End the session now (DELETE, client gone, shutdown); idempotent."""
        if not self.state.terminal:
            self._cancel_reason = reason
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's whole life; returns once its ``end`` event is in the log."""
        settings = self._runtime.settings
        log.info("session %s created", self.id)
        try:
            with self._scope:
                task_status.started()
                with trio.move_on_after(settings.idle_session_timeout_s):
                    await self._attached.wait()
                if not self._attached.is_set():
                    self._cancel_reason = "idle_timeout"
                    return
                await self._recognize()
                self._stop(Trigger.FLUSHED, "finished")
        except ReserveError as exc:
            self._stop(Trigger.FAIL, "error", exc)
        finally:
            if not self.state.terminal:
                self._stop(Trigger.CANCEL, self._cancel_reason)
            self._audio_rx.close()
            self.done.set()

    async def _recognize(self) -> None:
        while await self._one_stream() is not Control.END:
            pass

    async def _one_stream(self) -> Control:
        """One Riva stream, from its config to its last result; returns what ended it."""
        runtime = self._runtime
        stream = RivaStream(
            runtime.target,
            self.config.to_riva(),
            on_results=self._publish,
            limiter=runtime.limiter,
            queue_chunks=runtime.settings.audio_queue_chunks,
        )
        self.counters.riva_streams += 1
        error: ReserveError | None = None
        stream_done = False
        control: Control | None = None

        async def run_stream() -> None:
            nonlocal error, stream_done
            try:
                await stream.run()
                stream_done = True
            except ReserveError as exc:
                error = exc
            finally:
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_stream)
            control = await self._forward(stream)
            stream.close_input()
            if control is Control.END:
                self._transition(Trigger.END_OF_AUDIO)
            nursery.cancel_scope.deadline = trio.current_time() + runtime.settings.finish_timeout_s
        if error is not None:
            raise error
        if control is None:
            raise UpstreamError("Riva ended the stream before the audio did")
        if not stream_done:
            raise UpstreamTimeout(
                f"Riva sent no final result within {runtime.settings.finish_timeout_s:g} s of the end of audio"
            )
        self._offset_s += self._stream_seconds(stream)
        return control

    async def _forward(self, stream: RivaStream) -> Control:
        async for item in self._audio_rx:
            if isinstance(item, Control):
                return item
            await stream.send(item)
        raise AssertionError("the audio channel closes only after the session ends")

    def _stream_seconds(self, stream: RivaStream) -> float:
        rate = self.config.bytes_per_second
        return stream.bytes_sent / rate if rate else self._last_processed_s

    # -- publication (runs in trio, called soon after the worker thread hands results over)
    def _publish(self, results: list[Result]) -> None:
        if self.state.terminal:
            return
        log_size = getattr(self.log, "size_bytes", 0)
        for result in results:
            self._last_processed_s = result.audio_processed_s
            if not result.is_final:
                if log_size > self._runtime.settings.max_log_bytes:
                    self.counters.dropped_interims += 1
                    continue
                self.counters.interim_results += 1
            else:
                self.counters.final_results += 1
                if result.text:
                    self._finals.append(result.text)
            self._seq += 1
            self.log.append("transcript", _encode(self._transcript_data(result)))

    def _transcript_data(self, result: Result) -> dict[str, Any]:
        offset_ms = int(self._offset_s * 1000)
        data: dict[str, Any] = {
            "seq": self._seq,
            "is_final": result.is_final,
            "text": result.text,
            "stability": round(result.stability, 4),
            "confidence": round(result.confidence, 4),
            "audio_processed": round(self._offset_s + result.audio_processed_s, 3),
            "channel": result.channel,
        }
        if self.config.word_time_offsets:
            data["words"] = [
                {
                    "word": w.word,
                    "start_ms": w.start_ms + offset_ms,
                    "end_ms": w.end_ms + offset_ms,
                    "confidence": round(w.confidence, 4),
                    **({"speaker": w.speaker} if w.speaker else {}),
                }
                for w in result.words
            ]
        if result.alternatives:
            data["alternatives"] = list(result.alternatives)
        return data

    def _transition(self, trigger: Trigger) -> None:
        self.state = next_state(self.state, trigger)

    def _stop(self, trigger: Trigger, reason: str, error: ReserveError | None = None) -> None:
        if self.state.terminal:
            return
        self._transition(trigger)
        self.end_reason = reason
        self.ended_at = time.time()
        if error is not None:
            self._failure = error
            self.log.append("error", _encode(error.to_json()))
            log.warning("session %s failed: %s (%s)", self.id, error.code, error.message)
        self.log.append("end", _encode({"reason": reason}))
        self.log.close()
        log.info("session %s %s (reason=%s)", self.id, self.state.value, reason)

    @property
    def failure(self) -> ReserveError | None:
        return self._failure


@dataclass
class AudioAttachment:
    """The one audio socket's handle on its session; closing it detaches."""

    session: Session
    ended: bool = False

    async def send_audio(self, audio: bytes) -> None:
        if self.ended:
            raise BadMessage("audio after an end message; create a new session to send more")
        counters = self.session.counters
        counters.audio_bytes += len(audio)
        counters.audio_frames += 1
        await self._send(audio)

    async def control(self, control: Control) -> None:
        if control is Control.KEEPALIVE:
            return
        if self.ended:
            raise BadMessage(f"{control.value} after an end message")
        if control is Control.END:
            self.ended = True
            self.session._socket_ended = True
        await self._send(control)

    async def _send(self, item: AudioItem) -> None:
        try:
            await self.session._audio_tx.send(item)
        except trio.BrokenResourceError:
            raise SessionClosed(f"session is {self.session.state.value}") from None

    def close(self) -> None:
        self.session._detach(self)
