"""The Riva side of a session: one stream at a time, and reconnecting without loss.

The session forwards audio into one Riva stream at a time (``finalize`` starts a fresh
one). When Riva fails mid-stream it keeps the audio sent since the last final result
(``ReplayBuffer``), opens a new stream once Riva answers a probe, and replays that audio,
so no final is lost or repeated and times stay continuous. A session moving to another
instance leaves here right after a flush (``_moving``).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import trio

from service.errors import ReserveError, UpstreamError, UpstreamTimeout
from service.protocol import Control
from service.riva.channel import RivaTarget
from service.riva.stream import RivaStream
from service.sessions.state import State, Trigger

if TYPE_CHECKING:
    from service.observability.metrics import SessionObserver
    from service.riva.results import Result
    from service.sessions.attachment import AudioItem
    from service.sessions.config import RecognitionSettings
    from service.sessions.replay import ReplayBuffer
    from service.sessions.runtime import Counters, Runtime

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
QUIET_ENDS_BEFORE_FAILURE = 3  # Riva ending streams by itself, with nothing heard, this often is a fault


class Recognition:
    """Mixed into ``Session``, whose state it shares (declared here for the type checker)."""

    if TYPE_CHECKING:
        id: str
        config: RecognitionSettings
        counters: Counters
        state: State
        handed_over: bool
        _runtime: Runtime
        _obs: SessionObserver
        _log: logging.LoggerAdapter[logging.Logger]
        _audio_rx: trio.MemoryReceiveChannel[AudioItem]
        _replay: ReplayBuffer
        _pending: Control | None
        _waiting_stream: RivaStream | None
        _stream_start: int
        _stream_start_s: float
        _last_processed_s: float
        _reconnect_deadline: float | None
        _reconnect_attempt: int
        _riva_answered: bool
        _moving: bool
        finalized: int
        _finalized_changed: trio.Event

        def _publish(self, results: list[Result]) -> None: ...

        def _publish_event(self, name: str, data: dict[str, Any]) -> None: ...

        def _transition(self, trigger: Trigger) -> None: ...

        def note_state(self) -> None: ...

    async def _recognize(self) -> None:
        quiet_ends = 0
        lazy = True  # open a Riva stream only once there is audio for it
        while True:
            try:
                control = await self._one_stream(lazy=lazy)
            except _QuietEnd as quiet:
                quiet_ends = 0 if quiet.answered else quiet_ends + 1
                if quiet_ends < QUIET_ENDS_BEFORE_FAILURE:
                    lazy = True  # Riva closed an idle stream: open another when audio comes
                    continue
                error: ReserveError = UpstreamError("Riva keeps ending streams before the audio does")
            except ReserveError as exc:
                error = exc
            else:
                if control is Control.END:
                    return
                if self._moving:  # its finals are flushed: the next owner goes on from here
                    self.handed_over = True
                    self.note_state()
                    return
                self._note_finalized()
                quiet_ends = 0
                lazy = True
                continue
            if not (error.retryable and self.config.bytes_per_second):
                raise error  # a client fault, or compressed audio that cannot be replayed
            await self._reconnect(error)
            lazy = False

    def _note_finalized(self) -> None:
        self.finalized += 1
        self._finalized_changed.set()
        self._finalized_changed = trio.Event()

    async def wait_finalized_after(self, count: int) -> None:
        """Return once more than ``count`` finalizes are flushed, or the session is over."""
        while self.finalized <= count and not self.state.terminal:
            await self._finalized_changed.wait()

    async def _reconnect(self, error: ReserveError) -> None:
        """Back off with jitter until Riva answers a probe; raise ``error`` past the deadline."""
        settings = self._runtime.settings
        now = trio.current_time()
        if self._reconnect_deadline is None:
            # a Riva that never answered this session gets a short chance, one that did a long one
            patience = settings.riva_reconnect_deadline_s if self._riva_answered else settings.riva_start_deadline_s
            self._reconnect_deadline = now + patience
            self._reconnect_attempt = 0
            self.counters.reconnects += 1
            self._runtime.metrics.riva_reconnect()
        self._log.warning("session %s lost its Riva stream (%s); reconnecting", self.id, error.code)
        self._reconnect_attempt = attempt = self._reconnect_attempt + 1
        self._publish_event("reconnecting", {"attempt": attempt, "code": error.code, "message": error.message})
        # backoff restarts with each series: a long session's earlier outages must not stretch it
        # past the deadline of this one
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(attempt - 1, 8))
        while True:
            remaining = self._reconnect_deadline - trio.current_time()
            if remaining <= 0:
                raise error
            await trio.sleep(min(remaining, random.uniform(delay / 2, delay)))  # full jitter, bounded
            try:
                target = self._runtime.targets.pick()
                try:
                    await self._runtime.transport.probe(target, timeout_s=min(2.0, max(0.1, remaining)))
                except ReserveError:
                    self._runtime.targets.failed(target)
                    raise
                break
            except ReserveError as exc:
                error = exc if exc.retryable else error
                delay = min(BACKOFF_MAX_S, delay * 2)
        replay_s = self._replay.size / (self.config.bytes_per_second or 1)
        self._publish_event("reconnected", {"attempt": attempt, "replay_seconds": round(replay_s, 3)})

    async def _one_stream(self, *, lazy: bool) -> Control:
        """One Riva stream, from its config to its last result; returns what ended it."""
        replay = list(self._replay)
        if lazy and self._pending is None:
            first = await self._audio_rx.receive()
            if isinstance(first, Control):
                if not replay:  # nothing since the last stream: nothing to flush
                    self._end_of_audio(first)
                    return first
                self._pending = first
            else:
                self._note_forwarded(first)
                replay.append(first)
        targets = self._runtime.targets
        target = targets.pick()
        targets.opened(target)
        try:
            control = await self._run_stream(target, replay)
        except ReserveError as exc:
            if exc.retryable:  # Riva's fault, not the client's: let the next stream go elsewhere
                targets.failed(target)
            raise
        finally:
            targets.closed(target)
        targets.succeeded(target)
        return control

    async def _run_stream(self, target: RivaTarget, replay: list[bytes]) -> Control:
        runtime = self._runtime
        settings = runtime.settings
        stream = runtime.transport.open_stream(
            target, self.config.to_riva(), on_results=self._publish, queue_chunks=settings.audio_queue_chunks
        )
        self.counters.riva_streams += 1
        self._stream_start = self._replay.start
        self._stream_start_s = self._seconds_at(self._stream_start)
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
                self._obs.riva_error(exc)
            finally:
                nursery.cancel_scope.cancel()

        async def watch_stall() -> None:
            nonlocal error
            stall_s = settings.riva_stall_timeout_s
            while not stream.input_closed:
                await trio.sleep(stall_s / 4)
                since = stream.unanswered_since
                if since is not None and trio.current_time() - since > stall_s and not stream.input_closed:
                    error = UpstreamTimeout(f"Riva answered nothing for {stall_s:g} s of audio")
                    nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_stream)
            nursery.start_soon(watch_stall)
            for chunk in replay:
                await stream.send(chunk)
            control = self._pending or await self._forward(stream)
            self._pending = control
            stream.close_input()
            self._end_of_audio(control)
            nursery.cancel_scope.deadline = trio.current_time() + settings.finish_timeout_s
        if error is not None:
            raise error
        if control is None:
            raise _QuietEnd(answered=stream.responses > 0)
        if not stream_done:
            raise UpstreamTimeout(
                f"Riva sent no final result within {settings.finish_timeout_s:g} s of the end of audio"
            )
        self._pending = None
        self._replay.clear()  # every final for this audio is in
        self._obs.flushed()
        return control

    async def _forward(self, stream: RivaStream) -> Control:
        """Audio from the channel into the stream until a control comes. While the channel
        is empty, ``put_audio`` feeds the stream itself (``_waiting_stream``)."""
        audio_rx = self._audio_rx
        while True:
            try:
                item = audio_rx.receive_nowait()
            except trio.WouldBlock:
                self._waiting_stream = stream
                try:
                    item = await audio_rx.receive()
                finally:
                    self._waiting_stream = None
            except trio.EndOfChannel:
                raise AssertionError("the audio channel closes only after the session ends") from None
            if isinstance(item, Control):
                return item
            self._note_forwarded(item)
            await stream.send(item)

    def _end_of_audio(self, control: Control) -> None:
        self._obs.end_of_audio(control.value)
        if control is Control.END and self.state is State.STREAMING:
            self._transition(Trigger.END_OF_AUDIO)

    def _note_forwarded(self, audio: bytes) -> None:
        self._obs.forwarded()
        self._replay.append(audio)
        self.counters.replay_dropped_bytes = self._replay.dropped_bytes

    def _seconds_at(self, offset: int) -> float:
        rate = self.config.bytes_per_second
        return offset / rate if rate else self._last_processed_s


class _QuietEnd(Exception):
    """Riva ended a stream by itself before the audio ended (e.g. its idle timeout)."""

    def __init__(self, *, answered: bool) -> None:
        super().__init__("Riva ended the stream")
        self.answered = answered
