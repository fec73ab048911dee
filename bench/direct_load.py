"""The direct phase: the same N streams straight to fake_riva over gRPC, the gateway's baseline.

Two clients, both on one shared channel like the gateway's:

* ``aio`` (default): ``grpc.aio`` on one asyncio loop, one coroutine writing each
  stream's chunks (``call.write``) and one reading its responses (``call.read``).
* ``threads``: NVIDIA's ``riva.client`` pattern exactly: the sync stub takes a request
  generator (gRPC consumes it in a thread of its own) and a thread per stream iterates
  the responses. At hundreds of streams this costs the load generator two threads a
  stream, so it is the option, not the default.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import grpc
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc
from riva.client.proto import riva_audio_pb2 as audio_pb

from bench.meter import Mark, Peaks, Watch, window
from bench.model import CHUNK_S, PhaseResult, StreamRecord, chunk, chunk_bytes

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def streaming_config(final_every: int = 0) -> asr.StreamingRecognizeRequest:
    """What the gateway sends for the bench's session body (``bench.gateway_load.session_body``)."""
    config = asr.RecognitionConfig(
        encoding=audio_pb.LINEAR_PCM,
        sample_rate_hertz=16000,
        language_code="en-US",
        max_alternatives=1,
        enable_automatic_punctuation=True,
        verbatim_transcripts=True,
        audio_channel_count=1,
        custom_configuration={"fake.final_every": str(final_every)} if final_every else {},
    )
    return asr.StreamingRecognizeRequest(
        streaming_config=asr.StreamingRecognitionConfig(config=config, interim_results=True)
    )


def _on_response(record: StreamRecord, response: asr.StreamingRecognizeResponse, at: float) -> None:
    for r in response.results:
        if r.alternatives:
            record.on_result(r.alternatives[0].transcript, at)


def _finish(result: PhaseResult, records: list[StreamRecord], marks: list[Mark]) -> PhaseResult:
    result.summarise(records)
    if len(marks) == 2:
        w = window(marks[0], marks[1])
        result.window_s = w.seconds
        result.cpu_s = w.cpu_s
    return result


# -- grpc.aio --------------------------------------------------------------------
async def _aio_phase(
    target: str, n: int, seconds: float, watch: Watch, peaks: Peaks, warmup_s: float, final_every: int, chunk_s: float
) -> PhaseResult:
    chunks = round(seconds / chunk_s)
    size = chunk_bytes(chunk_s)
    result = PhaseResult("direct", n, seconds, extra={"client": "grpc.aio"})
    records = [StreamRecord(i, chunks) for i in range(n)]
    marks: list[Mark] = []
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        stub = asr_grpc.RivaSpeechRecognitionStub(channel)
        t0 = time.perf_counter() + 0.5

        async def one(record: StreamRecord, start: float) -> None:
            call = stub.StreamingRecognize()

            async def send() -> None:
                await call.write(streaming_config(final_every))
                max_lag = 0.0
                for k in range(chunks):
                    due = start + k * chunk_s
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                        now = time.perf_counter()
                    elif now - due > max_lag:
                        max_lag = now - due
                    record.sent[k] = now
                    await call.write(asr.StreamingRecognizeRequest(audio_content=chunk(record.stream_no, k, size)))
                await call.done_writing()
                record.max_lag_s = max_lag

            async def receive() -> None:
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        return
                    _on_response(record, response, time.perf_counter())

            try:
                await asyncio.gather(send(), receive())
            except grpc.aio.AioRpcError as exc:
                record.errors.append(f"grpc_{exc.code().name}")
            except asyncio.CancelledError:
                record.errors.append("phase_timeout")
                raise

        async def measure() -> None:
            await asyncio.sleep(max(0.0, t0 + warmup_s - time.perf_counter()))
            marks.append(await asyncio.to_thread(watch.mark))
            await asyncio.sleep(max(0.0, t0 + seconds - time.perf_counter()))
            marks.append(await asyncio.to_thread(watch.mark))

        async def sample() -> None:
            while True:
                peaks.sample()
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        measurer = asyncio.create_task(measure())
        tasks = [asyncio.create_task(one(r, t0 + chunk_s * r.stream_no / n)) for r in records]
        _done, pending = await asyncio.wait(tasks, timeout=seconds + 60)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await measurer
        sampler.cancel()
    return _finish(result, records, marks)


def run_direct_aio(
    target: str,
    n: int,
    seconds: float,
    watch: Watch,
    peaks: Peaks,
    warmup_s: float = 1.0,
    final_every: int = 0,
    chunk_s: float = CHUNK_S,
) -> PhaseResult:
    return asyncio.run(_aio_phase(target, n, seconds, watch, peaks, warmup_s, final_every, chunk_s))


# -- NVIDIA's sync pattern: a request generator, responses iterated in a thread ----------
def run_direct_threads(
    target: str,
    n: int,
    seconds: float,
    watch: Watch,
    peaks: Peaks,
    warmup_s: float = 1.0,
    final_every: int = 0,
    chunk_s: float = CHUNK_S,
) -> PhaseResult:
    chunks = round(seconds / chunk_s)
    size = chunk_bytes(chunk_s)
    result = PhaseResult("direct", n, seconds, extra={"client": "threads (riva.client pattern)"})
    records = [StreamRecord(i, chunks) for i in range(n)]
    channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = asr_grpc.RivaSpeechRecognitionStub(channel)
    t0 = time.perf_counter() + 1.0

    def requests(record: StreamRecord, start: float) -> Iterator[asr.StreamingRecognizeRequest]:
        yield streaming_config(final_every)
        max_lag = 0.0
        for k in range(chunks):
            due = start + k * chunk_s
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
                now = time.perf_counter()
            elif now - due > max_lag:
                max_lag = now - due
            record.sent[k] = now
            yield asr.StreamingRecognizeRequest(audio_content=chunk(record.stream_no, k, size))
        record.max_lag_s = max_lag

    def one(record: StreamRecord, start: float) -> None:
        try:
            for response in stub.StreamingRecognize(requests(record, start)):
                _on_response(record, response, time.perf_counter())
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "?"
            record.errors.append(f"grpc_{code}")

    threads = [
        threading.Thread(
            target=one, args=(r, t0 + chunk_s * r.stream_no / n), daemon=True, name=f"direct-{r.stream_no}"
        )
        for r in records
    ]
    for t in threads:
        t.start()
    marks: list[Mark] = []
    for at in (t0 + warmup_s, t0 + seconds):
        while time.perf_counter() < at:
            peaks.sample()
            time.sleep(min(0.5, max(0.0, at - time.perf_counter())))
        marks.append(watch.mark())
    deadline = time.perf_counter() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
        if t.is_alive():
            result.add_error("phase_timeout")
    channel.close()
    return _finish(result, records, marks)
