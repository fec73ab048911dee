"""The gateway phase: N sessions, audio in over WebSocket, results out over SSE, in one trio process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import msgspec
import trio

from bench.meter import Mark, Peaks, Watch, window
from bench.model import CHUNK_S, PhaseResult, StreamRecord, chunk, chunk_bytes
from bench.procs import API_KEY
from bench.wire import OP_BINARY, RawEventStream, RawWebSocket, WireError, client_frame


def session_body(final_every: int) -> dict[str, object]:
    """``{"custom_configuration": {}, "interim_results": true}``, plus the tagged recognizer's
    ``fake.final_every`` when finals should come every so many chunks."""
    custom = {"fake.final_every": str(final_every)} if final_every else {}
    return {"custom_configuration": custom, "interim_results": True}


END_MESSAGE = '{"type": "end"}'


class _Transcript(msgspec.Struct):
    text: str


class _Error(msgspec.Struct):
    code: str = "?"


class _End(msgspec.Struct):
    reason: str


_transcript = msgspec.json.Decoder(_Transcript)
_error = msgspec.json.Decoder(_Error)
_end = msgspec.json.Decoder(_End)


@dataclass
class GatewayPlan:
    host: str
    port: int
    n: int
    seconds: float
    warmup_s: float = 1.0
    connect_concurrency: int = 32
    sample_every_s: float = 0.5
    timeout_slack_s: float = 60.0
    final_every: int = 0  # chunks per final result (0: only the final at the end)
    chunk_s: float = CHUNK_S  # audio per WebSocket frame
    on_window_start: Callable[[float], None] | None = None  # called with the window's length (a profiler)


@dataclass
class _Stream:
    record: StreamRecord
    session: dict[str, str]
    ws: RawWebSocket | None = None
    sse: RawEventStream | None = None
    done: bool = False


async def run_gateway_phase(plan: GatewayPlan, watch: Watch, peaks: Peaks) -> PhaseResult:
    chunks = round(plan.seconds / plan.chunk_s)
    result = PhaseResult("gateway", plan.n, plan.seconds)
    streams: list[_Stream] = []
    limit = trio.Semaphore(plan.connect_concurrency)
    base = f"http://{plan.host}:{plan.port}"

    # -- set-up: sessions over REST, then each one's event stream and audio socket
    setup_started = time.perf_counter()
    body = session_body(plan.final_every)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as http:

        async def create(i: int) -> None:
            async with limit:
                try:
                    response = await http.post("/v1/sessions", json=body)
                except httpx.HTTPError as exc:
                    result.add_error(f"create_{type(exc).__name__}")
                    return
            if response.status_code != 201:
                result.add_error(f"create_{response.status_code}")
                return
            streams.append(_Stream(StreamRecord(i, chunks), response.json()))

        async with trio.open_nursery() as nursery:
            for i in range(plan.n):
                nursery.start_soon(create, i)
    streams.sort(key=lambda s: s.record.stream_no)

    async def connect(stream: _Stream) -> None:
        headers = [("Authorization", f"Bearer {stream.session['token']}")]
        async with limit:
            try:
                stream.sse = await RawEventStream.connect(plan.host, plan.port, stream.session["events_url"], headers)
                stream.ws = await RawWebSocket.connect(plan.host, plan.port, stream.session["audio_url"], headers)
            except (OSError, WireError, trio.BrokenResourceError) as exc:
                stream.record.errors.append(f"connect_{type(exc).__name__}")

    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(connect, stream)
    result.extra["setup_s"] = round(time.perf_counter() - setup_started, 2)
    ready = [s for s in streams if s.ws is not None and s.sse is not None]

    # -- the run: every stream sends a chunk every 100 ms; starts spread over one chunk period
    t0 = time.perf_counter() + 0.5
    marks: list[Mark] = []

    async def measure() -> None:
        await _sleep_until(t0 + plan.warmup_s)
        marks.append(await trio.to_thread.run_sync(watch.mark))
        if plan.on_window_start is not None:
            plan.on_window_start(plan.seconds - plan.warmup_s)
        await _sleep_until(t0 + plan.seconds)
        marks.append(await trio.to_thread.run_sync(watch.mark))

    async def sample() -> None:
        while True:
            peaks.sample()
            await trio.sleep(plan.sample_every_s)

    with trio.move_on_after(plan.seconds + plan.timeout_slack_s) as deadline:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(measure)
            sampler_scope = trio.CancelScope()

            async def sampler() -> None:
                with sampler_scope:
                    await sample()

            nursery.start_soon(sampler)
            async with trio.open_nursery() as streams_nursery:
                for j, stream in enumerate(ready):
                    start = t0 + plan.chunk_s * j / max(1, len(ready))
                    streams_nursery.start_soon(_run_stream, stream, start, chunks, plan.chunk_s)
            sampler_scope.cancel()
    if deadline.cancelled_caught:
        result.add_error("phase_timeout")
    for stream in streams:
        for conn in (stream.ws, stream.sse):
            if conn is not None:
                await conn.aclose()
        if not stream.done and stream.ws is not None:
            stream.record.errors.append("unfinished")

    records = [s.record for s in streams]
    result.summarise(records)
    if len(marks) == 2:
        w = window(marks[0], marks[1], watch.breakdown)
        result.window_s = w.seconds
        result.cpu_s = w.cpu_s
        result.extra["gateway_thread_cpu_s"] = w.thread_cpu_s
    result.extra["streams_started"] = len(ready)
    return result


async def _sleep_until(at: float) -> None:
    delay = at - time.perf_counter()
    if delay > 0:
        await trio.sleep(delay)


async def _run_stream(stream: _Stream, start: float, chunks: int, chunk_s: float) -> None:
    assert stream.ws is not None and stream.sse is not None
    ws, sse, record = stream.ws, stream.sse, stream.record
    finished = {"sse": False, "ws": False}

    def on_event(name: bytes, data: bytes, at: float) -> bool:
        if name == b"transcript":
            record.on_result(_transcript.decode(data).text, at)
        elif name == b"error":
            record.errors.append("sse_error_" + _error.decode(data).code)
        elif name == b"end":
            reason = _end.decode(data).reason
            if reason != "finished":
                record.errors.append("end_" + reason)
            return True
        return False

    async def read_events() -> None:
        try:
            if not await sse.run(on_event):
                record.errors.append("sse_closed_before_end")
        except (trio.BrokenResourceError, OSError, ValueError, msgspec.DecodeError) as exc:
            record.errors.append(f"sse_{type(exc).__name__}")
        finished["sse"] = True

    async def read_socket() -> None:
        try:
            outcome = await ws.read_until_closed()
        except (trio.BrokenResourceError, OSError) as exc:
            record.errors.append(f"ws_read_{type(exc).__name__}")
        else:
            if outcome.close_code != 1000:
                record.errors.append(f"ws_close_{outcome.close_code}")
        finished["ws"] = True

    size = chunk_bytes(chunk_s)
    frame_head = client_frame(OP_BINARY, bytes(size))[:-size]

    async def send() -> None:
        stream_no = record.stream_no
        sent = record.sent
        max_lag = 0.0
        try:
            for k in range(chunks):
                due = start + k * chunk_s
                now = time.perf_counter()
                if due > now:
                    await trio.sleep(due - now)
                    now = time.perf_counter()
                elif now - due > max_lag:
                    max_lag = now - due
                sent[k] = now
                await ws.send_frame(frame_head + chunk(stream_no, k, size))
            await ws.send_text(END_MESSAGE)
            await ws.finish_sending()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            record.errors.append(f"ws_send_{type(exc).__name__}")
        record.max_lag_s = max_lag

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_events)
        nursery.start_soon(read_socket)
        nursery.start_soon(send)
    stream.done = finished["sse"] and finished["ws"]
