"""The audio WebSocket: binary frames are audio, text frames are control messages.

The handler reads only as fast as the session takes audio (the channel is bounded),
so a fast sender is slowed by TCP, not buffered. Every refusal is an error frame
followed by a close code that says why.
"""

from __future__ import annotations

import logging

import msgspec
import trio
from quart import Blueprint, websocket

from service.api.common import accept_websocket, authorized_session, registry
from service.api.direct_socket import audio_receive
from service.errors import FrameTooLarge, InternalError, ReserveError
from service.protocol import parse_control
from service.sessions.attachment import AudioAttachment
from service.sessions.session import Session
from service.sessions.state import State

blueprint = Blueprint("audio", __name__)
log = logging.getLogger("reserve.audio")
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SERVICE_RESTART = 1012


async def close_with_error(error: ReserveError) -> None:
    """Tell the client in words, then close with the error's code."""
    try:
        await websocket.send(msgspec.json.encode({"type": "error", **error.to_json()}).decode())
        await websocket.close(error.ws_close_code, error.code)
    except Exception:  # the client may already be gone; nothing left to tell it
        log.debug("could not deliver %s to a closed socket", error.code)


@blueprint.websocket("/v1/sessions/<session_id>/audio")
async def audio(session_id: str) -> None:
    try:
        handle = await authorized_session(session_id, from_websocket=True, scoped_ok=True)
        session = await registry().local(handle)  # shared mode: it moves here
        attachment = session.attach()
    except ReserveError as error:
        await accept_websocket()  # with the offered subprotocol, or a browser never sees the error
        await close_with_error(error)
        return
    await accept_websocket()
    try:
        if attachment.resumed:  # tell a reconnecting client where to continue from
            received = session.counters.audio_bytes
            await websocket.send(msgspec.json.encode({"type": "resumed", "audio_bytes_received": received}).decode())
        await _stream(session, attachment)
    finally:
        attachment.close()


async def _stream(session: Session, attachment: AudioAttachment) -> None:
    settings = registry().runtime.settings
    error: ReserveError | None = None
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            nonlocal error
            try:
                await _ingest(attachment, settings.max_frame_bytes)
            except ReserveError as exc:
                error = exc
                nursery.cancel_scope.cancel()

        nursery.start_soon(read)
        await session.done.wait()
        nursery.cancel_scope.cancel()
    # in shared mode the end and the last finals may still be on their way to Redis: a client
    # told "finished" before they are there would not resend if this process died now
    await session.log.drained(settings.redis_outage_deadline_s)
    if error is not None and not session.state.terminal:
        await close_with_error(error)
    elif session.handed_over:  # its client's socket came back at another instance
        await websocket.close(CLOSE_SERVICE_RESTART, "session moved to another instance")
    elif session.state is State.FAILED:  # the session's own failure explains any refusal
        await close_with_error(session.failure or InternalError("session failed"))
    elif session.end_reason == "shutdown":
        await websocket.close(CLOSE_GOING_AWAY, "gateway shutting down")
    else:
        await websocket.close(CLOSE_NORMAL, f"session {session.state.value}")


async def _ingest(attachment: AudioAttachment, max_frame: int) -> None:
    receive = audio_receive()
    while True:
        message = await receive()
        if isinstance(message, bytes):
            if len(message) > max_frame:
                raise FrameTooLarge(f"audio frames are at most {max_frame} bytes; got {len(message)}")
            if message:
                await attachment.send_audio(message)
            continue
        await attachment.control(parse_control(message))
        # after ``end`` keep reading: the socket stays open until the finals are
        # flushed, and anything but keepalives from here on is refused
