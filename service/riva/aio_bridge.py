"""The shared transport: every session's ``StreamingRecognize`` on one ``grpc.aio`` loop.

The reference path (``thread_bridge``) spends two threads per live stream, gRPC's
request-iterator thread and a trio worker iterating responses; at a few hundred
streams their wake-ups cost more than the streams' own work (docs/benchmark.md).
Here one asyncio loop, in one long-lived thread entered through ``trio.to_thread``
and owned by the gateway's nursery, runs every call. Crossing between trio and that
loop is batched so that a busy stream needs no wake-up per chunk:

* audio goes trio -> loop through a deque per stream; a writer is woken only when
  it is parked, waiting for audio;
* room in the queue goes back as a counter that trio reads; trio is woken only when
  a ``send`` is actually waiting for room;
* each direction has one mailbox (a deque) and one "a drain is scheduled" flag: the
  first message schedules a drain on the other side (``call_soon_threadsafe`` or
  ``run_sync_soon``, a pipe write), and every message that arrives before that drain
  runs rides along with it. Under load, when wake-ups matter, most do.

Counters, deques and flags are shared between the two threads without a lock. Each
counter and each parked-writer slot is written by one side only, deque appends and
pops are atomic, a drain flag is set by the side that schedules the drain and cleared
by the drain before it looks at the mailbox, and each "set, then look again" pair is
ordered so that a wake-up can be spurious but never lost.

One grpc.aio quirk is worked around here (grpc/grpc#36066): when Riva ends a call while
a write is in flight, ``call.write`` turns the refused write into INTERNAL ("Internal error
from Core") and sets that as the call's status, so Riva's own status (often OK: it ended the
stream on purpose) is lost, whichever of the two arrives first. Audio is therefore written
through the call's core object (``_send``): a refused write only ends the writer, and Riva's
status reaches ``read()`` untouched.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, TypeVar

import grpc
import grpc.aio
import outcome
import trio
from grpc._cython import cygrpc
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc

from service.errors import ReserveError, UpstreamError, UpstreamUnavailable, from_grpc
from service.riva.channel import RivaTarget, open_aio_channel
from service.riva.results import Result, from_response

_END: Final = object()
CANCEL_WAIT_S = 5.0  # how long a cancelled stream waits for the loop to confirm its call is gone
CHANNEL_CLOSE_GRACE_S = 1.0

_Call = tuple[Callable[..., object], tuple[object, ...]]
T = TypeVar("T")


class AioTransport:
    """The loop, its thread, one ``grpc.aio`` channel per target, and the hand-off to trio."""

    def __init__(self, limiter: trio.CapacityLimiter, targets: Iterable[RivaTarget]) -> None:
        self.limiter = limiter
        self._targets = list(targets)
        self.loop = asyncio.new_event_loop()
        self._token = trio.lowlevel.current_trio_token()
        self._stop: asyncio.Future[None] = self.loop.create_future()
        self._channels: dict[str, tuple[grpc.aio.Channel, asr_grpc.RivaSpeechRecognitionStub]] = {}
        self._calls: set[asyncio.Task[Any]] = set()  # every task ``call`` started, until it ends
        self._closing = False  # set on the loop once the transport stops
        self._to_loop: collections.deque[asyncio.Future[None]] = collections.deque()  # parked writers to wake
        self._loop_drain_scheduled = False  # set by trio, cleared by the loop
        self._to_trio: collections.deque[_Call] = collections.deque()
        self._trio_drain_scheduled = False  # set by the loop, cleared by trio

    def open_stream(
        self,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        queue_chunks: int,
    ) -> AioStream:
        return AioStream(self, target, config, on_results=on_results, queue_chunks=queue_chunks)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the loop's thread until cancelled; then close the channels and join it.

        Started once the channels are open, so the threads grpc.aio keeps for the loop
        (its poller) exist from the gateway's start rather than appearing with a session."""
        ready = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stop_when_cancelled)
            nursery.start_soon(_started_when, ready, task_status)
            # not abandoned on cancel: the stop above ends the thread, and we wait for it
            await trio.to_thread.run_sync(self._riva_aio_loop, ready.set, limiter=trio.CapacityLimiter(1))
            nursery.cancel_scope.cancel()
        # grpc.aio's poller thread lives until its last channel object is freed, and finished
        # calls leave the closed channels in reference cycles: collect them, so that the thread
        # ends with the gateway rather than at some later collection
        gc.collect()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.submit(_resolve, self._stop)

    def submit(self, fn: Callable[..., object], *args: object) -> bool:
        """From trio: run ``fn`` on the loop soon; False if the loop is closed (the gateway is gone)."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    async def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """From trio: run ``fn()`` as a task on the loop and return what it returns (or raise
        what it raises). Cancelling the caller cancels the task and waits, briefly, until it
        has ended, so no call outlives the trio task that made it."""
        finished = trio.Event()
        result: list[outcome.Outcome[T]] = []
        task: list[asyncio.Task[T]] = []  # appended on the loop, read on the loop

        def start() -> None:
            if self._closing:  # the transport is stopping: no new call may start
                result.append(outcome.Error(UpstreamUnavailable("the gateway is stopping")))
                self.to_trio(finished.set)
                return
            task.append(self.loop.create_task(fn()))
            self._calls.add(task[0])
            task[0].add_done_callback(ended)

        def ended(done: asyncio.Task[T]) -> None:
            self._calls.discard(done)
            if done.cancelled():  # by us, for a caller that is itself cancelled
                result.append(outcome.Error(UpstreamError("Riva call cancelled")))
            elif (error := done.exception()) is not None:
                result.append(outcome.Error(error))
            else:
                result.append(outcome.Value(done.result()))
            self.to_trio(finished.set)  # after everything the task sent: the mailbox keeps order

        def cancel() -> None:
            if task:
                task[0].cancel()

        if not self.submit(start):
            raise UpstreamUnavailable("the gateway is stopping")
        try:
            await finished.wait()
        finally:
            if not finished.is_set():
                self.submit(cancel)
                with trio.move_on_after(CANCEL_WAIT_S) as scope:
                    scope.shield = True
                    await finished.wait()
        return result[0].unwrap()

    async def probe(self, target: RivaTarget, *, timeout_s: float) -> asr.RivaSpeechRecognitionConfigResponse:
        """Ask Riva for its models through this loop's channel, the one the next stream will
        use: after an outage it may still be waiting to reconnect when another channel to the
        same Riva already has."""

        async def ask() -> asr.RivaSpeechRecognitionConfigResponse:
            try:
                response: asr.RivaSpeechRecognitionConfigResponse = await self.stub(
                    target
                ).GetRivaSpeechRecognitionConfig(
                    asr.RivaSpeechRecognitionConfigRequest(), timeout=timeout_s, metadata=target.metadata or None
                )
            except grpc.RpcError as exc:
                raise from_grpc(exc) from None
            except Exception as exc:  # a probe must never crash a session
                raise UpstreamError(f"probing Riva failed: {type(exc).__name__}") from exc
            return response

        return await self.call(ask)

    # -- loop side ----------------------------------------------------------------
    def _riva_aio_loop(self, on_ready: Callable[[], None]) -> None:
        """The loop thread's body (trio names the thread after it: ``top`` and ``/proc`` show it)."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(on_ready))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def _serve(self, on_ready: Callable[[], None]) -> None:
        for target in self._targets:
            self.stub(target)
        self._token.run_sync_soon(on_ready)
        await self._stop
        self._closing = True
        for task in list(self._calls):  # sessions end before the transport; this is a backstop
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        for channel, _ in self._channels.values():
            await channel.close(grace=CHANNEL_CLOSE_GRACE_S)
        self._channels.clear()

    def stub(self, target: RivaTarget) -> asr_grpc.RivaSpeechRecognitionStub:
        """The target's stub on the loop: one channel per target, opened on first use."""
        entry = self._channels.get(target.uri)
        if entry is None:
            channel = open_aio_channel(target)
            entry = self._channels[target.uri] = (channel, asr_grpc.RivaSpeechRecognitionStub(channel))
        return entry[1]

    def wake(self, parked: asyncio.Future[None]) -> None:
        """From trio: resume a parked writer, sharing one loop wake-up with any others."""
        self._to_loop.append(parked)
        if not self._loop_drain_scheduled:
            self._loop_drain_scheduled = True
            self.submit(self._drain_to_loop)

    def _drain_to_loop(self) -> None:
        self._loop_drain_scheduled = False  # before draining: a later append schedules again
        mailbox = self._to_loop
        while mailbox:
            _resolve(mailbox.popleft())

    def to_trio(self, fn: Callable[..., object], *args: object) -> None:
        """On the loop: queue a call for trio, sharing one trio wake-up with any others."""
        self._to_trio.append((fn, args))
        if not self._trio_drain_scheduled:
            self._trio_drain_scheduled = True
            with contextlib.suppress(trio.RunFinishedError):  # the service is gone; nobody is left to tell
                self._token.run_sync_soon(self._drain_to_trio)

    def _drain_to_trio(self) -> None:
        self._trio_drain_scheduled = False  # before draining: a later append schedules again
        mailbox = self._to_trio
        while mailbox:
            fn, args = mailbox.popleft()
            fn(*args)


