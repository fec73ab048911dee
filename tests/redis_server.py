"""A real ``redis-server`` (Debian's package) on a free loopback port, one per test.

``running_redis`` starts it and stops it; ``RedisServer.stop``/``start`` restart it on the
same port (with ``appendonly`` when asked, so a restart keeps what was written).
``running_tls_redis`` and ``running_unix_redis`` start one reached only over TLS, or only
through a Unix socket, and give the URL that reaches it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.certs import make_pki

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    directory: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    maxmemory: str = "64mb"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        command += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        command += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction", "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_started(self.process, self.answers, f"on port {self.port}", timeout_s)
        except RuntimeError:
            self.stop()
            raise

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (Redis writes its append-only file and exits) or, with ``kill``, SIGKILL."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def running_redis(directory: Path, **options: object) -> Iterator[RedisServer]:
    server = RedisServer(directory, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Import it into a test module (``from tests.redis_server import redis_server``) to use it."""
    directory = tmp_path / "redis"
    directory.mkdir()
    with running_redis(directory) as server:
        yield server


def _wait_started(server: subprocess.Popen[bytes], answers: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def _serving(command: list[str], answers: Callable[[], bool], what: str) -> Iterator[None]:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_started(server, answers, what, timeout_s=10)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def running_tls_redis(directory: Path) -> Iterator[tuple[str, str]]:
    """A redis-server that speaks only TLS, with a certificate from a throwaway CA: the URL that
    trusts that CA (``ssl_ca_certs``), and the bare URL (the system's CAs only)."""
    pki = make_pki()
    files = {name: directory / name for name in ("server.pem", "server.key", "ca.pem")}
    for path, data in zip(files.values(), (pki.server.cert, pki.server.key, pki.ca.cert), strict=True):
        path.write_bytes(data)
    port = free_port()
    command = [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--tls-cert-file", str(files["server.pem"]), "--tls-key-file", str(files["server.key"])]
    command += ["--tls-ca-cert-file", str(files["ca.pem"]), "--tls-auth-clients", "no", "--save", ""]

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    bare = f"rediss://127.0.0.1:{port}/0"
    with _serving(command, listening, "with TLS"):
        yield f"{bare}?ssl_ca_certs={files['ca.pem']}", bare


@contextlib.contextmanager
def running_unix_redis(directory: Path) -> Iterator[str]:
    """A redis-server on a Unix socket only (no TCP port): its ``unix://`` URL."""
    path = directory / "redis.sock"
    command = [REDIS_SERVER, "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700"]
    command += ["--dir", str(directory), "--save", ""]

    def answers() -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    with _serving(command, answers, "on a Unix socket"):
        yield f"unix://{path}?db=0"
