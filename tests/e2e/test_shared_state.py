"""Shared state on a real Redis: two gateways beside one fake_riva, any of them serves any request."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from fake_riva import FakeRiva
from service.observability.metrics import Metrics
from service.settings import Settings
from service.shared.redis import scripts
from service.shared.redis.hub import RedisHub
from service.shared.redis.scripts import APPEND, lease_key, log_key, record_key, text_key
from tests.e2e.test_reliability import (
    CHUNK,
    EXPECTED_FINALS,
    EXPECTED_WORDS,
    assert_exact_transcript,
    content_config,
    speech_audio,
    stream,
)
from tests.harness import (
    TEST_API_KEY,
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    poll_until,
    read_events,
    running_gateway,
)
from tests.redis_server import RedisServer, running_redis, running_tls_redis, running_unix_redis


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def shared_settings(fake_riva: FakeRiva, redis: RedisServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "riva_uri": fake_riva.target,
        "redis_url": redis.url,
        "redis_lease_s": 1.0,
        "audio_reconnect_grace_s": 5,
        "finish_timeout_s": 5,
        "sse_heartbeat_s": 0.5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def pair(fake_riva: FakeRiva, redis: RedisServer) -> AsyncIterator[tuple[Gateway, Gateway]]:
    settings = shared_settings(fake_riva, redis)
    async with running_gateway(settings) as a, running_gateway(settings) as b:
        yield a, b


async def test_created_on_one_streamed_on_another_read_and_resumed_on_both(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    session = await a.create_session(**content_config())
    on_a, on_b = EventCollector(), EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, a, session, on_a)
        await nursery.start(read_events, b, session, on_b)
        async with audio_socket(b, session) as ws:
            await stream(ws, speech_audio())
            code, _, frames = await close_reason(ws)
            assert code == 1000, frames
    assert_exact_transcript(on_a)
    assert [(e.id, e.event, e.data) for e in on_b.events] == [(e.id, e.event, e.data) for e in on_a.events]
    for gateway in (a, b):  # the tail after any id, on either instance
        tail = EventCollector()
        await read_events(gateway, session, tail, last_event_id=3)
        assert [e.id for e in tail.events] == [e.id for e in on_a.events[3:]]
        described = (await gateway.http.get(session_url(session), headers=bearer(session))).json()
        assert described["state"] == "finished"
        assert described["final_transcript"] == "one two three four five six"
        assert described["last_event_id"] == on_a.events[-1].id


@pytest.mark.parametrize("reached", ["over TLS", "through a Unix socket"])
async def test_a_redis_reached_over_tls_or_a_unix_socket_carries_sessions_between_instances(
    fake_riva: FakeRiva, redis: RedisServer, tmp_path: Path, reached: str
) -> None:
    """Every Redis link a gateway opens (coredis's, and the lean ones of the publisher, the
    control inbox and the follower) goes where the URL says: here the only way in."""
    with contextlib.ExitStack() as stack:
        if reached == "over TLS":
            url, _ = stack.enter_context(running_tls_redis(tmp_path))
        else:
            url = stack.enter_context(running_unix_redis(tmp_path))
        settings = shared_settings(fake_riva, redis, redis_url=url)
        async with running_gateway(settings) as a, running_gateway(settings) as b:
            session = await a.create_session(**content_config())
            on_a = EventCollector()
            async with trio.open_nursery() as nursery:
                await nursery.start(read_events, a, session, on_a)  # followed through Redis: B owns it
                async with audio_socket(b, session) as ws:
                    await stream(ws, speech_audio())
                    assert (await close_reason(ws))[0] == 1000
            assert_exact_transcript(on_a)
            assert (await a.http.get("/readyz")).status_code == 200


def session_url(session: dict[str, Any]) -> str:
    return f"/v1/sessions/{session['id']}"


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


async def test_delete_on_an_instance_that_does_not_own_the_session(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    session = await a.create_session(**content_config())
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, a, session, events)
        async with audio_socket(b, session) as ws:
            await stream(ws, speech_audio()[: 4 * CHUNK], end=False)
            response = await a.http.delete(session_url(session), headers=bearer(session))
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "cancelled"
            code, _, _ = await close_reason(ws)
            assert code == 1000
    assert events.events[-1].data == {"reason": "cancelled"}
    wrong = await b.http.get(session_url(session), headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403
    assert (await b.http.get("/v1/sessions/nonexistent", headers=bearer(session))).status_code == 404


async def test_a_move_between_live_instances_loses_and_repeats_nothing(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    session = await a.create_session(**content_config())
    events = EventCollector()
    audio = speech_audio()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, a, session, events)
        async with audio_socket(a, session) as ws:
            await stream(ws, audio[: 8 * CHUNK], end=False)
            await ws.aclose(4000, "network blip")  # the client comes back at B
        async with audio_socket(b, session) as ws:
            resumed = await ws.get_message()
            assert isinstance(resumed, str) and '"type":"resumed"' in resumed
            assert '"audio_bytes_received":25600' in resumed  # A flushed what it heard before letting go
            await stream(ws, audio[8 * CHUNK :])
            assert (await close_reason(ws))[0] == 1000
    assert_exact_transcript(events)
    metrics = (await b.http.get("/metrics")).text
    assert 'reserve_sessions_moved_total{kind="move"} 1.0' in metrics
    appends = _metric(metrics, 'reserve_redis_round_trips_total{op="append"}')
    assert appends >= 1
    # one observation per script call that went through, made in the same step as the count
    assert _metric(metrics, "reserve_redis_batch_events_count") == appends
    assert _metric(metrics, "reserve_redis_batch_events_sum") >= 1  # B wrote the events after the move


def _metric(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in Prometheus's text format."""
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


