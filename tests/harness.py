"""Real parts for tests: fake_riva on a free port, hypercorn serving the app on another,
and small real clients (httpx for REST and SSE, trio-websocket for audio)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio
from httpx_sse import aconnect_sse
from hypercorn.config import Config
from hypercorn.trio import serve
from pydantic import SecretStr
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from fake_riva import FakeRiva
from service.app import create_app
from service.settings import Settings

PCM_CHUNK_100MS = 3200  # 16 kHz, 16-bit mono
TEST_API_KEY = "test-api-key-0123456789abcdef"  # what running_gateway configures unless told otherwise
_KEYED_PATHS = ("/v1/sessions", "/v1/tokens")


@contextlib.contextmanager
def running_fake_riva(**kwargs: Any) -> Iterator[FakeRiva]:
    server = FakeRiva(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop(0)


@dataclass
class Gateway:
    base_url: str
    settings: Settings
    http: httpx.AsyncClient
    app: QuartTrio
    audio_base_url: str | None = None  # shared mode: audio sockets go to a second instance

    @property
    def ws_base(self) -> str:
        return (self.audio_base_url or self.base_url).replace("http://", "ws://", 1)

    async def create_session(self, expect: int = 201, **config: Any) -> dict[str, Any]:
        response = await self.http.post("/v1/sessions", json=config)
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]


def api_key_of(settings: Settings) -> str | None:
    """The first configured API key (from ``api_keys``), which a back end would send."""
    keys = [k.strip() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]
    return keys[0] if keys else None


def with_test_key(settings: Settings) -> Settings:
    """Settings as a deployment has them: with an API key, unless they name keys or turn auth off."""
    if settings.auth_disabled or api_key_of(settings) or settings.api_keys_file is not None:
        return settings
    return settings.model_copy(update={"api_keys": SecretStr(TEST_API_KEY)})


def key_sender(api_key: str | None) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx hook acting as a back end: POSTs that create sessions or tokens carry the API
    key unless the test set its own ``Authorization``. Session resources never get it."""

    async def send_key(request: httpx.Request) -> None:
        if api_key and request.method == "POST" and request.url.path in _KEYED_PATHS:
            request.headers.setdefault("Authorization", f"Bearer {api_key}")

    return send_key


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """hypercorn on 127.0.0.1:0 inside a nursery; the bound port comes back through ``started``.

    In the e2e suite's shared mode (RESERVE_REDIS_URL in the environment) it is two instances
    on one Redis: requests go to the first and audio sockets to the second, so every test also
    proves that any instance serves any request (the session moves when its audio attaches)."""
    settings = with_test_key(settings)
    split = bool(settings.redis_url) and bool(os.environ.get("RESERVE_REDIS_URL"))
    async with contextlib.AsyncExitStack() as stack:
        base, app = await stack.enter_async_context(_serving(settings))
        audio_base = (await stack.enter_async_context(_serving(settings)))[0] if split else None
        hooks = {"request": [key_sender(api_key_of(settings))]}
        async with httpx.AsyncClient(base_url=base, timeout=10, event_hooks=hooks) as http:
            yield Gateway(base, settings, http, app, audio_base)


@contextlib.asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[str, QuartTrio]]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # a Logger is used as is: printed once, via root
    config.graceful_timeout = 2
    app = create_app(settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
        )
        try:
            yield binds[0], app
        finally:
            shutdown.set()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5) -> None:
    """Poll state owned by other threads (fake_riva's counters), which cannot wake us."""
    with trio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - nothing to await on across threads
            await trio.sleep(0.01)


async def poll_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 5) -> None:
    """Poll the gateway over HTTP for a condition it publishes no event for."""
    with trio.fail_after(timeout_s):
        while not await predicate():  # noqa: ASYNC110 - the condition lives in another process
            await trio.sleep(0.02)


@dataclass
class EventRecord:
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class EventCollector:
    events: list[EventRecord] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def transcripts(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.event == "transcript"]

    @property
    def finals(self) -> list[str]:
        return [t["text"] for t in self.transcripts if t["is_final"]]

    @property
    def names(self) -> list[str]:
        return [e.event for e in self.events]


