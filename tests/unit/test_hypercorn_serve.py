"""The worker loop's shutdown: what a connection accepted in its last moment gets."""

from __future__ import annotations

import socket
from functools import partial

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from service.serving import hypercorn_serve


async def answer_ok(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")], "trailers": False}
    )
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def test_a_request_sent_just_after_the_worker_stopped_accepting_is_answered() -> None:
    """The client connected (the worker accepted it), then the worker was told to stop, then the
    request went out: it is answered, not met by a closed connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    sockets = Sockets(secure_sockets=[], insecure_sockets=[listener], quic_sockets=[])
    stop = trio.Event()
    serve = partial(
        hypercorn_serve.worker_serve, ASGIWrapper(answer_ok), Config(), sockets=sockets, shutdown_trigger=stop.wait
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.05)  # the worker accepts it, and nothing comes yet
        stop.set()
        await trio.sleep(hypercorn_serve.LAST_REQUEST_GRACE_S / 4)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        with trio.fail_after(5):
            while chunk := await client.receive_some():
                answer += chunk
                if answer.endswith(b"ok"):
                    break
        await client.aclose()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok")