async def test_tokens_minted_anywhere_work_everywhere_and_single_use_holds_across_instances(
    pair: tuple[Gateway, Gateway],
) -> None:
    a, b = pair
    minted = await a.http.post("/v1/tokens", json={"scope": "session:create"})
    assert minted.status_code == 201, minted.text
    create_token = {"Authorization": f"Bearer {minted.json()['token']}"}
    created = await b.http.post("/v1/sessions", json={}, headers=create_token)
    assert created.status_code == 201, created.text
    again = await a.http.post("/v1/sessions", json={}, headers=create_token)
    assert again.status_code == 403 and "already used" in again.json()["error"]["message"]
    session = created.json()
    scoped = await a.http.post("/v1/tokens", json={"scope": f"session:{session['id']}"})  # B created it, A mints
    assert scoped.status_code == 201, scoped.text
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        browser = {**session, "token": scoped.json()["token"]}
        await nursery.start(read_events, b, browser, events)
        async with audio_socket(a, session, token=scoped.json()["token"]) as ws:
            await ws.send_message('{"type": "end"}')
            assert (await close_reason(ws))[0] == 1000
    assert events.events[-1].data == {"reason": "finished"}


async def test_per_key_limits_are_counted_across_instances(fake_riva: FakeRiva, redis: RedisServer) -> None:
    settings = shared_settings(fake_riva, redis, max_sessions_per_key=1, sessions_per_minute_per_key=3)
    async with running_gateway(settings) as a, running_gateway(settings) as b:
        first = await a.create_session()
        refused = await b.http.post("/v1/sessions", json={})
        assert refused.status_code == 429 and "1 live sessions" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) > 0
        assert (await b.http.delete(session_url(first), headers=bearer(first))).status_code == 200
        second = await b.create_session()  # the place the first held is free on every instance
        assert (await a.http.delete(session_url(second), headers=bearer(second))).status_code == 200
        await a.create_session()
        over = await b.http.post("/v1/sessions", json={})
        assert over.status_code == 429, over.text  # live limit or the third creation this minute


