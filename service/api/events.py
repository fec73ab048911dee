"""SSE: follow a session's event log from a cursor; resumable with Last-Event-ID."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import trio
from quart import Blueprint, Response, request

from service.api.common import authorized_session, registry
from service.errors import StateUnavailable
from service.events import sse
from service.events.log import EventLog, HistoryLost
from service.events.readers import TICKS_PER_HEARTBEAT, Readers
from service.sessions.record import RemoteSession
from service.sessions.session import Session

blueprint = Blueprint("events", __name__)
log = logging.getLogger("reserve.events")

HISTORY_RETRY_FIRST_S = 0.1  # a reader whose older events Redis does not give asks again after this,
HISTORY_RETRY_MAX_S = 2.0  # doubling up to this, for as long as the outage lasts

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "Content-Type": "text/event-stream; charset=utf-8",
}


async def follow(
    session: Session | RemoteSession,
    after_id: int,
    done: Callable[[str], None],
    readers: Readers,
) -> AsyncIterator[bytes]:
    """Every event after ``after_id``, then return once the log is closed and drained; ``done``
    is told when the reader goes (the body runs outside the app's context)."""
    session.readers += 1  # counted only once the body runs, so a reader that never starts never leaks
    try:
        async with contextlib.aclosing(_follow(session.log, after_id, readers)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        session.readers -= 1
        done(session.id)


async def _follow(event_log: EventLog, after_id: int, readers: Readers) -> AsyncGenerator[bytes]:
    yield sse.preamble()
    cursor = after_id
    quiet_ticks = 0  # heartbeat ticks since the last write
    retry_s = HISTORY_RETRY_FIRST_S
    with readers.following(event_log):
        while True:
            try:
                batch = await event_log.read(cursor)
            except HistoryLost as lost:  # said, never skipped silently; no id, so a resume asks again
                cursor = lost.resumes_at - 1
                yield sse.gap(lost.missing_from, lost.resumes_at)
                continue
            except StateUnavailable:  # older events are in Redis, which does not answer: wait, no gap
                if readers.stopping:
                    return
                yield sse.HEARTBEAT  # still here, for the client and any proxy on the way
                await trio.sleep(retry_s)
                retry_s = min(HISTORY_RETRY_MAX_S, retry_s * 2)
                continue
            retry_s = HISTORY_RETRY_FIRST_S
            if batch:
                cursor = batch[-1].id
                quiet_ticks = 0
                yield b"".join(event.frame for event in batch)
                continue
            if event_log.closed or readers.stopping:  # stopping: what the log held is sent
                return
            await event_log.wait_after(cursor)
            if event_log.last_id <= cursor and not event_log.closed:  # only a nudge: a tick, or the stop
                quiet_ticks += 1
                if quiet_ticks >= TICKS_PER_HEARTBEAT and not readers.stopping:
                    quiet_ticks = 0
                    yield sse.HEARTBEAT


@blueprint.get("/v1/sessions/<session_id>/events")
async def events(session_id: str) -> Response:
    session = await authorized_session(session_id, scoped_ok=True)
    after_id = sse.parse_last_event_id(request.headers.get("Last-Event-ID"), request.args.get("last_event_id"))
    session.check_reader_room()
    body = follow(session, after_id, registry().reader_done, registry().readers)
    response = Response(body, status=200, headers=SSE_HEADERS)
    response.timeout = None  # an event stream lasts as long as the session
    return response
