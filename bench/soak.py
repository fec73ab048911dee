"""Soak: a few hundred live sessions for minutes while Riva fails under them.

    python -m bench.soak --sessions 200 --minutes 3 --kill-every 40
    python -m bench.soak --sessions 100 --minutes 2 --workers 2 --kill-worker-every 30

Runs fake_riva and the gateway (hypercorn, as deployed) as subprocesses; every session
streams words encoded in its audio (fake_riva's ``fake.words_in_audio``) at real-time
pace and checks that each final it was promised arrives exactly once. Faults: every
session's first Riva stream fails mid-way (UNAVAILABLE or INTERNAL), and the whole
fake_riva process is killed and restarted every ``--kill-every`` seconds. Prints sessions
completed, finals lost and duplicated (both must be 0) and the gateway's resources.
Not part of the test suite: it takes minutes.

``--workers N`` runs ``python -m service serve --workers N`` on a redis-server of its own, and
``--kill-worker-every S`` kills one worker (SIGKILL, as the OOM killer would) every S seconds;
the supervisor starts it again. Sessions then run through the client library
(``service.client``), which reconnects a dropped audio socket, resends from the server's
``audio_bytes_received`` and resumes the event stream with ``Last-Event-ID``: what a client of
a scaled-out deployment does when an instance dies under it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import trio
from httpx_sse import aconnect_sse
from trio_websocket import ConnectionClosed, open_websocket_url

from bench import procs
from service.client.api import Options
from service.client.audio import RawAudio
from service.client.errors import ClientError
from service.client.session import transcribe

ROOT = Path(__file__).resolve().parent.parent
WORDS = "alpha bravo|charlie delta|echo foxtrot"
PATTERN = [(1, 200), (2, 200), (0, 400), (3, 200), (4, 200), (0, 400), (5, 200), (6, 200), (0, 400)]
FINALS_PER_CYCLE = ["alpha bravo", "charlie delta", "echo foxtrot"]
CHUNK = 3200


def cycle_audio() -> bytes:
    return np.concatenate([np.full(ms * 16, v, dtype="<i2") for v, ms in PATTERN]).tobytes()


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    reconnects: int = 0
    failed_lost: int = 0  # finals a failed session never delivered (its client was told why)
    errors: dict[str, int] = field(default_factory=dict)


def start_fake_riva(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_riva", "--port", str(port), "--max-streams", "2000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None and b"ready" in process.stdout.readline()
    return process


async def one_session(base: str, n: int, cycles: int, tally: Tally) -> None:
    """One session; any failure of the session is counted, never raised, so the soak goes on."""
    try:
        await _one_session(base, n, cycles, tally)
    except Exception as exc:  # a soak reports failures, it does not stop on them
        tally.failed += 1
        key = f"client:{type(exc).__name__}"
        tally.errors[key] = tally.errors.get(key, 0) + 1


def session_config(n: int) -> dict[str, object]:
    """Words in the audio, and a Riva stream that fails once mid-way."""
    faults = {"fake.fail_after_chunks": str(5 + n % 20), "fake.fail_code": ("UNAVAILABLE", "INTERNAL")[n % 2]}
    return {
        "custom_configuration": {
            "fake.transcript": WORDS,
            "fake.words_in_audio": "true",
            "fake.fault_times": "1",
            "fake.fault_id": f"soak-{n}",
            **faults,
        },
        "interim_results": False,
    }


def count_finals(finals: list[str], cycles: int, tally: Tally) -> None:
    expected = FINALS_PER_CYCLE * cycles
    for text in set(expected) | set(finals):
        want, got = expected.count(text), finals.count(text)
        tally.lost += max(0, want - got)
        tally.duplicated += max(0, got - want)


@dataclass
class FinalsSeen:
    """The client library's printer: the finals its event stream delivered, whatever the outcome."""

    finals: list[str] = field(default_factory=list)

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        if name == "transcript" and data.get("is_final"):
            self.finals.append(str(data.get("text", "")))

    def close(self) -> None:
        pass