async def test_readiness_says_when_redis_cannot_be_reached(fake_riva: FakeRiva, redis: RedisServer) -> None:
    closed = RedisServer(redis.directory)  # a free port nobody listens on
    settings = shared_settings(fake_riva, redis, redis_url=closed.url, redis_timeout_s=0.5)
    async with running_gateway(settings) as gateway:

        async def not_ready() -> bool:
            response = await gateway.http.get("/readyz")
            return response.status_code == 503 and response.json()["code"] == "redis_unavailable"

        await poll_until(not_ready)
        refused = await gateway.http.post("/v1/sessions", json={})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] in ("overloaded", "state_unavailable")
        assert "Redis" in refused.json()["error"]["message"]


async def test_readers_that_come_and_go_never_wear_out_the_follower(pair: tuple[Gateway, Gateway]) -> None:
    """Each process follows Redis with one blocking read at a time, which readers that come and
    go must never wear out (a cancelled coredis blocking read kept its pool slot for good: eight
    and a pool of eight blocked forever; the follower's lean connection has no pool)."""
    a, b = pair
    session = await a.create_session(**content_config())
    audio = speech_audio()
    async with audio_socket(a, session) as ws:
        for start in range(0, 12):  # twelve readers on B, each dropped while it waits for more
            await stream(ws, audio[start * CHUNK : (start + 1) * CHUNK], end=False)
            with trio.move_on_after(0.05):
                await read_events(b, session, EventCollector())
        events = EventCollector()
        async with trio.open_nursery() as nursery:
            await nursery.start(read_events, b, session, events)
            await stream(ws, audio[12 * CHUNK :])
            assert (await close_reason(ws))[0] == 1000
    assert_exact_transcript(events)


async def test_a_move_while_the_old_socket_still_sends_closes_it_1012_and_loses_nothing(
    pair: tuple[Gateway, Gateway],
) -> None:
    a, b = pair
    session = await a.create_session(**content_config())
    events = EventCollector()
    # a long pause after "one two", so that the move (which flushes what the old owner heard)
    # falls between words whatever the timing: a move inside a word would cut that word
    audio = speech_audio([(1, 200), (2, 200), (0, 1200), (3, 200), (4, 200), (0, 400), (5, 200), (6, 200), (0, 400)])
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, a, session, events)
        async with audio_socket(a, session) as old:
            await stream(old, audio[: 6 * CHUNK], end=False)

            async def keep_sending() -> None:  # a half-dead client that still pushes audio to A
                with contextlib.suppress(ConnectionClosed):
                    for start in range(6, 12):
                        await old.send_message(audio[start * CHUNK : (start + 1) * CHUNK])
                        await trio.sleep(0.02)

            nursery.start_soon(keep_sending)
            async with audio_socket(b, session) as ws:
                resumed = json.loads(await ws.get_message())
                code, reason, frames = await close_reason(old)
                assert (code, reason) == (1012, "session moved to another instance"), frames
                offset = resumed["audio_bytes_received"]
                assert offset % 2 == 0 and 6 * CHUNK <= offset <= 12 * CHUNK
                await stream(ws, audio[offset:])
                assert (await close_reason(ws))[0] == 1000
    assert events.finals == EXPECTED_FINALS
    words = [(w["word"], w["start_ms"], w["end_ms"]) for t in events.transcripts if t["is_final"] for w in t["words"]]
    later = 1200 - 400  # the longer pause moves every word after it
    assert words == [
        (w, start + later * (start >= 800), end + later * (start >= 800)) for w, start, end in EXPECTED_WORDS
    ]
    assert [e.id for e in events.events] == list(range(1, len(events.events) + 1))
    assert events.events[-1].data == {"reason": "finished"}


def _steal_lease(redis: RedisServer, session_id: str) -> None:
    """What Redis shows when another instance has taken the session over."""
    key = lease_key(session_id).encode()
    command = b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$5\r\nthief\r\n$2\r\nPX\r\n$5\r\n60000\r\n" % (len(key), key)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as sock:
        sock.sendall(command)
        assert sock.recv(16).startswith(b"+OK")


