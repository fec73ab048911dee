"""``python -m service serve``: one worker or several on one port, each stopped by SIGTERM after
draining its live sessions, also when started with SIGINT ignored (a shell's background job).

Every test here starts the real command as a child process (beside a real redis-server for more
than one worker) and reaches its sessions with the clients of ``tests/serving.py``."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
from pathlib import Path
from typing import Any

import h11
import httpx
import psutil
import pytest
import trio
import wsproto
import wsproto.events
from trio_websocket import open_websocket_url

from service.serving.loads import EXPECTED_S
from service.settings import Settings
from tests.certs import make_pki
from tests.harness import (
    SERVE,
    EventCollector,
    Gateway,
    Served,
    audio_socket,
    close_reason,
    following,
    poll_until,
    read_events,
    served,
    stream_audio,
    wait_until,
)
from tests.redis_server import RedisServer, redis_server
from tests.serving import (
    SPEECH,
    alive,
    answering_pids,
    assert_drained,
    create_on_worker,
    hold_live_session,
    one_connection,
    summed,
    worker_tallies,
)

pytestmark = pytest.mark.modes("h2")  # processes and signals: the Riva transport is beside the point

__all__ = ["redis_server"]  # a fixture, used by name

DEMO = {
    "RESERVE_EMBEDDED_RECOGNIZER": "scripted",
    "RESERVE_AUTH_DISABLED": "true",
    "RESERVE_SHUTDOWN_GRACE_S": "0.5",
    "RESERVE_FINISH_TIMEOUT_S": "5",
    "RESERVE_LOG_LEVEL": "INFO",
}


@pytest.fixture(autouse=True)
def riva_transport() -> str:
    """Once, not per transport (tests/e2e/conftest.py): what is tested here is the process model."""
    return "default"


async def test_one_worker_drains_a_live_session_on_sigterm_with_sigint_ignored(tmp_path: Path) -> None:
    with served(SERVE, tmp_path / "serve.log", ignore_sigint=True, env=DEMO) as server:
        await server.wait_healthy()
        family = server.family()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            session = await create_on_worker(server, set())
            await nursery.start(hold_live_session, server, session[1], results)
            server.process.send_signal(signal.SIGTERM)
        assert_drained(results[session[1]["id"]])
        assert await server.wait_exit() == 0
        assert not alive(family), "no process left behind"
        assert "SIGTERM: draining sessions" in server.log


async def test_a_second_sigterm_ends_live_sessions_at_once(tmp_path: Path) -> None:
    env = {**DEMO, "RESERVE_SHUTDOWN_GRACE_S": "60"}
    with served(SERVE, tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            _, session = await create_on_worker(server, set())
            await nursery.start(hold_live_session, server, session, results)
            server.process.send_signal(signal.SIGTERM)
            await poll_until(lambda: as_true("draining sessions for up to 60 s" in server.log))
            second = trio.current_time()
            server.process.send_signal(signal.SIGTERM)
        code, _, events = results[session["id"]]
        assert events.events[-1].data == {"reason": "shutdown"} and code == 1001
        assert await server.wait_exit() == 0
        assert trio.current_time() - second < 8, "not the 60 s grace"
        assert "SIGTERM again: ending live sessions now" in server.log


async def as_true(value: bool) -> bool:
    return value


async def test_two_workers_share_one_port_and_a_killed_one_is_replaced(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    temporary = tmp_path / "tmp"  # where the supervisor makes the workers' handoff directory
    temporary.mkdir()
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "TMPDIR": str(temporary)}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        first = await answering_pids(server, 2)
        assert len(list(temporary.iterdir())) == 1
        assert first == {p.pid for p in psutil.Process(server.process.pid).children()}, "the supervisor's children"
        victim, survivor = sorted(first)
        os.kill(victim, signal.SIGKILL)
        answered: list[int] = []
        with trio.fail_after(30):
            while not (replacements := set(answered) - first):
                answered.append((await server.healthz())["pid"])  # every request answered, none lost
        assert victim not in answered
        assert set(answered) == {survivor, *replacements} and len(replacements) == 1
        assert replacements <= {p.pid for p in psutil.Process(server.process.pid).children()}
        assert f"(pid {victim}) killed by SIGKILL; restarting it in" in server.log

        # SIGTERM to one worker: it drains and exits, and only it is replaced
        (replacement,) = replacements
        os.kill(survivor, signal.SIGTERM)
        answered = []
        with trio.fail_after(30):
            while not (newest := set(answered) - first - replacements):
                answered.append((await server.healthz())["pid"])
        assert replacement in answered  # answering throughout (the survivor too, while it drains)
        assert f"(pid {survivor}) exited with status 0; restarting it in" in server.log
        assert len(newest) == 1 and len(psutil.Process(server.process.pid).children()) == 2

        # the supervisor killed -9 as well: its workers notice (their stdin pipe ends) and drain
        workers = psutil.Process(server.process.pid).children()
        server.process.kill()
        await server.wait_exit()
        _, left = await trio.to_thread.run_sync(lambda: psutil.wait_procs(workers, timeout=15))
        assert not left, "workers outlived their supervisor"
        assert server.log.count("supervisor gone: draining sessions") == 2
        assert "new sessions fill the first worker up to 200 live sessions before the next" in server.log
        assert not list(temporary.iterdir()), "the last worker to go removed the handoff directory"


async def test_sigterm_drains_every_worker_with_sigint_ignored(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_WORKER_FILL": "0"}  # a session on each
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", ignore_sigint=True, env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        family = server.family()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            sessions = [await create_on_worker(server, set())]
            sessions.append(await create_on_worker(server, {sessions[0][0]}))
            for _, session in sessions:
                await nursery.start(hold_live_session, server, session, results)
            server.process.send_signal(signal.SIGTERM)  # both sessions hold audio without a final yet
        for _, session in sessions:
            assert_drained(results[session["id"]], shared=True)
        assert await server.wait_exit() == 0
        assert not alive(family), "no process left behind"
        log = server.log
        assert "SIGTERM: draining 2 workers" in log
        assert log.count("SIGTERM: draining sessions") == 2, "the drain went to each worker"
        assert log.count("stopped: exited with status 0") == 2

    # every worker gone: what they flushed is in Redis, for a reader resuming anywhere
    with served(SERVE, tmp_path / "after.log", env=env) as after:
        await after.wait_healthy()
        async with httpx.AsyncClient(base_url=after.base_url, timeout=10) as http:
            gateway = Gateway(after.base_url, Settings(), http, app=None)  # type: ignore[arg-type]
            for _, session in sessions:
                _, _, seen = results[session["id"]]
                rest = EventCollector()
                with trio.fail_after(10):
                    await read_events(gateway, session, rest, last_event_id=seen.events[-1].id, stop_after=1)
                assert rest.finals == ["before the"], "finalized before the hand-over, not thrown away"


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "no-handoff"])
async def test_a_sessions_connections_are_served_by_one_worker(
    tmp_path: Path, redis_server: RedisServer, handoff: bool
) -> None:
    """Each session's creation, event stream and audio socket arrive on fresh connections, so
    the kernel spreads them over the workers. Whichever worker accepts one hands it on: the
    creation to the worker filling up (the first), the others to the session's worker (the
    creator, whose hash its id has). No event then crosses between workers through Redis.
    Switched off, nothing is handed. Either way every session gets its transcript. All 48
    connections landing on the first worker by chance (no handoff needed, so ``sent`` 0) would
    happen once in 2**48 runs."""
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_WORKER_HANDOFF": str(handoff).lower()}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        await transcribe_at_once(server, 16)
        tallies = await worker_tallies(server)
        followed = summed(tallies, "reserve_redis_followed_events_total")
        sent = summed(tallies, 'reserve_worker_handoffs_total{way="sent"}')
        received = summed(tallies, 'reserve_worker_handoffs_total{way="received"}')
        failed = summed(tallies, 'reserve_worker_handoffs_total{way="failed"}')
        if handoff:
            assert followed == 0, "every event reached its readers in the worker that published it"
            assert sent == received > 0 and failed == 0
            created = sorted(tally.get("reserve_sessions_created_total", 0.0) for tally in tallies.values())
            assert created == [0, 16], "16 sessions fit in the first worker: the other created none"
        else:  # followed now, unless the kernel happened to put every pair together (it skews bursts)
            assert sent == received == 0


async def test_workers_whose_sockets_cannot_be_bound_serve_everything_themselves(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A TMPDIR so deep that a Unix socket's path does not fit: no worker can take connections
    from another, so each serves what it accepts (followed through Redis), and says so once."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "TMPDIR": str(deep)}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        await transcribe_at_once(server, 8)
        assert server.log.count("this worker takes no connections from its siblings: ") == 2
        assert summed(await worker_tallies(server), 'reserve_worker_handoffs_total{way="sent"}') == 0


async def test_new_sessions_go_to_a_worker_with_room(tmp_path: Path, redis_server: RedisServer) -> None:
    """``RESERVE_MAX_SESSIONS`` is per worker: at one each, two workers run two sessions at
    once. Once the first worker is full, a new session goes to the other wherever its creation
    landed (it was refused 503 half of the time when the worker that accepted it created it);
    the third is refused by both, and the first worker takes new ones again once it has room."""
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_MAX_SESSIONS": "1"}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            gateway = Gateway(server.base_url, Settings(), http, app=None)  # type: ignore[arg-type]
            sessions = []
            for _ in range(2):
                async with one_connection(server) as fresh:  # the kernel picks a worker for each
                    created = await fresh.post("/v1/sessions", json=SPEECH)
                assert created.status_code == 201, created.text
                sessions.append(created.json())
            async with one_connection(server) as fresh:
                refused = await fresh.post("/v1/sessions", json=SPEECH)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded", refused.text
            for session in sessions:
                async with audio_socket(gateway, session) as ws:
                    await stream_audio(ws, seconds=0.5)
                    assert (await close_reason(ws))[0] == 1000
            codes = []
            for _ in range(50):  # each worker frees its place as its session's task ends
                codes.append((await http.post("/v1/sessions", json=SPEECH)).status_code)
                if codes[-1] == 201:
                    break
                await trio.sleep(0.1)
            assert codes[-1] == 201 and set(codes) <= {201, 503}, codes


async def test_realtime_sockets_run_on_the_worker_filling_up(tmp_path: Path, redis_server: RedisServer) -> None:
    """A realtime socket is a session of its own from its first audio. One socket on each worker
    (each upgraded from a kept-alive connection whose ``/healthz`` named its worker): the worker
    that is not filling hands its socket over, and one worker runs both sessions."""
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        async with contextlib.AsyncExitStack() as stack:
            streams: dict[int, trio.SocketStream] = {}
            with trio.fail_after(30):
                while len(streams) < 2:
                    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
                    stream = await stack.enter_async_context(await trio.open_tcp_stream(host, int(port)))
                    streams.setdefault(await healthz_pid(stream), stream)
            for stream in streams.values():
                await start_realtime(stream)
            tallies = await tallies_once_created(server, 2)
        assert sorted(tally.get("reserve_sessions_created_total", 0.0) for tally in tallies.values()) == [0, 2]
        assert summed(tallies, 'reserve_worker_handoffs_total{way="sent"}') == 1


async def test_a_realtime_socket_counts_on_its_worker_before_its_first_audio(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Its session starts with its first audio, maybe long after the socket opened. Two sockets
    fill the first worker (a fill of 2) and stay silent past the second that a placed creation
    counts by itself: a third socket goes to the other worker. Counted only from their sessions,
    the first worker looked empty and took all three."""
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_WORKER_FILL": "2"}
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        await answering_pids(server, 2)
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        async with contextlib.AsyncExitStack() as stack:
            sockets: list[tuple[trio.SocketStream, wsproto.WSConnection]] = []
            for opened in range(3):
                if opened == 2:
                    await trio.sleep(EXPECTED_S + 0.5)
                stream = await stack.enter_async_context(await trio.open_tcp_stream(host, int(port)))
                sockets.append((stream, await open_realtime(stream)))
            for stream, ws in sockets:
                await append_silence(stream, ws)
            tallies = await tallies_once_created(server, 3)
        assert sorted(tally.get("reserve_sessions_created_total", 0.0) for tally in tallies.values()) == [1, 2]


