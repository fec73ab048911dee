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

Counters, deques and flags are shared between the two threads without a lock: each
is written by one side only (deque appends and pops are atomic), and each "set, then
look again" pair is ordered so that a wake-up can be spurious but never lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import grpc
import grpc.aio
import trio
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc

from service.errors import ReserveError, UpstreamError, from_grpc
from service.riva.channel import RivaTarget
from service.riva.results import Result, from_response

_END: Final = object()
CANCEL_WAIT_S = 5.0  # how long a cancelled stream waits for the loop to confirm its call is gone
CHANNEL_CLOSE_GRACE_S = 1.0

_Call = tuple[Callable[..., object], tuple[object, ...]]


class AioTransport:
    """The loop, its thread, one ``grpc.aio`` channel per target, and the hand-off to trio."""

    name = "aio"

    def __init__(self, limiter: trio.CapacityLimiter, targets: Iterable[RivaTarget]) -> None:
        self.limiter = limiter
        self._targets = list(targets)
        self.loop = asyncio.new_event_loop()
        self._token = trio.lowlevel.current_trio_token()
        self._stop: asyncio.Future[None] = self.loop.create_future()
        self._channels: dict[str, tuple[grpc.aio.Channel, asr_grpc.RivaSpeechRecognitionStub]] = {}
        self._calls: set[asyncio.Task[None]] = set()
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

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.submit(_resolve, self._stop)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """From trio: run ``fn`` on the loop soon."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway is gone
            self.loop.call_soon_threadsafe(fn, *args)

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
            options = list(target.options)
            if target.credentials is None:
                channel = grpc.aio.insecure_channel(target.uri, options=options)
            else:
                channel = grpc.aio.secure_channel(target.uri, target.credentials, options=options)
            entry = self._channels[target.uri] = (channel, asr_grpc.RivaSpeechRecognitionStub(channel))
        return entry[1]

    def track(self, task: asyncio.Task[None]) -> None:
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

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
        self._writer_parked: asyncio.Future[None] | None = None  # set by a writer waiting for audio
        self._finished = trio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
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
        if parked is not None:
            self._writer_parked = None
            self._transport.wake(parked)

    async def run(self) -> None:
        transport = self._transport
        async with transport.limiter:  # bounds live Riva streams, as the thread path does
            transport.submit(self._start)
            try:
                await self._finished.wait()
            finally:
                if not self._finished.is_set():  # cancelled: end the call and see it gone
                    transport.submit(self._cancel)
                    with trio.move_on_after(CANCEL_WAIT_S) as scope:
                        scope.shield = True
                        await self._finished.wait()
        error = self._error
        if error is None:
            return
        if isinstance(error, ReserveError):
            raise error
        raise UpstreamError(f"unreadable answer from Riva: {type(error).__name__}") from error

    def _room_freed(self) -> None:
        waiter = self._room_waiter
        if waiter is not None:
            waiter.set()

    def _deliver(self, results: list[Result]) -> None:
        """In trio: Riva answered (even with nothing, which proves it is alive)."""
        self.responses += 1
        self.unanswered_since = None
        self._on_results(results)

    def _done(self, error: BaseException | None) -> None:
        self._error = error
        self._finished.set()

    # -- loop side ------------------------------------------------------------------
    def _start(self) -> None:
        self._task = self._transport.loop.create_task(self._call())
        self._transport.track(self._task)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _call(self) -> None:
        transport = self._transport
        error: BaseException | None = None
        writer: asyncio.Task[None] | None = None
        call: Any = None
        try:
            stub = transport.stub(self._target)
            call = stub.StreamingRecognize(metadata=self._target.metadata or None)
            writer = asyncio.ensure_future(self._write(call))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                transport.to_trio(self._deliver, from_response(response))
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()  # we were cancelled from trio, which knows why
        except grpc.RpcError as exc:
            error = from_grpc(exc)
        except Exception as exc:  # a bug in conversion must not look like Riva's fault
            error = exc
        finally:
            if writer is not None:
                _settle(writer)  # Riva ended the call: the writer may still wait for audio
            transport.to_trio(self._done, error)

    async def _write(self, call: Any) -> None:
        await call.write(asr.StreamingRecognizeRequest(streaming_config=self._config))
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
            await call.write(asr.StreamingRecognizeRequest(audio_content=item))
            self._written += 1
            if self._room_waiter is not None:
                self._transport.to_trio(self._room_freed)


async def _started_when(ready: trio.Event, task_status: trio.TaskStatus[None]) -> None:
    await ready.wait()
    task_status.started()


def _settle(task: asyncio.Task[None]) -> None:
    """Cancel a task we no longer need, or collect its failure so asyncio does not log it."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