async def test_losing_a_lease_while_riva_answers_stops_that_session_only(
    fake_riva: FakeRiva, redis: RedisServer
) -> None:
    """Fenced mid-stream, with results still coming from Riva: the session stops writing at once
    (its log is the thief's now) and says so on its socket; the instance, and its other
    sessions, go on as if nothing happened."""
    async with running_gateway(shared_settings(fake_riva, redis)) as a:
        fenced = await a.create_session(**content_config())
        other = await a.create_session(**content_config())
        audio = speech_audio()
        events = EventCollector()
        async with trio.open_nursery() as nursery:
            await nursery.start(read_events, a, other, events)
            async with audio_socket(a, fenced) as lost, audio_socket(a, other) as ws:
                await stream(lost, audio[: 8 * CHUNK], end=False)
                await stream(ws, audio[: 8 * CHUNK], end=False)
                _steal_lease(redis, fenced["id"])
                with contextlib.suppress(ConnectionClosed):
                    await stream(lost, audio[8 * CHUNK :], end=False)  # Riva answers all the while
                code, reason, _ = await close_reason(lost)
                assert (code, reason) == (1012, "session moved to another instance")
                await stream(ws, audio[8 * CHUNK :])
                assert (await close_reason(ws))[0] == 1000
        assert (await a.http.get("/readyz")).status_code == 200
    assert_exact_transcript(events)


@contextlib.asynccontextmanager
async def running_hub(url: str, **settings: Any) -> AsyncIterator[RedisHub]:
    """One process's link to the Redis at ``url``, its tasks running until the block ends."""
    hub = RedisHub(Settings(redis_url=url, **settings), Metrics())
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        yield hub
        nursery.cancel_scope.cancel()


async def test_a_session_being_created_is_never_fenced_by_its_own_renewer(redis: RedisServer) -> None:
    """A new session's first write takes its lease; until it lands there is no lease to renew,
    and finding none must not fence the session (under load the renewer ran first, and the
    session streamed on with a log it no longer owned)."""
    async with running_hub(redis.url, redis_lease_s=0.3) as hub:
        event_log = hub.log_for("being-created")
        event_log.own(0, {"token_hash": "x"})  # nothing noted yet: its first write is still to come
        await trio.sleep(0.35)  # three renewals
        assert event_log.owned and not event_log.confirmed


async def test_the_renewer_keeps_held_leases_and_gives_up_each_taken_one(redis: RedisServer) -> None:
    """One renewal call for every owned session: each gets its own answer (a taken lease fences
    only its session), and a held lease lives on well past its first lifetime."""
    fenced: list[tuple[str, str]] = []
    async with running_hub(redis.url, redis_lease_s=0.3) as hub:
        hub.on_fenced = lambda session_id, why: fenced.append((session_id, why))
        logs = {}
        for session_id in ("kept", "taken", "kept-too"):
            assert await hub.take_lease(session_id)
            logs[session_id] = event_log = hub.log_for(session_id)
            event_log.own(0, {"token_hash": "x"})
            event_log.confirmed = True  # as after its first write
        _steal_lease(redis, "taken")
        await trio.sleep(0.9)  # three lease lifetimes, nine renewals
        assert fenced == [("taken", "lease lost")]
        assert logs["kept"].owned and logs["kept-too"].owned and not logs["taken"].owned
        assert await hub.lease_holder("kept") == hub.instance
        assert await hub.lease_holder("kept-too") == hub.instance
        assert await hub.lease_holder("taken") == "thief"


