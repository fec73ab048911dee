"""Audio sockets read straight from hypercorn, beneath Quart's relay.

quart-trio gives every WebSocket a relay task: it takes each ASGI event from hypercorn,
fires the ``websocket_received`` signal, and passes the message through a channel to the
handler. For the audio socket (ten frames a second per live stream) that is a task
switch, a channel and a signal per frame for nothing: here ``websocket.receive()`` takes
the next event from hypercorn itself. Everything else about the socket stays Quart's
(routing, ``websocket`` context, accept, send, close), and every other socket keeps the relay.

What stays the same: a client that disconnects cancels the handler (as the relay did), and
a handler that stops reading stops hypercorn reading too, so TCP slows the client (the relay
stopped once its channel's ten places were full). What differs: the disconnect is noticed
when the handler next reads, and the audio handler reads all the time once it has accepted;
``websocket_received`` is not fired for these sockets (nothing here listens to it).

Once it has accepted, the handler reads through ``audio_receive()``: Quart's
``websocket.receive`` would run its accept again for every frame (building a ``Headers``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart_trio.asgi import TrioASGIWebsocketConnection

AUDIO_PATH = re.compile(r"/v1/sessions/[^/]+/audio")
_current: ContextVar[_DirectReceive | None] = ContextVar("reserve_audio_receive", default=None)


def audio_receive() -> Callable[[], Awaitable[bytes | str]]:
    """The current audio socket's next message, straight from hypercorn (accept it first)."""
    direct = _current.get()
    if direct is None:
        raise RuntimeError("audio_receive() outside an audio socket's handler")
    return direct.receive


class _DirectReceive:
    """Stands in for the relay's channel: ``receive`` is what the ``Websocket`` object calls."""

    def __init__(self, receive: ASGIReceiveCallable, handler: trio.CancelScope) -> None:
        self._receive = receive
        self._handler = handler

    async def receive(self) -> bytes | str:
        while True:
            event: Any = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                data: bytes | None = event.get("bytes")
                text: str = event.get("text") or ""
                return data if data is not None else text
            if kind == "websocket.disconnect":  # as the relay did: the handler is cancelled
                self._handler.cancel()
                await trio.sleep_forever()
            # ``websocket.connect`` (the first event) says nothing the handler needs


class WebsocketConnection(TrioASGIWebsocketConnection):
    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if not AUDIO_PATH.fullmatch(self.scope["path"]):
            await super().__call__(receive, send)
            return
        async with trio.open_nursery() as nursery:
            direct = _DirectReceive(receive, nursery.cancel_scope)
            self.receive_channel = direct  # type: ignore[assignment]
            websocket = self._create_websocket_from_scope(send)
            token = _current.set(direct)  # the handler's task starts with a copy of this context
            try:
                await self.handle_websocket(nursery, websocket, send)
            finally:
                _current.reset(token)
