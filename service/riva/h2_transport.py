"""The ``h2`` transport: every session's ``StreamingRecognize`` as a stream of one HTTP/2
connection per target, driven by trio on the gateway's own thread (``h2_connection``).

Nothing crosses a thread: audio goes from the session's task into h2's buffer, Riva's
responses are decoded and published by the connection's reader task. Backpressure is
HTTP/2's: a stream whose flow-control window is closed keeps its audio in a bounded
queue, and ``send`` waits while that queue is full.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import trio
from riva.client.proto import riva_asr_pb2 as asr

from service.errors import UpstreamError, UpstreamTimeout
from service.riva.channel import RivaTarget
from service.riva.h2_connection import PREFIX, Call, Connection
from service.riva.results import Result, from_response

STREAMING_PATH = b"/nvidia.riva.asr.RivaSpeechRecognition/StreamingRecognize"
CONFIG_PATH = b"/nvidia.riva.asr.RivaSpeechRecognition/GetRivaSpeechRecognitionConfig"


class H2Transport:
    """One connection per target, opened on first use and again after it fails."""

    def __init__(
        self,
        limiter: trio.CapacityLimiter,
        *,
        connect_timeout_s: float,
        keepalive_s: float,
    ) -> None:
        self.limiter = limiter
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._connections: dict[str, list[Connection]] = collections.defaultdict(list)
        self._opening: dict[str, trio.Lock] = collections.defaultdict(trio.Lock)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the connections' tasks until cancelled (sessions end before the transport)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def connection(self, target: RivaTarget) -> Connection:
        """A live connection to the target with room for one more stream, opening one if
        there is none (UpstreamUnavailable if Riva cannot be reached within the deadline).
        A Riva that limits streams per connection gets as many connections as it takes."""
        found = self._with_room(target)
        if found is not None:
            return found
        async with self._opening[target.uri]:
            found = self._with_room(target)
            if found is not None:
                return found
            assert self._nursery is not None, "the transport is not running"
            connection = Connection(target, connect_timeout_s=self._connect_timeout_s, keepalive_s=self._keepalive_s)
            await self._nursery.start(connection.run)
            self._connections[target.uri].append(connection)
            return connection

    def _with_room(self, target: RivaTarget) -> Connection | None:
        pool = self._connections[target.uri]
        pool[:] = [connection for connection in pool if not connection.closing]
        return next((connection for connection in pool if connection.has_room), None)

    def open_stream(
        self,
        target: RivaTarget,
        config: asr.StreamingRecognitionConfig,
        *,
        on_results: Callable[[list[Result]], None],
        queue_chunks: int,
    ) -> H2Stream:
        return H2Stream(self, target, config, on_results=on_results, queue_chunks=queue_chunks)

    async def probe(self, target: RivaTarget, *, timeout_s: float) -> asr.RivaSpeechRecognitionConfigResponse:
        """Ask Riva for its models on the connection the next stream will use."""
        answers: list[bytes] = []
        with trio.move_on_after(timeout_s) as scope:
            connection = await self.connection(target)
            call = connection.open_call(CONFIG_PATH, answers.append)
            call.send_message(asr.RivaSpeechRecognitionConfigRequest().SerializeToString())
            call.close_send()
            try:
                await call.finished.wait()
            finally:
                call.cancel()  # a no-op once finished
        if scope.cancelled_caught:
            raise UpstreamTimeout(f"Riva did not answer within {timeout_s:.2g} s")
        error = call.error()
        if error is not None:
            raise error
        if len(answers) != 1:
            raise UpstreamError(f"Riva answered a unary call with {len(answers)} messages")
        return asr.RivaSpeechRecognitionConfigResponse.FromString(answers[0])


class H2Stream:
    def __init__(
        self,
        transport: H2Transport,
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
        self._call: Call | None = None
        self._opened = trio.Event()
        self._input_closed = False
        self.bytes_sent = 0
        self.responses = 0
        self.unanswered_since: float | None = None

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    async def send(self, audio: bytes) -> None:
        call = self._call
        if call is None:  # ``run`` is still opening the call
            await self._opened.wait()
            call = self._call
            assert call is not None
        if call.queued >= self._capacity:
            await call.wait_room(self._capacity)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        self._accept(call, audio)

    def try_send(self, audio: bytes) -> bool:
        call = self._call
        if call is None or call.queued >= self._capacity:
            return False
        self._accept(call, audio)
        return True

    def _accept(self, call: Call, audio: bytes) -> None:
        if self.unanswered_since is None:
            self.unanswered_since = trio.current_time()
        self.bytes_sent += len(audio)
        call.send_framed(audio_message(audio))

    def close_input(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            if self._call is not None:
                self._call.close_send()

    async def run(self) -> None:
        async with self._transport.limiter:  # bounds live Riva streams, as the other transports do
            connection = await self._transport.connection(self._target)
            call = connection.open_call(STREAMING_PATH, self._message)
            call.send_message(asr.StreamingRecognizeRequest(streaming_config=self._config).SerializeToString())
            if self._input_closed:
                call.close_send()
            self._call = call
            self._opened.set()
            try:
                await call.finished.wait()
            finally:
                call.cancel()  # cancelled from trio (which knows why); a no-op once finished
            error = call.error()
            if error is not None:
                raise error

    def _message(self, payload: bytes) -> None:
        """In the connection's reader task: one response, published at once."""
        results = from_response(asr.StreamingRecognizeResponse.FromString(payload))  # a failure fails the call
        self.responses += 1
        self.unanswered_since = None
        self._on_results(results)


def audio_message(audio: bytes) -> bytes:
    """``StreamingRecognizeRequest(audio_content=audio)``, serialized and framed for gRPC.
    Written out by hand (field 2, length-delimited: one tag byte and a varint length), because
    building the protobuf object cost more than everything else in sending a chunk; a unit
    test holds it to protobuf's own encoding."""
    size = len(audio)
    header = bytearray(b"\x12")
    while size >= 0x80:
        header.append((size & 0x7F) | 0x80)
        size >>= 7
    header.append(size)
    return PREFIX.pack(False, len(header) + len(audio)) + header + audio