async def tallies_once_created(server: Served, sessions: int) -> dict[int, dict[str, float]]:
    """Each worker's metrics, once the workers together created ``sessions`` (or after 10 s)."""
    for _ in range(100):
        tallies = await worker_tallies(server)
        if summed(tallies, "reserve_sessions_created_total") >= sessions:
            break
        await trio.sleep(0.1)
    return tallies


async def healthz_pid(stream: trio.SocketStream) -> int:
    """The pid of the worker serving ``stream``, asked over it (which stays open for more)."""
    client = h11.Connection(h11.CLIENT)
    await stream.send_all(client.send(h11.Request(method="GET", target="/healthz", headers=[("Host", "reserve")])))
    await stream.send_all(client.send(h11.EndOfMessage()))
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some())
        elif isinstance(event, h11.Data):
            body += event.data
    pid: int = json.loads(body)["pid"]
    return pid


async def start_realtime(stream: trio.SocketStream) -> None:
    """Upgrade ``stream`` to a realtime socket and send it 100 ms of audio: its session starts."""
    await append_silence(stream, await open_realtime(stream))


async def open_realtime(stream: trio.SocketStream) -> wsproto.WSConnection:
    """Upgrade ``stream`` to a realtime socket (no session yet: that starts with its audio)."""
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(wsproto.events.Request(host="reserve", target="/v1/realtime?intent=transcription")))
    while not any(isinstance(event, wsproto.events.AcceptConnection) for event in ws.events()):
        ws.receive_data(await stream.receive_some())
    return ws


