"""Following a session's Server-Sent Events until ``end``, resuming with Last-Event-ID."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
import trio
from httpx_sse import SSEError, aconnect_sse

from service.client.api import Options, Session, describe_http_error, describe_transport_error, unreachable
from service.client.errors import ClientError
from service.client.render import EventPrinter, parse_event_id
from service.client.transcript import Transcript

SSE_READ_TIMEOUT_S = 90.0  # the server sends a heartbeat comment well within this
SSE_RECONNECTS = 5


@dataclass
class SessionResult:
    """What happened: filled in as the streams run, returned when the session is over."""

    session: Session | None = None
    end_reason: str | None = None
    transcript: Transcript = field(default_factory=Transcript)
    events: int = 0
    audio_bytes: int = 0  # sent (resent audio counted once)
    confirmed_seconds: float = 0.0  # audio the server's finals cover: never asked for again
    reconnects: int = 0
    warnings: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    failure: ClientError | None = None
    events_done: trio.Event = field(default_factory=trio.Event)
    audio_done: trio.Event = field(default_factory=trio.Event)

    def fail(self, error: ClientError) -> None:
        if self.failure is None:
            self.failure = error

    @property
    def finals(self) -> list[str]:
        return [result.text for result in self.transcript.results]


def handle_event(
    name: str, event_id: int | str | None, data: Any, result: SessionResult, printer: EventPrinter
) -> bool:
    """Print one event and note what it means; True once it is the last (``end``)."""
    if not isinstance(data, dict):
        data = {"value": data}
    result.events += 1
    printer.event(name, event_id, data)
    if name == "transcript" and data.get("is_final"):
        result.transcript.add_final(data)
        processed = data.get("audio_processed")
        if isinstance(processed, int | float):
            result.confirmed_seconds = max(result.confirmed_seconds, float(processed))
    elif name == "error":
        code = data.get("code") or "error"
        result.fail(ClientError(f"Reserve reported an error ({code}): {data.get('message') or 'no details'}"))
    elif name == "end":
        result.end_reason = str(data.get("reason") or "")
        result.transcript.end_reason = result.end_reason
        return True
    return False


async def follow_events(
    http: httpx.AsyncClient,
    options: Options,
    session: Session,
    printer: EventPrinter,
    result: SessionResult,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print the session's events until ``end``; reconnect with Last-Event-ID if the stream drops."""
    url = urljoin(options.base_url, session.events_url)
    timeout = httpx.Timeout(options.connect_timeout_s, read=SSE_READ_TIMEOUT_S)
    last_id = ""
    retry_s = 1.0
    started = False
    drops = 0
    while True:
        headers = {"Authorization": f"Bearer {session.token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            async with aconnect_sse(http, "GET", url, headers=headers, timeout=timeout) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise ClientError(describe_http_error("following the session's events", response))
                if not started:
                    started = True
                    task_status.started()
                async with contextlib.aclosing(source.aiter_sse()) as stream:
                    async for sse in stream:
                        if sse.retry:
                            retry_s = sse.retry / 1000
                        if not sse.data:
                            continue  # the retry preamble; heartbeats are comments and never show up
                        drops = 0
                        last_id = sse.id or last_id
                        try:
                            data = json.loads(sse.data)
                        except ValueError:
                            raise ClientError(f"the server sent an event that is not JSON: {sse.data[:80]!r}") from None
                        if handle_event(sse.event, parse_event_id(sse.id), data, result, printer):
                            return
        except SSEError as exc:
            raise ClientError(f"the server did not answer with an event stream: {exc}") from None
        except httpx.TransportError as exc:
            if not started:
                raise unreachable(options, exc) from None
            reason = describe_transport_error(exc)
        else:
            reason = "the server closed it before the end event"
        drops += 1
        if drops > SSE_RECONNECTS:
            raise ClientError(f"lost the event stream ({reason}) and could not resume it")
        await trio.sleep(retry_s)