async def test_the_final_transcript_is_appended_to_in_redis_and_written_whole_when_redis_lost_some(
    redis: RedisServer,
) -> None:
    """A long session's transcript reaches hundreds of KiB: each final adds only its words. An
    append lands only where Redis holds as many bytes as were written; otherwise (a restart that
    lost some) the whole text goes again, and the record read anywhere has it."""
    record = {"state": "streaming", "final_text": "one"}
    key = text_key("transcribed")
    async with running_hub(redis.url) as hub:
        event_log = hub.log_for("transcribed")
        event_log.own(0, {"token_hash": "x"})
        hub.publisher.force_whole_record("transcribed")

        async def written(final_text: str) -> bytes | None:
            record["final_text"] = final_text
            event_log.note_state(lambda: dict(record))
            assert await event_log.drained(5)
            text: bytes | None = await hub.client.get(key)
            return text

        assert await written("one") == b"one"
        await hub.client.set(key, b"ONE")  # same length: Redis holds what was written, as far as an append can tell
        assert await written("one two") == b"ONE two", "only the words added went out"
        await hub.client.set(key, b"ONE")  # shorter: Redis lost part of it
        assert await written("one two three") == b"one two three", "written whole again"
        assert await written("one two three four") == b"one two three four"
        assert 0 < await hub.client.ttl(key) <= scripts.session_ttl_s(hub.settings), "written whole with a lifetime"
        described = await hub.record("transcribed")
        assert described is not None and described["final_text"] == "one two three four"
        assert described["state"] == "streaming"
        await hub.client.hset(record_key("older"), {"state": "streaming", "final_text": "from before"})
        older = await hub.record("older")  # written by a gateway that kept the transcript in the record
        assert older is not None and older["final_text"] == "from before"


class AnswerLosingProxy:
    """Between the hub and Redis: passes everything, except that it cuts the connection of the
    first request holding ``lose`` instead of passing Redis's answer back, once Redis ran it
    (what a timeout or a reset at the wrong moment does)."""

    def __init__(self, redis_port: int, lose: bytes) -> None:
        self.redis_port = redis_port
        self.lose = lose
        self.lost = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """The proxy on a free loopback port, as a Redis URL, until the block ends."""
        async with trio.open_nursery() as nursery:
            port = await nursery.start(self._serve)
            yield f"redis://127.0.0.1:{port}"
            nursery.cancel_scope.cancel()

    async def _serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        # a side that resets its connection (a gateway closing its links) ends the relay, as a proxy's would
        with contextlib.suppress(trio.BrokenResourceError):
            async with client, await trio.open_tcp_stream("127.0.0.1", self.redis_port) as redis:
                while request := await client.receive_some(65536):
                    await redis.send_all(request)
                    answer = await redis.receive_some(65536)  # one request at a time on each of the hub's links
                    if self.lost == 0 and self.lose in request and not answer.startswith(b"-NOSCRIPT"):
                        self.lost += 1
                        return  # Redis ran it; the caller never hears so
                    await client.send_all(answer)


async def test_an_append_whose_answer_was_lost_is_retried_without_fencing_or_repeating(redis: RedisServer) -> None:
    """The publisher cannot tell a lost answer from a lost request, so it sends the batch again:
    Redis must take that as what it already holds, not as another writer's events."""
    proxy = AnswerLosingProxy(redis.port, hashlib.sha1(APPEND.encode()).hexdigest().encode())
    fenced: list[tuple[str, str]] = []
    async with proxy.running() as url, running_hub(url) as hub:
        hub.on_fenced = lambda session_id, why: fenced.append((session_id, why))
        event_log = hub.log_for("answer-lost")
        event_log.own(0, {"token_hash": "x"})
        hub.publisher.force_whole_record("answer-lost")
        event_log.append("transcript", b'{"n":1}')
        event_log.append("transcript", b'{"n":2}')
        await trio.sleep(0.2)  # the first call goes through unanswered; the retry waits its backoff
        event_log.append("transcript", b'{"n":3}')  # the retry carries one more
        assert await event_log.drained(5)
        assert proxy.lost == 1 and fenced == [] and event_log.owned
        entries = await hub.client.xrange(log_key("answer-lost"))
        assert [(entry.identifier, entry.field_values[b"d"]) for entry in entries] == [
            (b"0-1", b'{"n":1}'),
            (b"0-2", b'{"n":2}'),
            (b"0-3", b'{"n":3}'),
        ]
        assert [event.id for event in await event_log.read(0)] == [1, 2, 3]
        for key in (log_key("answer-lost"), record_key("answer-lost")):  # made with a lifetime
            assert 0 < await hub.client.ttl(key) <= scripts.session_ttl_s(hub.settings), key


