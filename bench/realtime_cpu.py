"""``python -m bench.realtime_cpu``: gateway CPU per stream on ``/v1/realtime`` (OpenAI GA dialect,
base64 audio in JSON) beside the native path (binary WebSocket frames in, SSE out), at N real-time
streams of 100 ms chunks, against fake_riva's tagged recognizer (a final every ``--final-every``
chunks: one turn per second by default). CPU is the gateway process's, read from the OS over a
window in which every stream is live. Short by design (N=20, 20 s a phase): run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import trio
from httpx_sse import aconnect_sse
from trio_websocket import open_websocket_url

from bench import procs

CHUNK_S = 0.1


def chunk(stream_no: int, chunk_no: int, size: int) -> bytes:
    """The tagged recognizer echoes the first 8 bytes as its result's text."""
    return ((stream_no << 32) | chunk_no).to_bytes(8, "little") + bytes(size - 8)


@contextlib.contextmanager
def tagged_riva(log_dir: Path, final_every: int) -> Iterator[str]:
    port = procs.free_port()
    argv = [sys.executable, "-m", "fake_riva", "--port", str(port), "--recognizer", "tagged"]
    argv += ["--max-streams", "512", "--custom", f"fake.final_every={final_every}"]
    child = procs._spawn("fake_riva", argv, {**os.environ, "PYTHONPATH": str(procs.ROOT)}, log_dir)
    try:
        procs._wait_for(child, "fake_riva ready on", 60)
        yield f"127.0.0.1:{port}"
    finally:
        child.stop()


async def native_stream(base: str, no: int, rate: int, until: float, http: httpx.AsyncClient) -> None:
    key = {"Authorization": f"Bearer {procs.API_KEY}"}
    body = {"sample_rate_hertz": rate, "interim_results": True}
    session = (await http.post(f"{base}/v1/sessions", json=body, headers=key)).raise_for_status().json()
    token = {"Authorization": f"Bearer {session['token']}"}
    size = int(rate * CHUNK_S) * 2
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            async with aconnect_sse(http, "GET", f"{base}{session['events_url']}", headers=token, timeout=None) as src:
                async for sse in src.aiter_sse():
                    if sse.event == "end":
                        return

        nursery.start_soon(read)
        ws_url = base.replace("http", "ws", 1) + session["audio_url"]
        async with open_websocket_url(ws_url, extra_headers=[(k.encode(), v.encode()) for k, v in token.items()]) as ws:
            n = 0
            while trio.current_time() < until:
                await ws.send_message(chunk(no, n, size))
                n += 1
                await trio.sleep(CHUNK_S)
            await ws.send_message('{"type": "end"}')
            with contextlib.suppress(Exception):
                while True:
                    await ws.get_message()


async def realtime_stream(base: str, no: int, rate: int, until: float) -> None:
    url = base.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    headers = [(b"Authorization", f"Bearer {procs.API_KEY}".encode())]
    size = int(rate * CHUNK_S) * 2
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}}}}}  # fmt: skip
    async with open_websocket_url(url, extra_headers=headers) as ws, trio.open_nursery() as nursery:

        async def read() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await ws.get_message()

        nursery.start_soon(read)
        await ws.send_message(json.dumps(update))
        n = 0
        while trio.current_time() < until:
            audio = base64.b64encode(chunk(no, n, size)).decode()
            await ws.send_message(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            n += 1
            await trio.sleep(CHUNK_S)
        await ws.aclose()
        nursery.cancel_scope.cancel()


async def phase(kind: str, port: int, pid: int, n: int, seconds: float, rate: int) -> float:
    """Gateway CPU per stream, in % of a core, over the middle of the phase."""
    base = f"http://127.0.0.1:{port}"
    gateway = psutil.Process(pid)
    start = trio.current_time()
    until = start + seconds
    async with httpx.AsyncClient(timeout=30) as http, trio.open_nursery() as nursery:
        for no in range(n):
            if kind == "native":
                nursery.start_soon(native_stream, base, no, rate, until, http)
            else:
                nursery.start_soon(realtime_stream, base, no, rate, until)
        await trio.sleep_until(start + 3)  # everyone connected and streaming
        before, t0 = procs.cpu_seconds(gateway), time.monotonic()
        await trio.sleep_until(until - 1)
        cpu, window = procs.cpu_seconds(gateway) - before, time.monotonic() - t0
    return 100 * cpu / window / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--final-every", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, rate in (("native", 16000), ("realtime", 16000), ("realtime", 24000)):
            log_dir = Path(tmp) / f"{kind}{rate}"
            with (
                tagged_riva(log_dir, args.final_every) as target,
                procs.gateway(log_dir, target, max_sessions=args.streams + 10) as (child, port),
            ):
                label = f"{kind} {rate // 1000} kHz"
                results[label] = trio.run(phase, kind, port, child.pid, args.streams, args.seconds, rate)
                print(f"{label:>20}: {results[label]:.2f}% of a core per stream", flush=True)
    native = results["native 16 kHz"]
    for label, value in results.items():
        print(f"{label:>20}: {value / native:.2f}x the native path")


if __name__ == "__main__":
    main()
