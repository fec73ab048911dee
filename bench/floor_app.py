"""The framework floor: the gateway's HTTP surface as a bare ASGI app, no Quart, no gRPC.

``python -m bench.run --gateway-app bench.floor_app:app`` serves this under the same
hypercorn config instead of ``service.app:app``. It speaks the same protocol to the load
generator (``POST /v1/sessions``, audio WebSocket, SSE events) but answers each audio
chunk itself, at once, with the transcript event fake_riva's tagged recognizer would
cause. What it costs per chunk is what hypercorn + h11 + wsproto + trio cost before any
of the gateway's own work: the floor under the gateway's CPU per stream.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Session:
    def __init__(self) -> None:
        self.id = secrets.token_urlsafe(16)
        self.token = secrets.token_urlsafe(32)
        self.events: list[bytes] = []
        self.changed = trio.Event()
        self.closed = False

    def publish(self, name: str, data: bytes) -> None:
        self.events.append(b"id: %d\nevent: %s\ndata: %s\n\n" % (len(self.events) + 1, name.encode(), data))
        self.changed.set()
        self.changed = trio.Event()


_sessions: dict[str, _Session] = {}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    if kind == "websocket" and path.endswith("/audio"):
        await _audio(_sessions[path.split("/")[3]], receive, send)
    elif kind == "http" and scope["method"] == "POST" and path == "/v1/sessions":
        await _create(receive, send)
    elif kind == "http" and path.endswith("/events"):
        await _events(_sessions[path.split("/")[3]], send)
    elif kind == "http" and path == "/healthz":
        await _json(send, 200, {"status": "ok"})
    else:
        await _json(send, 404, {"error": "not found"})


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def _create(receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    session = _Session()
    _sessions[session.id] = session
    base = f"/v1/sessions/{session.id}"
    await _json(
        send,
        201,
        {"id": session.id, "token": session.token, "audio_url": f"{base}/audio", "events_url": f"{base}/events"},
    )


async def _audio(session: _Session, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    seq = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
        audio = message.get("bytes")
        if audio:
            seq += 1
            tag = int.from_bytes(audio[:8], "little")
            session.publish("transcript", b'{"seq":%d,"is_final":false,"text":"t%d"}' % (seq, tag))
        elif message.get("text"):
            session.publish("transcript", b'{"seq":%d,"is_final":true,"text":"t%d end"}' % (seq + 1, tag))
            session.publish("end", b'{"reason":"finished"}')
            session.closed = True
            await send({"type": "websocket.close", "code": 1000})
            break
    session.closed = True
    session.changed.set()


async def _events(session: _Session, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
    cursor = 0
    while True:
        if cursor < len(session.events):
            batch = session.events[cursor:]
            cursor += len(batch)
            await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
            continue
        if session.closed:
            break
        await session.changed.wait()
    await send({"type": "http.response.body", "body": b""})
    _sessions.pop(next((k for k, v in _sessions.items() if v is session), ""), None)


def _quart_app() -> Any:
    """The same surface through QuartTrio (as service/ uses it): the floor plus Quart's layers."""
    from quart import Response, request, websocket
    from quart_trio import QuartTrio

    quart = QuartTrio("floor")

    @quart.post("/v1/sessions")
    async def create() -> tuple[dict[str, str], int]:
        await request.get_data()
        session = _Session()
        _sessions[session.id] = session
        base = f"/v1/sessions/{session.id}"
        return {
            "id": session.id,
            "token": session.token,
            "audio_url": f"{base}/audio",
            "events_url": f"{base}/events",
        }, 201

    @quart.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @quart.websocket("/v1/sessions/<session_id>/audio")
    async def audio(session_id: str) -> None:
        session = _sessions[session_id]
        await websocket.accept()
        seq = tag = 0
        while True:
            message = await websocket.receive()
            if isinstance(message, bytes):
                seq += 1
                tag = int.from_bytes(message[:8], "little")
                session.publish("transcript", b'{"seq":%d,"is_final":false,"text":"t%d"}' % (seq, tag))
                continue
            session.publish("transcript", b'{"seq":%d,"is_final":true,"text":"t%d end"}' % (seq + 1, tag))
            session.publish("end", b'{"reason":"finished"}')
            session.closed = True
            session.changed.set()
            await websocket.close(1000)
            return

    async def follow(session: _Session) -> Any:
        yield b"retry: 2000\n\n"
        cursor = 0
        while True:
            if cursor < len(session.events):
                batch = session.events[cursor:]
                cursor += len(batch)
                yield b"".join(batch)
                continue
            if session.closed:
                return
            await session.changed.wait()

    @quart.get("/v1/sessions/<session_id>/events")
    async def events(session_id: str) -> Response:
        response = Response(follow(_sessions[session_id]), status=200, content_type="text/event-stream")
        response.timeout = None
        return response

    return quart


quart_app = _quart_app()