async def read_events(
    gateway: Gateway,
    session: dict[str, Any],
    collector: EventCollector,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow a session's SSE stream until ``end`` (or ``stop_after`` events)."""
    headers = {"Authorization": f"Bearer {session['token']}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with aconnect_sse(gateway.http, "GET", session["events_url"], headers=headers, timeout=None) as source:
        assert source.response.status_code == 200, await source.response.aread()
        task_status.started()
        async with contextlib.aclosing(source.aiter_sse()) as stream:
            async for sse in stream:
                if not sse.data:  # the retry preamble carries no event (browsers skip it too)
                    continue
                collector.events.append(EventRecord(int(sse.id), sse.event, json.loads(sse.data)))
                if sse.event == "end" or (stop_after is not None and len(collector.events) >= stop_after):
                    break
    collector.done.set()


@contextlib.asynccontextmanager
async def audio_socket(
    gateway: Gateway,
    session: dict[str, Any],
    token: str | None = "session",
    *,
    subprotocols: list[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """``token``: "session" sends the session's token as a Bearer header, a string goes in
    ``?token=``, None sends none (``subprotocols`` may carry one: ``token.<token>``)."""
    url = gateway.ws_base + session["audio_url"]
    headers = list(headers or [])
    if token == "session":
        headers.append((b"Authorization", f"Bearer {session['token']}".encode()))
    elif token is not None:
        url += f"?token={token}"
    async with open_websocket_url(
        url, extra_headers=headers, subprotocols=subprotocols, max_message_size=64 * 1024 * 1024
    ) as ws:
        try:
            yield ws
        finally:
            # trio-websocket 0.12 leaves the TCP stream open when the server starts the
            # closing handshake; close it so every test ends with no socket left behind.
            await ws._stream.aclose()


@contextlib.asynccontextmanager
async def following(
    gateway: Gateway, session: dict[str, Any]
) -> AsyncIterator[tuple[WebSocketConnection, EventCollector]]:
    """A session's audio socket with an SSE reader beside it; on exit, the reader has seen ``end``."""
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, session, events)
        async with audio_socket(gateway, session) as ws:
            yield ws, events


async def stream_audio(
    ws: WebSocketConnection, seconds: float, *, chunk: int = PCM_CHUNK_100MS, end: bool = True
) -> None:
    total = int(seconds * 32000)
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        await ws.send_message(bytes(size))
        sent += size
    if end:
        await ws.send_message('{"type": "end"}')


async def close_reason(ws: WebSocketConnection) -> tuple[int, str, list[Any]]:
    """Read until the server closes; return its code, reason and the text frames it sent."""
    frames: list[Any] = []
    with trio.fail_after(10):
        try:
            while True:
                message = await ws.get_message()
                frames.append(json.loads(message) if isinstance(message, str) else message)
        except ConnectionClosed as closed:
            assert closed.reason is not None
            return closed.reason.code, closed.reason.reason or "", frames


# --- the service as a child process (``python -m service serve``, hypercorn's CLI) -------------

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-m", "service", "serve"]


@dataclass
class Served:
    """A server started as a child process; ``log`` is what it printed (stdout and stderr)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def family(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True) if self.process.poll() is None else []

    async def healthz(self) -> dict[str, Any]:
        """``/healthz`` over a fresh connection, so that several workers all get a turn."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            response = await http.get("/healthz", headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

    async def wait_healthy(self, timeout_s: float = 30) -> None:
        with trio.fail_after(timeout_s):
            while True:
                assert self.process.poll() is None, f"the server exited during start-up:\n{self.log}"
                with contextlib.suppress(httpx.TransportError):
                    await self.healthz()
                    return
                await trio.sleep(0.1)

    async def wait_exit(self, timeout_s: float = 30) -> int:
        return await trio.to_thread.run_sync(self.process.wait, timeout_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(
    command: list[str], log_path: Path, *, env: Mapping[str, str], ignore_sigint: bool = False
) -> Iterator[Served]:
    """Start ``command`` (with ``--bind`` on a free port appended) with the ``RESERVE_*`` given
    (and the transport the test runs with); on exit kill whatever of it is left."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    environ.update({k: v for k, v in os.environ.items() if k == "RESERVE_RIVA_TRANSPORT"}, **env)
    argv = [*command, "--bind", f"127.0.0.1:{port}"]
    if ignore_sigint:  # as a shell script's background job (`./scripts/serve.sh &`) starts it
        argv = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *argv]
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = Served(process, f"http://127.0.0.1:{port}", log_path)
    try:
        yield server
    finally:
        family = server.family()
        for child in [psutil.Process(process.pid), *family] if process.poll() is None else family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait()