async def test_the_audio_socket_closes_normally_only_once_the_end_is_in_redis(
    fake_riva: FakeRiva, redis: RedisServer
) -> None:
    """A client told "finished" (close 1000) does not resend. If the instance died between that
    close and its last write, the finals and the end would be lost: the close waits for them."""
    settings = shared_settings(fake_riva, redis, redis_flush_interval_s=0.3)  # writes lag the close
    async with running_gateway(settings) as gateway:
        session = await gateway.create_session(**content_config())
        async with audio_socket(gateway, session) as ws:
            await stream(ws, speech_audio())
            code, _, _ = await close_reason(ws)
        assert code == 1000
        hub = RedisHub(Settings(redis_url=redis.url), Metrics())
        async with hub.client:
            names = [entry.field_values[b"n"] for entry in await hub.client.xrange(log_key(session["id"]))]
        assert names[-1] == b"end" and names.count(b"transcript") >= len(EXPECTED_FINALS), names


@pytest.mark.parametrize("lost", [b"rsv:t:", b"rsv:k:"], ids=["token_spent", "session_counted"])
async def test_a_creation_whose_answer_was_lost_spends_no_token_and_holds_no_place(
    fake_riva: FakeRiva, redis: RedisServer, lost: bytes
) -> None:
    """Spending a single-use token and counting a session each change Redis before the answer
    comes back; a client told 503 must find its token still good and its key's places free."""
    proxy = AnswerLosingProxy(redis.port, lost)
    async with proxy.running() as url:
        settings = shared_settings(fake_riva, redis, redis_url=url, max_sessions_per_key=1)
        async with running_gateway(settings) as gateway:
            minted = await gateway.http.post("/v1/tokens", json={"scope": "session:create"})
            assert minted.status_code == 201, minted.text
            create_token = {"Authorization": f"Bearer {minted.json()['token']}"}
            refused = await gateway.http.post("/v1/sessions", json={}, headers=create_token)
            assert proxy.lost == 1
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "state_unavailable"
            created = await gateway.http.post("/v1/sessions", json={}, headers=create_token)
            assert created.status_code == 201, created.text  # the token was not spent, no place held
            again = await gateway.http.post("/v1/sessions", json={}, headers=create_token)
            assert again.status_code == 403, again.text
            over = await gateway.http.post("/v1/sessions", json={})
            assert over.status_code == 429, over.text  # the one live session holds the key's one place
            session = created.json()
            assert (await gateway.http.delete(session_url(session), headers=bearer(session))).status_code == 200
            assert (await gateway.http.post("/v1/sessions", json={})).status_code == 201


async def test_a_delete_whose_redis_answer_was_lost_is_a_503_and_the_next_one_ends_the_session(
    fake_riva: FakeRiva, redis: RedisServer
) -> None:
    """B, which does not own the session, asks Redis who does before asking that owner to end it."""
    proxy = AnswerLosingProxy(redis.port, b":lease")
    async with proxy.running() as url:
        owner_settings = shared_settings(fake_riva, redis)
        via_proxy = shared_settings(fake_riva, redis, redis_url=url)
        async with running_gateway(owner_settings) as a, running_gateway(via_proxy) as b:
            session = await a.create_session()
            refused = await b.http.delete(session_url(session), headers=bearer(session))
            assert proxy.lost == 1
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "state_unavailable"
            ended = await b.http.delete(session_url(session), headers=bearer(session))
            assert ended.status_code == 200, ended.text
            assert ended.json()["state"] == "cancelled"