async def client_session(base: str, n: int, cycles: int, tally: Tally) -> None:
    """One session through the client library, which rides out a worker's death. Its finals
    count even when it fails: a failure must not hide a lost word."""
    options = Options(url=base, interim=False, settings=session_config(n), finish_timeout_s=60)
    seen = FinalsSeen()
    try:
        result = await transcribe(options, RawAudio.from_bytes(cycle_audio() * cycles), seen)
    except ClientError as exc:
        tally.failed += 1
        tally.errors[f"client: {exc}"[:80]] = tally.errors.get(f"client: {exc}"[:80], 0) + 1
        tally.failed_lost += max(0, len(FINALS_PER_CYCLE) * cycles - len(seen.finals))
        return
    tally.completed += 1
    tally.reconnects += result.reconnects
    count_finals(seen.finals, cycles, tally)


async def _one_session(base: str, n: int, cycles: int, tally: Tally) -> None:
    audio = cycle_audio()
    config = session_config(n)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        session = (await http.post("/v1/sessions", json=config)).json()
        finals: list[str] = []
        names: list[str] = []

        async def read() -> None:
            headers = {"Authorization": f"Bearer {session['token']}"}
            async with aconnect_sse(http, "GET", session["events_url"], headers=headers, timeout=None) as source:
                async for event in source.aiter_sse():
                    if not event.data:
                        continue
                    names.append(event.event)
                    data = json.loads(event.data)
                    if event.event == "transcript" and data["is_final"]:
                        finals.append(data["text"])
                    if event.event == "error":
                        tally.errors[data["code"]] = tally.errors.get(data["code"], 0) + 1
                    if event.event == "end":
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            url = base.replace("http", "ws", 1) + session["audio_url"] + f"?token={session['token']}"
            try:
                async with open_websocket_url(url) as ws:
                    for _ in range(cycles):
                        for start in range(0, len(audio), CHUNK):
                            await ws.send_message(audio[start : start + CHUNK])
                            await trio.sleep(0.1)
                    await ws.send_message('{"type": "end"}')
                    with trio.move_on_after(60):
                        while True:
                            await ws.get_message()
            except ConnectionClosed:
                pass
    if names and names[-1] == "end" and "error" not in names:
        tally.completed += 1
    else:
        tally.failed += 1
    tally.reconnects += names.count("reconnecting")
    count_finals(finals, cycles, tally)


