"""The processes under test (fake_riva, the gateway under hypercorn) and what the OS says about them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-" + os.urandom(16).hex()  # this run's only key; passed through the environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    """Each stream holds two sockets here and two in the gateway; lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, timeout_s: float = 10) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Child(name, popen, log_path)


def _wait_for(child: Child, ready: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child.check_alive()
        text = child.log_path.read_text(errors="replace")
        for line in text.splitlines():
            if ready in line:
                return line
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} not ready after {timeout_s} s")


@contextlib.contextmanager
def fake_riva(log_dir: Path, *, aio: bool, max_streams: int) -> Iterator[tuple[Child, str]]:
    port = free_port()
    argv = [sys.executable, "-m", "fake_riva", "--port", str(port), "--recognizer", "tagged"]
    argv += ["--max-streams", str(max_streams)]
    if aio:
        argv.append("--aio")
    child = _spawn("fake_riva", argv, {**os.environ, "PYTHONPATH": str(ROOT)}, log_dir)
    try:
        _wait_for(child, "fake_riva ready on", 60)
        yield child, f"127.0.0.1:{port}"
    finally:
        child.stop()


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[tuple[Child, str]]:
    """A redis-server on a free loopback port (no persistence: the bench measures the data path)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(log_dir)]
    child = _spawn("redis", argv, dict(os.environ), log_dir)
    try:
        _wait_for(child, "Ready to accept connections", 30)
        yield child, f"redis://127.0.0.1:{port}"
    finally:
        child.stop()


def bench_hypercorn_config(log_dir: Path, src: Path) -> Path:
    """The project's hypercorn.toml with the access log left out (hypercorn's CLI can only
    redirect it, and ``accesslog`` absent means no access logger at all)."""
    lines = (src / "hypercorn.toml").read_text().splitlines()
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in ("accesslog", "access_log_format")]
    path = log_dir / "hypercorn-bench.toml"
    log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(kept) + "\n")
    return path


@contextlib.contextmanager
def gateway(
    log_dir: Path,
    riva_target: str,
    *,
    max_sessions: int,
    transport: str | None = None,
    src: Path = ROOT,
    app: str = "service.app:app",
    redis_url: str = "",
    workers: int = 1,
) -> Iterator[tuple[Child, int]]:
    """hypercorn serving ``service.app:app`` from ``src`` (the working tree, or a snapshot of a commit);
    with ``workers`` > 1, ``python -m service serve --workers N`` (a supervisor and N worker processes)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(src) if src == ROOT else f"{src}{os.pathsep}{ROOT}",  # bench.floor_app lives in ROOT
        RESERVE_RIVA_URI=riva_target,
        RESERVE_MAX_SESSIONS=str(max_sessions),
        RESERVE_LOG_LEVEL="WARNING",
        RESERVE_API_KEYS=API_KEY,  # gateways with client auth need a key to create sessions; older ones ignore it
    )
    if transport is not None:  # else the service's default; gateways older than the setting ignore it
        env["RESERVE_RIVA_TRANSPORT"] = transport
    if redis_url:  # shared mode: state in Redis
        env["RESERVE_REDIS_URL"] = redis_url
    config = bench_hypercorn_config(log_dir, src)
    if workers > 1:  # the project's own multi-worker command (it needs RESERVE_REDIS_URL)
        argv = [sys.executable, "-m", "service", "serve", "--workers", str(workers), "--config", str(config)]
        argv += ["--bind", f"127.0.0.1:{port}"]
    else:
        hypercorn = str(Path(sys.executable).with_name("hypercorn"))
        argv = [hypercorn, "--config", str(config), "--bind", f"127.0.0.1:{port}", app]
    child = _spawn("gateway", argv, env, log_dir, cwd=src)
    try:
        deadline = time.monotonic() + 60
        while True:
            child.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gateway not healthy after 60 s")
            time.sleep(0.1)
        yield child, port
    finally:
        child.stop()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def tree(process: psutil.Process) -> list[psutil.Process]:
    """The process and all its descendants (a ``serve --workers N`` supervisor and its workers)."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds summed over the process tree (a child that ends inside a window is missed)."""
    total = 0.0
    for member in tree(process):
        with contextlib.suppress(psutil.Error):
            total += cpu_seconds(member)
    return total


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each live thread (tid -> (group, seconds)), from /proc/PID/task/*/schedstat
    (the scheduler's exact run time; the tick-sampled utime/stime of single threads is too coarse).
    Groups: the main (trio) thread, the aio transport's loop thread, trio's worker threads, other
    Python threads, gRPC's C threads."""
    threads: dict[int, tuple[str, float]] = {}
    for entry in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (entry / "comm").read_text().rstrip("\n")
            run_ns = int((entry / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between listing and reading
        tid = int(entry.name)
        threads[tid] = (_thread_group(tid, pid, comm), run_ns / 1e9)
    return threads


def _thread_group(tid: int, pid: int, comm: str) -> str:
    if tid == pid:
        return "main"
    if comm.startswith("_riva_aio_loop"):  # the aio transport's loop thread (a trio worker named after it)
        return "aio_loop"
    if comm.startswith("Trio thread") or " from " in comm:  # trio names a busy worker "<fn> from <task>"
        return "trio_workers"
    if comm.startswith(("grpc", "default-exec", "resolver-exec", "timer", "event_engine")):
        return "grpc_core"
    return "other:" + comm


def snapshot(rev: str, into: Path) -> Path:
    """A read-only copy of the tree at ``rev`` (``git archive``; the repository is not touched)."""
    import shutil
    import tarfile
    import tempfile

    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    with tempfile.TemporaryFile() as tar:
        subprocess.run(["git", "archive", rev], cwd=ROOT, stdout=tar, check=True)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as archive:
            archive.extractall(into, filter="data")
    return into
