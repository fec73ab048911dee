"""A lean Redis connection for the round trips a process makes many times a second.

coredis's request path (its command objects, its retry wrapper, and the writer and reader
tasks each of its connections runs on anyio, with a hand-off to each) cost about 300 µs of the
trio thread per round trip, measured at 100 streams: with a publisher round trip every flush
interval and the control inbox polled 20 times a second, that was nearly all of Redis mode's
extra CPU. This connection writes a command and reads its reply in the caller's task: one
send, one receive.

It speaks RESP2 and connects where coredis would from the same URL (it takes coredis's reading
of it: host and port or socket path, user, password, database, TLS context). Any failure,
a deadline or a cancellation included, throws the connection away, so no reply can ever be
read as another request's; the next call connects again. One caller at a time: each task
that needs one has its own.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import coredis
import hiredis
import trio
from coredis.connection import TCPLocation, UnixDomainSocketLocation

MAX_REPLY_BYTES = 64 * 1024 * 1024  # beyond this a reply is refused (ours are a few KiB)
READ_BYTES = 65536


class ReplyError(Exception):
    """Redis answered with an error (``ERR ...``, ``NOSCRIPT ...``)."""


Arg: TypeAlias = bytes | str | int
Reply: TypeAlias = "bytes | int | list[Reply] | ReplyError | None"  # errors inside arrays are values


class ProtocolError(Exception):
    """Redis sent what RESP2 does not allow, or more than ``MAX_REPLY_BYTES``."""


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command as RESP's array of bulk strings (hiredis's C packer: half the time of ours)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub types one-tuples
    return packed


class Incomplete:
    """What the reader answers while the reply is not all there (no reply is ever this)."""


INCOMPLETE = Incomplete()


class ReplyReader:
    """Replies out of what a connection receives, parsed by hiredis. Our own parser in Python
    took 267 µs for an XREAD reply of 50 entries, hiredis 11 µs; the follower parses one
    every flush interval. An error reply is a ``ReplyError`` value (inside an array too), never
    raised here; bytes that are not RESP raise ``ProtocolError``."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError, notEnoughData=INCOMPLETE)
        self._unparsed = 0  # bytes fed since the last whole reply

    def feed(self, data: bytes) -> None:
        self._unparsed += len(data)
        if self._unparsed > MAX_REPLY_BYTES:
            raise ProtocolError(f"a reply over {MAX_REPLY_BYTES} bytes")
        self._reader.feed(data)

    def reply(self) -> Reply | Incomplete:
        """The next whole reply, or ``INCOMPLETE``."""
        reply: Reply | Incomplete = self._reader.gets()
        if reply is not INCOMPLETE:
            self._unparsed = 0
        return reply


class RespConnection:
    def __init__(self, pool: coredis.ConnectionPool[Any], *, timeout_s: float) -> None:
        """``pool``: the coredis client's, for where and how to connect (it opens nothing)."""
        self._location = pool.location
        options = pool.connection_kwargs
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._db: int = options.get("db") or 0
        self._ssl = options.get("ssl_context")
        self.timeout_s = timeout_s
        self._stream: trio.abc.Stream | None = None
        self._replies = ReplyReader()

    async def call(self, *args: Arg) -> Reply:
        """One command's reply, within ``timeout_s`` (connecting first if need be); an error
        reply raises ``ReplyError`` and leaves the connection usable. A broken connection raises
        an ``OSError``, a deadline ``trio.TooSlowError``."""
        try:
            with trio.fail_after(self.timeout_s):
                if self._stream is None:
                    await self._connect()
                reply = await self._round_trip(encode(args))
        except trio.BrokenResourceError as exc:  # a reset, a failed TLS handshake: trio's words for OSErrors
            raise ConnectionResetError(f"Redis connection broken: {exc.__cause__ or exc}") from exc
        _check(reply)
        return reply

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _connect(self) -> None:
        location = self._location
        if isinstance(location, UnixDomainSocketLocation):
            stream: trio.abc.Stream = await trio.open_unix_socket(location.path)
        else:
            assert isinstance(location, TCPLocation), "coredis read no host from the URL"
            stream = await trio.open_tcp_stream(location.host, location.port)
            if self._ssl is not None:
                stream = trio.SSLStream(stream, self._ssl, server_hostname=location.host)
        self._stream = stream
        self._replies = ReplyReader()  # nothing of an earlier connection's
        try:
            if self._password:
                credentials = (self._username, self._password) if self._username else (self._password,)
                _check(await self._round_trip(encode(("AUTH", *credentials))))
            if self._db:
                _check(await self._round_trip(encode(("SELECT", self._db))))
        except ReplyError:  # a refused login (a failed round trip has closed the connection itself)
            await self.aclose()
            raise

    async def _round_trip(self, request: bytes) -> Reply:
        stream = self._stream
        assert stream is not None
        finished = False
        try:
            await stream.send_all(request)
            reply = await self._read_reply(stream)
            finished = True
            return reply
        finally:
            if not finished:  # the reply may still come: nobody may read it as theirs
                await self.aclose()

    async def _read_reply(self, stream: trio.abc.Stream) -> Reply:
        replies = self._replies
        while (reply := replies.reply()) is INCOMPLETE:
            data = await stream.receive_some(READ_BYTES)
            if not data:
                raise ConnectionResetError("Redis closed the connection")
            replies.feed(bytes(data))  # the same object when it is bytes already
        assert not isinstance(reply, Incomplete)
        return reply


def _check(reply: Reply) -> None:
    if isinstance(reply, ReplyError):
        raise reply
