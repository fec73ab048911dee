"""The lean Redis connection (service.shared.redis.resp): RESP2 encoding and parsing byte by byte,
and round trips against a real redis-server: auth, database, scripts, errors, a server that
goes away and comes back, a reset, a cancelled call, TLS."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import coredis
import pytest
import trio

from service.shared.redis import codec as redis_codec
from service.shared.redis import resp
from service.shared.redis.resp import ProtocolError, ReplyError, RespConnection
from tests.redis_server import (
    RedisServer,
    redis_server,
    running_redis,
    running_tls_redis,
    running_unix_redis,
)

__all__ = ["redis_server"]  # the fixture, imported for this module's tests

REPLIES: list[tuple[bytes, resp.Reply]] = [
    (b"+OK\r\n", b"OK"),
    (b":-42\r\n", -42),
    (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),  # a bulk string may hold CRLF
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (
        b"*3\r\n$2\r\nOK\r\n*2\r\n:1\r\n$-1\r\n-NOSCRIPT no script\r\n",
        [b"OK", [1, None], ReplyError("NOSCRIPT no script")],
    ),
]


def same(a: resp.Reply, b: resp.Reply) -> bool:
    if isinstance(a, ReplyError) or isinstance(b, ReplyError):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("wire", "reply"), REPLIES)
def test_each_reply_parses_whole_and_not_before(wire: bytes, reply: resp.Reply) -> None:
    replies = resp.ReplyReader()
    for byte in wire[:-1]:  # as TCP may deliver it: a byte at a time
        replies.feed(bytes([byte]))
        assert replies.reply() is resp.INCOMPLETE
    replies.feed(wire[-1:] + b"+next\r\n")
    parsed = replies.reply()
    assert not isinstance(parsed, resp.Incomplete) and same(parsed, reply)
    assert replies.reply() == b"next" and replies.reply() is resp.INCOMPLETE


def test_what_is_not_resp_is_a_protocol_error() -> None:
    replies = resp.ReplyReader()
    replies.feed(b"?1\r\n")
    with pytest.raises(ProtocolError):
        replies.reply()


def test_a_reply_over_the_bound_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp, "MAX_REPLY_BYTES", 100)
    replies = resp.ReplyReader()
    replies.feed(b"$150\r\n" + b"x" * 90)
    assert replies.reply() is resp.INCOMPLETE
    with pytest.raises(ProtocolError, match="over 100 bytes"):
        replies.feed(b"x" * 60 + b"\r\n")
    small = resp.ReplyReader()
    for _ in range(3):  # the bound is per reply, not per connection
        small.feed(b"$80\r\n" + b"y" * 80 + b"\r\n")
        assert small.reply() == b"y" * 80


def test_commands_are_arrays_of_bulk_strings() -> None:
    wire = b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$3\r\nk\r\n\r\n"
    assert resp.encode(("EVALSHA", b"ab", 2, "k\r\n")) == wire


def connection(url: str, timeout_s: float = 2.0) -> RespConnection:
    return RespConnection(coredis.Redis.from_url(url).connection_pool, timeout_s=timeout_s)


async def test_a_round_trip_and_an_error_that_leaves_the_connection_usable(redis_server: RedisServer) -> None:
    redis = connection(redis_server.url)
    assert await redis.call("SET", "k", b"\x00\xff") == b"OK"
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await redis.call("LPUSH", "k", "x")
    assert await redis.call("GET", "k") == b"\x00\xff"
    assert await redis.call("LPOP", "missing", 64) is None
    await redis.aclose()


async def test_scripts_by_sha_and_nested_replies(redis_server: RedisServer) -> None:
    redis = connection(redis_server.url)
    script = b"return {redis.status_reply('OK'), {tonumber(ARGV[1]) + 1, KEYS[1]}}"
    with pytest.raises(ReplyError, match="NOSCRIPT"):
        await redis.call("EVALSHA", "0" * 40, 0)
    sha = await redis.call("SCRIPT", "LOAD", script)
    assert isinstance(sha, bytes)
    assert await redis.call("EVALSHA", sha, 1, "key", 41) == [b"OK", [42, b"key"]]
    await redis.aclose()


async def test_user_password_and_database_come_from_the_url(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        admin = connection(server.url)
        await admin.call("ACL", "SETUSER", "gw", "on", ">s3cret", "~*", "+@all")
        await admin.call("SELECT", 3)
        await admin.call("SET", "where", "db3")
        gateway = connection(f"redis://gw:s3cret@127.0.0.1:{server.port}/3")
        assert await gateway.call("GET", "where") == b"db3"
        intruder = connection(f"redis://gw:wrong@127.0.0.1:{server.port}/3")
        with pytest.raises(ReplyError, match="WRONGPASS"):
            await intruder.call("PING")
        assert intruder._stream is None  # a refused login closes what it opened
        for each in (admin, gateway):
            await each.aclose()


async def test_a_server_that_goes_away_fails_the_call_and_the_next_one_connects_again(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        redis = connection(server.url)
        assert await redis.call("PING") == b"PONG"
        server.stop(kill=True)
        with pytest.raises(OSError):
            await redis.call("PING")
        server.start()
        assert await redis.call("PING") == b"PONG"
        await redis.aclose()


async def test_a_silent_server_fails_the_call_at_its_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        port = listener.getsockname()[1]
        redis = connection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        with pytest.raises(trio.TooSlowError):
            await redis.call("PING")
        assert redis._stream is None  # thrown away: a late reply can never be read as the next call's


async def test_a_cancelled_call_never_leaves_its_reply_for_the_next_one(redis_server: RedisServer) -> None:
    redis = connection(redis_server.url)
    await redis.call("SET", "k", "first")
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time()  # cancelled at its first checkpoint, mid round trip
        await redis.call("BLPOP", "nothing", 1)
    assert scope.cancelled_caught
    assert await redis.call("GET", "k") == b"first"
    await redis.aclose()


async def test_xread_replies_become_entries_and_a_malformed_one_is_refused(redis_server: RedisServer) -> None:
    redis = connection(redis_server.url)
    await redis.call("XADD", "rsv:s:a:log", "0-1", "n", "transcript", "d", b'{"x":1}')
    await redis.call("XADD", "rsv:s:a:log", "0-2", "n", "end", "d", b"{}")
    reply = await redis.call("XREAD", "COUNT", 10, "BLOCK", 10, "STREAMS", "rsv:s:a:log", "rsv:s:b:log", "0-1", "0-0")
    entries = redis_codec.stream_entries(reply)
    assert entries == [(b"rsv:s:a:log", [(b"0-2", {b"n": b"end", b"d": b"{}"})])]
    assert redis_codec.event(*entries[0][1][0]).frame == b"id: 2\nevent: end\ndata: {}\n\n"
    assert (
        redis_codec.stream_entries(await redis.call("XREAD", "BLOCK", 10, "STREAMS", "rsv:s:b:log", "0-0")) == []
    )  # nil: none
    malformed_replies: list[resp.Reply] = [[b"key"], [[b"key", [[b"0-1", [b"n"]]]]], b"OK", 3]
    for malformed in malformed_replies:
        with pytest.raises(ProtocolError, match="XREAD answered"):
            redis_codec.stream_entries(malformed)
    await redis.aclose()


async def test_a_connection_reset_under_a_call_is_an_os_error() -> None:
    """trio says BrokenResourceError; the hub counts OSErrors as Redis being unavailable."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        redis = connection(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        async with trio.open_nursery() as nursery:

            def reset_the_first_connection() -> None:
                # all in the thread: a blocking recv on the trio thread would keep the PING from being sent
                listener.settimeout(10)
                accepted, _ = listener.accept()
                with accepted:
                    accepted.settimeout(10)
                    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    accepted.recv(100)  # the request arrived; closing now, with linger 0, is a reset

            nursery.start_soon(trio.to_thread.run_sync, reset_the_first_connection)
            with pytest.raises(OSError):
                await redis.call("PING")
        assert redis._stream is None


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with running_tls_redis(tmp_path) as urls:
        yield urls


async def test_rediss_urls_connect_over_tls_and_refuse_an_untrusted_server(tls_redis: tuple[str, str]) -> None:
    trusting_url, bare_url = tls_redis
    trusting = connection(trusting_url)
    assert await trusting.call("PING") == b"PONG"
    assert await trusting.call("SET", "over", "tls") == b"OK"
    await trusting.aclose()
    untrusting = connection(bare_url)  # the system's CAs only
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusting.call("PING")


async def test_unix_urls_connect_through_the_socket(tmp_path: Path) -> None:
    with running_unix_redis(tmp_path) as url:
        redis = connection(url)
        assert await redis.call("SET", "over", "unix") == b"OK"
        assert await redis.call("GET", "over") == b"unix"
        await redis.aclose()