async def soak(args: argparse.Namespace, redis_url: str = "") -> None:
    riva_port, gateway_port = procs.free_port(), procs.free_port()
    riva = start_fake_riva(riva_port)
    env = {
        **os.environ,
        "RESERVE_RIVA_URI": f"127.0.0.1:{riva_port}",
        "RESERVE_MAX_SESSIONS": str(args.sessions * 2),
        "RESERVE_RIVA_RECONNECT_DEADLINE_S": "20",
        "RESERVE_LOG_LEVEL": "WARNING",
        "RESERVE_AUTH_DISABLED": "true",
        "RESERVE_REDIS_URL": redis_url,
    }
    log_path = ROOT / "bench" / "results" / "soak-gateway.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bind = ["--bind", f"127.0.0.1:{gateway_port}"]
    if args.workers > 1:
        config = procs.bench_hypercorn_config(log_path.parent, ROOT)
        argv = [sys.executable, "-m", "service", "serve", "--workers", str(args.workers), "--config", str(config)]
        argv += bind
    else:
        argv = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", *bind]
        argv += ["--access-logfile", "/dev/null", "service.app:app"]
    gateway = subprocess.Popen(  # noqa: ASYNC220 - starting a process does not block
        argv,
        cwd=ROOT,
        env=env,
        stderr=log_path.open("wb"),  # the child writes it; ours is closed when this process exits
    )
    base = f"http://127.0.0.1:{gateway_port}"
    tally = Tally()
    kills = worker_kills = 0
    session_task = client_session if args.workers > 1 else one_session
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await trio.sleep(0.2)
        proc = psutil.Process(gateway.pid)
        base_threads, base_rss = _threads_and_rss(proc)
        cycles = max(1, int(args.minutes * 60 / 2.4))
        started = time.monotonic()
        cpu = TreeCpu(proc)
        peak_threads = peak_rss = 0
        async with trio.open_nursery() as nursery:
            for n in range(args.sessions):
                nursery.start_soon(session_task, base, n, cycles, tally)
                await trio.sleep(0.02)

            async def chaos() -> None:
                nonlocal riva, kills, peak_threads, peak_rss
                while True:
                    await trio.sleep(args.kill_every)
                    riva.kill()
                    riva.wait()
                    kills += 1
                    await trio.sleep(1.0)
                    riva = await trio.to_thread.run_sync(start_fake_riva, riva_port)

            async def kill_workers() -> None:
                """SIGKILL one worker every ``--kill-worker-every`` seconds: its sessions move."""
                nonlocal worker_kills
                while True:
                    await trio.sleep(args.kill_worker_every)
                    workers = proc.children()
                    if workers:
                        with contextlib.suppress(psutil.Error):
                            random.choice(workers).kill()
                            worker_kills += 1

            async def watch() -> None:
                nonlocal peak_threads, peak_rss
                while True:
                    threads, rss = _threads_and_rss(proc)
                    peak_threads, peak_rss = max(peak_threads, threads), max(peak_rss, rss)
                    cpu.sample()
                    await trio.sleep(1)

            helpers = trio.CancelScope()

            async def run_helpers() -> None:
                with helpers:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(chaos)
                        inner.start_soon(watch)
                        if args.workers > 1 and args.kill_worker_every > 0:
                            inner.start_soon(kill_workers)

            nursery.start_soon(run_helpers)
            while tally.completed + tally.failed < args.sessions:  # noqa: ASYNC110 - a progress poll
                await trio.sleep(0.5)
            helpers.cancel()
        elapsed = time.monotonic() - started
        cpu.sample()
        cpu_s = cpu.seconds
        await trio.sleep(12)  # trio keeps idle worker threads for 10 s before ending them
        after_threads, after_rss = _threads_and_rss(proc)
        audio_s = cycles * 2.4
        print(f"soak: {args.sessions} sessions x {audio_s:.0f} s of audio, {elapsed:.0f} s wall")
        if args.workers > 1:
            print(f"  {args.workers} workers on Redis; a worker killed (SIGKILL) {worker_kills}x")
        print(f"  fake_riva killed and restarted {kills}x")
        print(f"  sessions completed {tally.completed}, failed {tally.failed}, errors {tally.errors}")
        print(f"  finals lost {tally.lost}, duplicated {tally.duplicated}, reconnects seen {tally.reconnects}")
        if tally.failed_lost:
            print(f"  finals the failed sessions did not deliver: {tally.failed_lost}")
        print(f"  gateway CPU {cpu_s:.1f} s ({100 * cpu_s / elapsed:.0f}% of a core, all its processes)")
        print(f"  gateway threads {base_threads} -> peak {peak_threads} -> {after_threads}")
        mib = 2**20
        print(f"  gateway RSS {base_rss / mib:.0f} MiB -> peak {peak_rss / mib:.0f} MiB -> {after_rss / mib:.0f} MiB")
        if tally.lost or tally.duplicated:
            raise SystemExit(1)
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()
        riva.kill()
        riva.wait()


class TreeCpu:
    """CPU seconds of the gateway's processes since this started, sampled every second so that a
    killed worker's CPU (up to its last sample) still counts, and a restarted one's from zero."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        for member in procs.tree(process):
            with contextlib.suppress(psutil.Error):
                self._start[member.pid] = self._last[member.pid] = procs.cpu_seconds(member)

    def sample(self) -> None:
        for member in procs.tree(self.process):
            with contextlib.suppress(psutil.Error):
                self._last[member.pid] = procs.cpu_seconds(member)

    @property
    def seconds(self) -> float:
        return sum(last - self._start.get(pid, 0.0) for pid, last in self._last.items())


def _threads_and_rss(process: psutil.Process) -> tuple[int, int]:
    """Threads and resident memory summed over the gateway's processes."""
    threads = rss = 0
    for member in procs.tree(process):
        with contextlib.suppress(psutil.Error):
            threads, rss = threads + member.num_threads(), rss + member.memory_info().rss
    return threads, rss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--kill-every", type=float, default=40.0, help="seconds between fake_riva restarts")
    parser.add_argument("--workers", type=int, default=1, help="N > 1: `serve --workers N` on a redis-server")
    parser.add_argument("--kill-worker-every", type=float, default=0.0, help="seconds between worker kills (0: none)")
    args = parser.parse_args(argv)
    if args.workers <= 1:
        trio.run(soak, args)
        return
    with tempfile.TemporaryDirectory() as tmp, procs.redis_server(Path(tmp)) as (_, redis_url):
        trio.run(soak, args, redis_url)


if __name__ == "__main__":
    main()
