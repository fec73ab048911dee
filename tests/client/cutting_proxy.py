"""A TCP proxy in front of a gateway that cuts the first audio socket: it lets ``pass_bytes`` of
the client's bytes through, swallows the rest for ``swallow_s`` (a network partition), then closes
both sides. Everything else (HTTP, SSE, the next audio socket) passes untouched."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import trio


@dataclass
class CuttingProxy:
    """Forwards TCP to the gateway; the first audio socket gets ``pass_bytes`` of the client's
    bytes through, then the rest is swallowed for ``swallow_s`` and the connection is cut."""

    upstream_port: int
    pass_bytes: int
    swallow_s: float
    port: int = 0
    cuts: int = 0
    swallowed: int = 0

    async def handle(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", self.upstream_port) as server:
            first = await client.receive_some(65536)
            cut_this = b"/audio" in first.split(b"\r\n", 1)[0] and self.cuts == 0
            if cut_this:
                self.cuts += 1
            await server.send_all(first)
            async with trio.open_nursery() as nursery:  # either side ending ends the connection

                async def pipe(source: trio.SocketStream, sink: trio.SocketStream, cut: bool) -> None:
                    await self._pipe(source, sink, cut)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(pipe, server, client, False)
                nursery.start_soon(pipe, client, server, cut_this)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, cut: bool) -> None:
        passed = 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                if cut and passed + len(data) > self.pass_bytes:
                    await sink.send_all(data[: self.pass_bytes - passed])
                    self.swallowed += len(data) - (self.pass_bytes - passed)
                    with trio.move_on_after(self.swallow_s):  # a partition: bytes go nowhere
                        while more := await source.receive_some(65536):
                            self.swallowed += len(more)
                    return  # and then the connection is gone (both sides closed)
                passed += len(data)
                await sink.send_all(data)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def proxy_to(upstream_url: str, pass_bytes: int, swallow_s: float) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(int(upstream_url.rsplit(":", 1)[1]), pass_bytes, swallow_s)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()
