"""A session: one client's recognition, owned by one trio nursery.

Audio arrives from the WebSocket handler through a bounded channel (a full channel
makes the handler stop reading, so TCP slows the client). The session forwards it
into one Riva stream at a time (``finalize`` starts a fresh one), publishes results
into its event log, and ends with exactly one ``end`` event, whatever happens.

When Riva fails mid-stream the session reconnects without loss (``recognition``). In
shared mode (Redis) its record goes out with its events, and it can hand itself over to
another instance or be taken over by one (``hand_over``, ``restore``).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

import msgspec
import trio

from service.errors import (
    InternalError,
    ReserveError,
    SessionBusy,
    SessionClosed,
    TooManyReaders,
    Unauthorized,
)
from service.events.log import EventLog, MemoryEventLog
from service.protocol import Control
from service.riva.results import Result
from service.riva.stream import RivaStream
from service.sessions.attachment import AudioAttachment, AudioItem
from service.sessions.config import RecognitionSettings
from service.sessions.recognition import Recognition
from service.sessions.record import check_token, digest, dynamic_fields, restore
from service.sessions.replay import ReplayBuffer
from service.sessions.runtime import Counters, Runtime
from service.sessions.state import State, Trigger, next_state
from service.sessions.transcripts import transcript_data
from service.settings import Settings

log = logging.getLogger("reserve.session")
_encode = msgspec.json.encode


class Session(Recognition):
    def __init__(
        self, runtime: Runtime, config: RecognitionSettings, *, session_id: str | None = None, token_digest: str = ""
    ) -> None:
        """A new session (``session_id`` if its worker chose one), or one taken over (``session_id``
        and ``token_digest`` from its record)."""
        settings = runtime.settings
        self.id = session_id or secrets.token_urlsafe(16)  # 128 random bits
        self.token = "" if token_digest else secrets.token_urlsafe(32)  # known only where it was created
        self.token_digest = token_digest or digest(self.token)
        self.config = config
        self.state = State.WAITING
        self.created_at = time.time()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.counters = Counters()
        self.log: EventLog = runtime.hub.log_for(self.id) if runtime.hub is not None else MemoryEventLog(runtime.wakes)
        self.ticket = ""  # what the key's live-session count knows this session by
        self.done = trio.Event()
        self._readers = 0
        self.owner: str | None = None  # key id of the API key that created it (only it gets session tokens)
        self._runtime = runtime
        self._obs = runtime.metrics.observe_session(config.bytes_per_second, config.encoding)
        self._log = logging.LoggerAdapter(log, {"session_id": self.id})  # JSON logs carry the id as a key
        self._final_text = ""  # built as finals come, not joined at every record snapshot
        self._seq = 0
        self._audio_tx, self._audio_rx = trio.open_memory_channel[AudioItem](settings.audio_queue_chunks)
        self._attached = trio.Event()
        self._socket: AudioAttachment | None = None
        self._socket_ended = False  # the client sent ``end``: no new socket may attach
        self._scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._grace: trio.CancelScope | None = None
        self._cancel_reason = "shutdown"
        self._finish_reason = "finished"
        self._failure: ReserveError | None = None
        self._last_activity = trio.current_time()
        # the Riva side: what was forwarded, what may need replaying, where this stream began
        rate = config.bytes_per_second
        sample_bytes = rate // config.sample_rate_hertz if rate else 1
        replay_bytes = int(settings.replay_max_s * rate) if rate else 0
        self._replay = ReplayBuffer(max_bytes=max(replay_bytes, sample_bytes), frame_bytes=sample_bytes)
        self._stream_start = 0  # absolute byte offset where the current Riva stream began
        self._stream_start_s = 0.0  # the same, in seconds (compressed audio: from audio_processed)
        self._last_processed_s = 0.0
        self._pending: Control | None = None  # a control taken from the channel, not yet done
        self._waiting_stream: RivaStream | None = None  # the stream ``_forward`` waits to feed, channel empty
        self._reconnect_deadline: float | None = None  # set while a reconnect series runs
        self._reconnect_attempt = 0  # within the current series
        self._riva_answered = False  # a stream of this session has worked: failures now are drops
        self.finalized = 0  # ``finalize`` controls whose finals are all in the log (protocol adapters wait on it)
        self._finalized_changed = trio.Event()
        self._shared = runtime.hub is not None  # the record goes to Redis with the events
        self.handed_over = False  # another instance runs it now: this one ends without an ``end``
        self._moving = False
        self.covered_bytes_restored = 0

    # -- access -----------------------------------------------------------------
    def check_token(self, token: str | None) -> None:
        if not token:
            raise Unauthorized("this session needs its token: Authorization: Bearer <token> or ?token=")
        check_token(self.token_digest, token)

    @property
    def final_text(self) -> str:
        return self._final_text

    @property
    def failure(self) -> ReserveError | None:
        return self._failure

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "end_reason": self.end_reason,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "final_transcript": self.final_text,
            "last_event_id": self.log.last_id,
            "audio_attached": self.audio_attached,
            "readers": self.readers,
            "counters": dataclasses.asdict(self.counters),
            "config": self.config.model_dump(),
        }

    def check_reader_room(self) -> None:
        limit = self._runtime.settings.max_readers_per_session
        if self.readers >= limit:
            raise TooManyReaders(f"at most {limit} event streams may follow one session", retry_after_s=5)

    # -- the audio socket ---------------------------------------------------------
    def attach(self) -> AudioAttachment:
        """Claim the session's one audio socket; raise if taken or the session is over."""
        if self.state.terminal:
            raise SessionClosed(f"session is {self.state.value}; create a new one")
        if self._socket is not None:
            raise SessionBusy("another audio socket is already streaming to this session")
        if self._socket_ended:
            raise SessionClosed("this session's audio has already ended")
        resumed = self._attached.is_set()
        self._transition(Trigger.ATTACH)
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._socket = AudioAttachment(self, resumed=resumed)
        self._attached.set()
        self.touch()
        self._log.info("session %s audio socket %s", self.id, "reattached" if resumed else "attached")
        self.note_state()
        return self._socket

    def touch(self) -> None:
        self._last_activity = trio.current_time()

    @property
    def settings(self) -> Settings:
        return self._runtime.settings

    def count_audio(self, size: int) -> None:
        self.counters.audio_bytes += size
        self.counters.audio_frames += 1
        self._obs.audio(size)

    def audio_ended(self) -> None:
        """The client sent ``end``: no socket may attach again."""
        self._socket_ended = True

    async def put_audio(self, item: AudioItem) -> None:
        """Into the bounded channel: waits while it is full (backpressure). Audio that finds
        the Riva stream waiting for it with nothing queued goes straight into the stream: the
        same order, and no wake-up of the forwarding task per chunk."""
        stream = self._waiting_stream
        if stream is not None and isinstance(item, bytes):
            if stream.try_send(item):
                self._note_forwarded(item)
                return
            self._waiting_stream = None  # from here on, in order through the channel
        try:
            await self._audio_tx.send(item)
        except trio.BrokenResourceError:
            raise SessionClosed(f"session is {self.state.value}") from None

    def detach(self, socket: AudioAttachment) -> None:
        if self._socket is not socket:
            return
        self._socket = None
        self.note_state()
        if socket.ended:
            self._log.info("session %s audio socket closed after end of audio", self.id)
            return
        if self.state.terminal:
            return
        grace = self._runtime.settings.audio_reconnect_grace_s
        if grace <= 0 or self._tasks is None:
            self._log.info("session %s audio socket dropped before end; cancelling", self.id)
            self.cancel("client_gone")
            return
        self._log.info("session %s audio socket dropped; waiting %.0f s for it to come back", self.id, grace)
        self._grace = trio.CancelScope(deadline=trio.current_time() + grace)
        self._tasks.start_soon(self._finish_after_grace, self._grace)

    def expect_socket(self) -> None:
        """Taken over without its socket (its owner died or handed it over at shutdown): wait the
        reconnect grace for the client, as after a drop, then finalize."""
        if self._socket is not None or not self._attached.is_set() or self.state.terminal or self._tasks is None:
            return
        grace = self._runtime.settings.audio_reconnect_grace_s
        self._grace = trio.CancelScope(deadline=trio.current_time() + grace)
        self._tasks.start_soon(self._finish_after_grace, self._grace)

    async def _finish_after_grace(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if scope.cancelled_caught and self._socket is None and not self.state.terminal and self._grace is scope:
            await self.finish_early("client_gone")

    # -- lifecycle --------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        """End the session now (DELETE, client gone, shutdown); idempotent."""
        if not self.state.terminal:
            self._cancel_reason = reason
            self._scope.cancel()

    async def hand_over(self) -> None:
        """Another instance takes the session (its client's audio socket came back there): stop
        taking audio, flush Riva's finals for what was heard, then end here without an ``end``."""
        if not self.movable or self._moving:
            return
        self._moving = True
        self._log.info("session %s moves to another instance", self.id)
        if not self._attached.is_set():
            self.handed_over = True
            self.note_state()
            self._scope.cancel()
            return
        await self._audio_tx.send(Control.FINALIZE)

    def lost(self, why: str) -> None:
        """Redis says another instance holds the lease: stop at once, write nothing more."""
        if not self.state.terminal:
            self._log.warning("session %s lost its lease (%s); stopping here", self.id, why)
            self.handed_over = True
            self._scope.cancel()

    def _still_ours(self) -> bool:
        """Whether this instance may still write the session's log. Shared mode: a log whose
        lease went elsewhere is never written, however that was found out (results Riva sent
        before the session heard of it are dropped here; the next owner has the audio)."""
        if self.handed_over:
            return False
        if not self.log.owned:  # an in-memory log always is
            self.lost("the log is no longer ours")
            return False
        return True

    def fail_now(self, error: ReserveError) -> None:
        """End with ``error`` (Redis took none of the events for too long)."""
        if not self.state.terminal and self._failure is None:
            self._failure = error
            self._scope.cancel()

    def note_state(self) -> None:
        """Shared mode: the record as of now goes out with the next batch of events."""
        if self._shared:
            self.log.note_state(self._record_now)

    @property
    def readers(self) -> int:
        """Event streams following it in this process (shared mode: counted on its log, which
        outlives this object when the session moves to another instance)."""
        return int(getattr(self.log, "readers", self._readers))

    @readers.setter
    def readers(self, value: int) -> None:
        if hasattr(self.log, "readers"):
            self.log.readers = value
        else:
            self._readers = value

    @property
    def moving(self) -> bool:
        """Handing itself over to another instance (or done so)."""
        return self._moving or self.handed_over

    @property
    def movable(self) -> bool:
        """Whether another instance could go on with it (not when its audio has ended: it finishes here)."""
        return self.state in (State.WAITING, State.STREAMING) and not self._socket_ended

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def audio_attached(self) -> bool:
        return self._socket is not None

    def _record_now(self) -> dict[str, str]:
        return dynamic_fields(self)

    @property
    def covered_bytes(self) -> int:
        """The audio offset up to which every final is published (a new owner resumes there)."""
        return self._replay.start

    def restore(self, record: dict[str, str]) -> None:
        """Continue from a record another instance wrote (a takeover)."""
        restore(self, record)
        self._replay.start = self._replay.end = self.covered_bytes_restored
        self._seq = int(record.get("seq", "0"))
        self._final_text = record.get("final_text", "")
        rate = self.config.bytes_per_second
        self._last_processed_s = self._replay.start / rate if rate else float(record.get("processed_s", "0"))
        if self.state is not State.WAITING:
            self._attached.set()  # so the next socket is told where to resume

    async def finish_early(self, reason: str) -> None:
        """Stop taking audio and flush Riva's finals, then end with ``reason``."""
        if self.state.terminal or self._socket_ended:
            return
        self._finish_reason = reason
        self._socket_ended = True
        if self._socket is not None:
            self._socket.ended = True
        if not self._attached.is_set():  # nothing was ever streamed: nothing to flush
            self.cancel(reason)
            return
        await self._audio_tx.send(Control.END)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's whole life; returns once its ``end`` event is in the log."""
        settings = self._runtime.settings
        self._log.info("session %s created", self.id)
        failure: ReserveError | None = None
        try:
            with self._scope:
                async with trio.open_nursery() as tasks:
                    self._tasks = tasks
                    task_status.started()
                    tasks.start_soon(self._watch_limits)
                    with trio.move_on_after(settings.idle_session_timeout_s):
                        await self._attached.wait()
                    if not self._attached.is_set():
                        self._cancel_reason = "idle_timeout"
                        self._scope.cancel()
                    try:
                        await self._recognize()
                    except ReserveError as exc:  # caught here, not outside the nursery
                        failure = exc
                    tasks.cancel_scope.cancel()
                if failure is not None:
                    self._stop(Trigger.FAIL, "error", failure)
                elif not self.handed_over:
                    self._stop(Trigger.FLUSHED, self._finish_reason)
        except Exception:  # a bug here: the client gets a typed error, the operator the traceback
            self._failure = self._failure or InternalError("the session failed inside the gateway")
            raise
        finally:
            if self._failure is not None and not self.state.terminal:
                self._stop(Trigger.FAIL, "error", self._failure)
            elif not self.state.terminal and not self.handed_over:
                self._stop(Trigger.CANCEL, self._cancel_reason)
            self._tasks = None
            self._audio_rx.close()
            self._finalized_changed.set()
            self.done.set()

    async def _watch_limits(self) -> None:
        """Maximum duration, and clients that go quiet without a word."""
        settings = self._runtime.settings
        ends_at = trio.current_time() + settings.max_session_duration_s
        while True:
            idle_ends = self._last_activity + settings.idle_session_timeout_s
            await trio.sleep_until(min(ends_at, idle_ends))
            if trio.current_time() >= ends_at:
                await self.finish_early("max_duration")
                return
            if self._attached.is_set() and trio.current_time() >= self._last_activity + settings.idle_session_timeout_s:
                await self.finish_early("idle_timeout")
                return

    # -- publication (runs in trio, called soon after the worker thread hands results over)
    def _publish(self, results: list[Result]) -> None:
        if self.state.terminal or not self._still_ours():
            return
        self._riva_answered = True
        log_size = self.log.size_bytes
        rate = self.config.bytes_per_second
        for result in results:
            self._last_processed_s = self._stream_start_s + result.audio_processed_s
            if not result.is_final:
                if log_size > self._runtime.settings.max_log_bytes:
                    self.counters.dropped_interims += 1
                    continue
                self.counters.interim_results += 1
            else:
                self.counters.final_results += 1
                self._reconnect_deadline = None  # progress: a reconnect series is over
                if result.text:
                    self._final_text = f"{self._final_text} {result.text}" if self._final_text else result.text
                if rate:  # audio up to this final can never be needed again
                    self._replay.release_to(self._stream_start + int(result.audio_processed_s * rate))
            self._seq += 1
            self.log.append("transcript", _encode(self._transcript_data(result)))
            self._obs.result(result.is_final)
            if self._runtime.settings.log_transcripts:  # a debugging switch; transcripts never go out at INFO
                kind = "final" if result.is_final else "interim"
                self._log.debug("session %s %s #%d: %s", self.id, kind, self._seq, result.text)
        self.note_state()

    def _publish_event(self, name: str, data: dict[str, Any]) -> None:
        if not self.state.terminal and self._still_ours():
            self.log.append(name, _encode(data))
            self.note_state()

    def _transcript_data(self, result: Result) -> dict[str, Any]:
        return transcript_data(
            result, seq=self._seq, offset_s=self._stream_start_s, word_time_offsets=self.config.word_time_offsets
        )

    def _transition(self, trigger: Trigger) -> None:
        self.state = next_state(self.state, trigger)

    def _stop(self, trigger: Trigger, reason: str, error: ReserveError | None = None) -> None:
        if self.state.terminal or not self._still_ours():  # its next owner ends it, not this instance
            return
        self._transition(trigger)
        self.end_reason = reason
        self.ended_at = time.time()
        if error is not None:
            self._failure = error
            self.log.append("error", _encode(error.to_json()))
            level = logging.INFO if error.http_status < 500 else logging.WARNING  # a client's mistake is no alarm
            self._log.log(level, "session %s failed: %s (%s)", self.id, error.code, error.message)
        self.log.append("end", _encode({"reason": reason}))
        self.note_state()
        self.log.close()
        self._log.info("session %s %s (reason=%s)", self.id, self.state.value, reason)
        self._obs.ended(self.state.value, reason, error, self.counters.dropped_interims)