async def test_a_takeover_whose_lease_answer_was_lost_lets_go_of_the_lease_at_once(
    fake_riva: FakeRiva, redis: RedisServer
) -> None:
    """A stops (a rollout) and hands its waiting session over; the client's audio socket
    reaches B, which takes the lease, but the answer is lost: B cannot run the session, and
    Redis holds B's lease. B lets go of it there and then, so the client's retry is not kept
    waiting for a lease nobody renews (30 s here)."""
    proxy = AnswerLosingProxy(redis.port, b"\r\nPX\r\n")  # the lease's SET ... PX ms NX
    async with proxy.running() as url:
        a_settings = shared_settings(fake_riva, redis, redis_lease_s=30.0, shutdown_grace_s=0.1)
        async with running_gateway(a_settings) as a:
            session = await a.create_session(**content_config())
            await a.app.extensions["reserve.gateway"].drain()  # hands the waiting session over
        async with running_gateway(shared_settings(fake_riva, redis, redis_url=url, redis_lease_s=30.0)) as b:
            async with audio_socket(b, session) as refused:
                code, reason, _ = await close_reason(refused)
            assert proxy.lost == 1
            assert (code, reason) == (1013, "state_unavailable")
            assert await b.app.extensions["reserve.gateway"].hub.lease_holder(session["id"]) is None
            events = EventCollector()
            async with trio.open_nursery() as nursery:
                await nursery.start(read_events, b, session, events)
                with trio.fail_after(10):  # well within the 30 s lease B would otherwise hold
                    async with audio_socket(b, session) as ws:
                        await stream(ws, speech_audio())
                        await close_reason(ws)
            assert_exact_transcript(events)


async def test_a_new_session_fenced_at_its_first_write_leaves_nothing_behind(redis: RedisServer) -> None:
    """Its record was to be written whole; once another instance holds it, nothing of it stays."""
    async with running_hub(redis.url) as hub:
        fenced: list[tuple[str, str]] = []
        refused = trio.Event()

        def on_fenced(session_id: str, why: str) -> None:
            fenced.append((session_id, why))
            refused.set()

        hub.on_fenced = on_fenced
        await hub.client.set(lease_key("taken"), "another-instance", px=60_000)
        event_log = hub.log_for("taken")
        event_log.own(0, {"token_hash": "x"})
        hub.publisher.force_whole_record("taken")
        event_log.append("transcript", b'{"n":1}')
        with trio.fail_after(5):
            await refused.wait()
        assert fenced == [("taken", "fenced")] and not event_log.owned
        assert hub.publisher._whole_record == set(), "a fenced session is not remembered for a later write"
        assert await hub.client.xlen(log_key("taken")) == 0


async def test_a_realtime_socket_whose_admission_answer_was_lost_gets_a_typed_error_and_the_next_one_works(
    fake_riva: FakeRiva, redis: RedisServer
) -> None:
    proxy = AnswerLosingProxy(redis.port, b"rsv:k:")
    headers = [(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]
    async with proxy.running() as url:
        settings = shared_settings(fake_riva, redis, redis_url=url, max_sessions_per_key=1)
        async with running_gateway(settings) as gateway:
            url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
            async with open_websocket_url(url, extra_headers=headers) as refused:
                try:
                    error = json.loads(await refused.get_message())
                    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                        await refused.get_message()
                finally:
                    await refused._stream.aclose()  # trio-websocket leaves it open when the server closed first
            assert proxy.lost == 1
            assert (error["type"], error["error"]["code"]) == ("error", "state_unavailable")
            assert closed.value.reason is not None and closed.value.reason.code == 1013
            async with open_websocket_url(url, extra_headers=headers) as admitted:  # no place held by the first
                assert json.loads(await admitted.get_message())["type"] == "session.created"
