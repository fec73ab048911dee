"""The worker loop's shutdown: what a connection accepted in its last moment gets."""

from __future__ import annotations

import socket
from functools import partial

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config, Sockets

from bench import floor_app
from service.serving import hypercorn_serve


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
    app = ASGIWrapper(floor_app.app)  # type: ignore[arg-type]  # its own, looser ASGI types
    serve = partial(hypercorn_serve.worker_serve, app, Config(), sockets=sockets, shutdown_trigger=stop.wait)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.05)  # the worker accepts it, and nothing comes yet
        stop.set()
        await trio.sleep(hypercorn_serve.LAST_REQUEST_GRACE_S / 4)
        await client.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        with trio.fail_after(5):
            while chunk := await client.receive_some():
                answer += chunk
                if answer.endswith(b"\r\n0\r\n\r\n"):  # the last chunk
                    break
        await client.aclose()
    assert answer.startswith(b"HTTP/1.1 200") and b'\r\n{"status": "ok"}\r\n' in answer