async def append_silence(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
    silence = base64.b64encode(bytes(4800)).decode()  # 100 ms of 24 kHz PCM
    append = json.dumps({"type": "input_audio_buffer.append", "audio": silence})
    await stream.send_all(ws.send(wsproto.events.TextMessage(append)))


async def transcribe_at_once(server: Served, count: int) -> None:
    """``count`` sessions at once, each on fresh connections; each gets its one final."""
    finals: dict[str, list[str]] = {}
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(transcribe_on_fresh_connections, server, finals)
    assert list(finals.values()) == [["before the shutdown"]] * count


async def transcribe_on_fresh_connections(server: Served, finals: dict[str, list[str]]) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        session = (await http.post("/v1/sessions", json=SPEECH)).json()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:  # the events' own
        gateway = Gateway(server.base_url, Settings(), http, app=None)  # type: ignore[arg-type]
        with trio.fail_after(20):
            async with following(gateway, session) as (ws, events):
                await stream_audio(ws, seconds=1.0)
            await events.done.wait()
    finals[session["id"]] = events.finals


async def test_two_workers_serve_sessions_over_tls_from_hypercorn_toml(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """hypercorn's TLS (certfile/keyfile in the file): the workers serve every request over
    https and wss. The handoff cannot read an encrypted request line, so each connection is
    served where it landed, and sessions still work on both workers."""
    pki = make_pki()
    (tmp_path / "server.pem").write_bytes(pki.server.cert)
    (tmp_path / "server.key").write_bytes(pki.server.key)
    config = tmp_path / "hypercorn.toml"
    config.write_text(f'certfile = "{tmp_path / "server.pem"}"\nkeyfile = "{tmp_path / "server.key"}"\n')
    trust = ssl.create_default_context(cadata=pki.ca.cert.decode())
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url}
    with served([*SERVE, "--workers", "2", "--config", str(config)], tmp_path / "serve.log", env=env) as server:
        base = server.base_url.replace("http://", "https://")
        pids: set[int] = set()
        with trio.fail_after(30):
            while len(pids) < 2:  # fresh connections until both workers answered
                with contextlib.suppress(httpx.TransportError):
                    async with httpx.AsyncClient(base_url=base, verify=trust, timeout=5) as http:
                        pids.add((await http.get("/healthz")).json()["pid"])
                await trio.sleep(0.05)
        finals: list[list[str]] = []
        for _ in range(4):
            async with httpx.AsyncClient(base_url=base, verify=trust, timeout=10) as http:
                session = (await http.post("/v1/sessions", json=SPEECH)).json()
                events = EventCollector()
                gateway = Gateway(base, Settings(), http, app=None)  # type: ignore[arg-type]
                async with trio.open_nursery() as nursery:
                    await nursery.start(read_events, gateway, session, events)
                    url = base.replace("https://", "wss://") + session["audio_url"]
                    headers = [(b"Authorization", f"Bearer {session['token']}".encode())]
                    with trio.fail_after(20):
                        async with open_websocket_url(url, ssl_context=trust, extra_headers=headers) as ws:
                            await stream_audio(ws, seconds=1.0)
                            await events.done.wait()
                            await ws._stream.aclose()  # trio-websocket leaves it open when the server closed first
                finals.append(events.finals)
        assert finals == [["before the shutdown"]] * 4


async def test_workers_that_cannot_start_stop_the_supervisor_with_status_1(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A keys file that goes away once the supervisor has checked it (and before its workers, still
    importing, check it again): each worker fails its start-up (and is never reported ready); after
    five such exits in a row the supervisor gives up rather than loop forever."""
    keys = tmp_path / "keys"
    keys.write_text("a-key\n")
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_API_KEYS_FILE": str(keys)}
    env.pop("RESERVE_AUTH_DISABLED")
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await wait_until(lambda: " started (pid " in server.log, timeout_s=10)
        keys.unlink()
        assert await server.wait_exit(60) == 1
        log = server.log
        assert "before it was ready, 5 times in a row: stopping" in log
        assert " ready (pid " not in log
        assert "restarting it in 0.5 s" in log and "restarting it in 4.0 s" in log, "with backoff"
        assert "the gateway failed to start: " in log  # each worker's one line


async def test_a_worker_that_does_not_drain_in_time_is_killed(tmp_path: Path, redis_server: RedisServer) -> None:
    """One worker stopped (SIGSTOP) cannot drain: the other stops cleanly; the stuck one is killed
    once the drain's deadlines and the margin have passed, and the supervisor exits 1."""
    config = tmp_path / "hypercorn.toml"
    config.write_text("graceful_timeout = 1\n")
    env = {**DEMO, "RESERVE_REDIS_URL": redis_server.url, "RESERVE_FINISH_TIMEOUT_S": "1"}
    command = [*SERVE, "--workers", "2", "--config", str(config)]
    with served(command, tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy()
        stuck, other = sorted(await answering_pids(server, 2))
        os.kill(stuck, signal.SIGSTOP)
        server.process.send_signal(signal.SIGTERM)
        assert await server.wait_exit(30) == 1
        log = server.log
        assert "any still running after 12.5 s is killed" in log  # 0.5 grace + 1 finals + 1 hypercorn + 10
        assert f"(pid {stuck}) still running after 12.5 s: killed" in log
        assert f"(pid {other}) stopped: exited with status 0" in log
        assert not psutil.pid_exists(stuck) or psutil.Process(stuck).status() == psutil.STATUS_ZOMBIE