class AioStream:
    def __init__(
        self,
        transport: AioTransport,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        queue_chunks: int,
    ) -> None:
        self._transport = transport
        self._target = target
        self._config = config
        self._on_results = on_results
        self._capacity = queue_chunks
        self._pending: collections.deque[object] = collections.deque()
        self._queued = 0  # items trio has put (written by trio only)
        self._written = 0  # items the writer has sent (written by the loop only)
        self._room_waiter: trio.Event | None = None  # set by a send waiting for room
        self._writer_parked: asyncio.Future[None] | None = None  # a writer waiting for audio (loop writes)
        self._woken: asyncio.Future[None] | None = None  # the last parked writer trio woke (trio writes)
        self._input_closed = False
        self.bytes_sent = 0
        self.responses = 0
        self.unanswered_since: float | None = None

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    # -- trio side ------------------------------------------------------------------
    async def send(self, audio: bytes) -> None:
        # a cancel point, not a schedule point: the caller's channel receive is one already
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._queued - self._written >= self._capacity:
            self._room_waiter = waiter = trio.Event()
            if self._queued - self._written < self._capacity:  # the writer moved meanwhile
                break
            await waiter.wait()
        self._room_waiter = None
        self._accept(audio)

    def try_send(self, audio: bytes) -> bool:
        if self._queued - self._written >= self._capacity:
            return False
        self._accept(audio)
        return True

    def _accept(self, audio: bytes) -> None:
        if self.unanswered_since is None:
            self.unanswered_since = trio.current_time()
        self.bytes_sent += len(audio)
        self._put(audio)

    def close_input(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            self._put(_END)

    def _put(self, item: object) -> None:
        self._queued += 1
        self._pending.append(item)
        parked = self._writer_parked
        if parked is not None and parked is not self._woken:
            self._woken = parked
            self._transport.wake(parked)

    async def run(self) -> None:
        async with self._transport.limiter:  # bounds live Riva streams, as the thread path does
            try:
                await self._transport.call(self._call)
            except ReserveError:
                raise
            except Exception as exc:  # a bug in conversion must not look like Riva's fault
                raise UpstreamError(f"unreadable answer from Riva: {type(exc).__name__}") from exc

    def _room_freed(self) -> None:
        waiter = self._room_waiter
        if waiter is not None:
            waiter.set()

    def _deliver(self, results: list[Result]) -> None:
        """In trio: Riva answered (even with nothing, which proves it is alive)."""
        self.responses += 1
        self.unanswered_since = None
        self._on_results(results)

    # -- loop side ------------------------------------------------------------------
    async def _call(self) -> None:
        """The call, from its config to Riva's last response; raises what ended it early."""
        transport = self._transport
        call = transport.stub(self._target).StreamingRecognize(metadata=self._target.metadata or None)
        writer = asyncio.ensure_future(self._write(call))
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                transport.to_trio(self._deliver, from_response(response))
        except grpc.RpcError as exc:
            raise from_grpc(exc) from None
        finally:
            if not call.done():  # cancelled from trio (which knows why), or a bug in conversion
                call.cancel()
            _settle(writer)  # Riva ended the call: the writer may still wait for audio

    async def _write(self, call: Any) -> None:
        """Riva's requests, config first; returns when the audio ended or Riva ended the call."""
        await call.wait_for_connection()  # the call's metadata is out: requests may follow
        if not await _send(call, asr.StreamingRecognizeRequest(streaming_config=self._config)):
            return
        pending, loop = self._pending, self._transport.loop
        while True:
            if not pending:
                parked = self._writer_parked = loop.create_future()
                if not pending:  # trio may have put between the first look and the park
                    await parked
                self._writer_parked = None
                continue
            item = pending.popleft()
            if item is _END:
                await call.done_writing()
                return
            assert isinstance(item, bytes)
            if not await _send(call, asr.StreamingRecognizeRequest(audio_content=item)):
                return  # Riva ended the call: read() reports how
            self._written += 1
            if self._room_waiter is not None:
                self._transport.to_trio(self._room_freed)


async def _started_when(ready: trio.Event, task_status: trio.TaskStatus[None]) -> None:
    await ready.wait()
    task_status.started()


async def _send(call: Any, request: asr.StreamingRecognizeRequest) -> bool:
    """Write one request; False if Riva has already ended the call (see the module's docstring).

    Written through the call's core object rather than ``call.write``, which would replace
    Riva's status with INTERNAL; a grpc without that object gets the public write."""
    core = getattr(call, "_cython_call", None)
    if core is None or not hasattr(core, "send_serialized_message"):
        await call.write(request)
        return True
    if call.done():
        return False
    try:
        await core.send_serialized_message(request.SerializeToString())
    except cygrpc.InternalError:
        return False
    return True


def _settle(task: asyncio.Task[None]) -> None:
    """Cancel a task we no longer need, or collect its failure so asyncio does not log it."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
