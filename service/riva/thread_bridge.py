"""The reference transport: each session's blocking ``StreamingRecognize`` in its own threads.

Creating the call does not block, so it happens on the trio side, which keeps it
and can cancel it. Only iterating the responses blocks; that runs in a worker
thread under the session limiter. Audio crosses to gRPC's request thread through
a queue whose room is a trio semaphore, so a full queue makes ``send`` wait
(backpressure) and the request thread gives room back one way, with
``run_sync_soon``, never a blocking round trip. Results come back the same way.

Cancelling crosses the thread boundary explicitly: ``call.cancel()`` ends the
response iteration, and a sentinel ends the request iterator, so no thread or call
outlives the trio task that owns the stream.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from typing import Final

import grpc
import trio
from riva.client.proto import riva_asr_pb2 as asr

from service.errors import ReserveError, UpstreamError, from_grpc
from service.riva.channel import RivaTarget
from service.riva.probe import probe
from service.riva.results import Result, from_response

_END: Final = object()


class ThreadTransport:
    """Opens thread-bridged streams; the limiter bounds the worker threads they iterate in."""

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter

    def open_stream(
        self,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        queue_chunks: int,
    ) -> ThreadStream:
        return ThreadStream(target, config, on_results=on_results, limiter=self.limiter, queue_chunks=queue_chunks)

    async def probe(self, target: RivaTarget, *, timeout_s: float) -> asr.RivaSpeechRecognitionConfigResponse:
        """On the target's own channel, the one its streams use."""
        return await probe(target, timeout_s=timeout_s)


class ThreadStream:
    def __init__(
        self,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        limiter: trio.CapacityLimiter,
        queue_chunks: int,
    ) -> None:
        self._target = target
        self._config = config
        self._on_results = on_results
        self._limiter = limiter
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._room = trio.Semaphore(queue_chunks)
        self._token = trio.lowlevel.current_trio_token()
        self._input_closed = False
        self.bytes_sent = 0
        self.responses = 0
        self._cancelled = False  # set (trio side) before we cancel the call ourselves
        self.unanswered_since: float | None = None  # when audio went out that Riva has not answered

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    async def send(self, audio: bytes) -> None:
        """Queue audio for Riva, waiting while the queue is full."""
        await self._room.acquire()
        self._accept(audio)

    def try_send(self, audio: bytes) -> bool:
        try:
            self._room.acquire_nowait()
        except trio.WouldBlock:
            return False
        self._accept(audio)
        return True

    def _accept(self, audio: bytes) -> None:
        if self.unanswered_since is None:
            self.unanswered_since = trio.current_time()
        self.bytes_sent += len(audio)
        self._requests.put(audio)

    def close_input(self) -> None:
        """Half-close: Riva flushes its finals and ends the stream."""
        if not self._input_closed:
            self._input_closed = True
            self._requests.put(_END)

    async def run(self) -> None:
        """Run the call to its end; raise a ReserveError if Riva fails it."""
        call = self._target.stub.StreamingRecognize(self._request_iterator(), metadata=self._target.metadata)
        error: ReserveError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_on_exit, call)
            try:
                await trio.to_thread.run_sync(self._pump, call, limiter=self._limiter)
            except ReserveError as exc:
                error = exc
            finally:
                nursery.cancel_scope.cancel()
                self._requests.put(_END)  # unblocks gRPC's request thread if it still waits
        if error is not None:
            raise error

    # -- worker-thread side ---------------------------------------------------
    def _request_iterator(self) -> Iterator[asr.StreamingRecognizeRequest]:
        """Runs in gRPC's request thread."""
        yield asr.StreamingRecognizeRequest(streaming_config=self._config)
        while True:
            item = self._requests.get()
            if item is _END:
                return
            self._call_soon(self._room.release)
            assert isinstance(item, bytes)
            yield asr.StreamingRecognizeRequest(audio_content=item)

    def _pump(self, call: grpc.Call) -> None:
        """Runs in the worker thread: iterate responses, hand each to trio one way."""
        try:
            for response in call:
                self._call_soon(self._deliver, from_response(response))
        except grpc.RpcError as exc:
            if self._cancelled and isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return  # we cancelled it; the trio side knows why (a server-side cancel is a failure)
            raise from_grpc(exc) from None
        except Exception as exc:  # a bug in conversion must not look like Riva's fault
            raise UpstreamError(f"unreadable answer from Riva: {type(exc).__name__}") from exc

    async def _cancel_on_exit(self, call: grpc.Call) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self._cancelled = True
            call.cancel()

    def _deliver(self, results: list[Result]) -> None:
        """In trio: Riva answered (even with nothing, which proves it is alive)."""
        self.responses += 1
        self.unanswered_since = None
        self._on_results(results)

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the service is gone; nobody is left to tell
            self._token.run_sync_soon(fn, *args)
