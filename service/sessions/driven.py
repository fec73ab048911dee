"""A session driven from inside the gateway by a protocol adapter.

The OpenAI and NVIDIA realtime sockets and the REST transcription endpoint are thin
translations onto the very same ``Session`` as the native WebSocket+SSE API: the adapter
holds the session's one audio attachment (as the audio socket would) and reads the
session's event log with its own cursor (as an SSE reader would). Limits, metrics,
logs and Riva failover with replay come with the session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from service.events.sse import frame_data
from service.protocol import Control
from service.sessions.attachment import AudioAttachment
from service.sessions.config import RecognitionSettings
from service.sessions.registry import Registry
from service.sessions.session import Session


@dataclass(frozen=True, slots=True)
class SessionEvent:
    id: int
    name: str  # transcript, reconnecting, reconnected, error, end
    data: dict[str, Any]


class DrivenSession:
    """One Reserve session and its audio attachment, owned by an adapter until ``close``."""

    def __init__(self, session: Session, attachment: AudioAttachment) -> None:
        self.session = session
        self._attachment = attachment
        self._cursor = 0
        self.finalizes_sent = 0  # finalize controls sent; ``session.finalized`` counts the flushed ones

    @classmethod
    async def start(
        cls,
        registry: Registry,
        config: RecognitionSettings,
        *,
        protocol: str,
        owner: str | None,
        ticket: str,
        on_end: Callable[[], Awaitable[None]],
    ) -> DrivenSession:
        """``protocol`` labels ``reserve_adapter_sessions_total``; ``ticket`` and ``on_end`` are
        the key's admission and its release, as for a session created over REST. Not a request
        placed as a new session (a realtime socket counts from its start: ``socket_waiting``)."""
        session = await registry.create(config, owner=owner, ticket=ticket, on_end=on_end, placed=False)
        registry.runtime.metrics.adapter_session(protocol)
        return cls(session, session.attach())

    @property
    def ended(self) -> bool:
        """The session's log is closed and every event in it was read."""
        return self.session.log.closed and self._cursor >= self.session.log.last_id

    async def send_audio(self, audio: bytes) -> None:
        await self._attachment.send_audio(audio)

    async def finalize(self) -> int:
        """Ask for Riva's finals now; returns the count ``session.finalized`` reaches once they are in."""
        await self._attachment.control(Control.FINALIZE)
        self.finalizes_sent += 1
        return self.finalizes_sent  # only this adapter sends controls, and each is flushed once

    async def end(self) -> None:
        """No more audio: the session flushes its finals and ends."""
        if not self._attachment.ended:
            await self._attachment.control(Control.END)

    async def pending(self) -> list[SessionEvent]:
        """Events not read yet, without waiting for new ones (the adapter runs where the session
        does, so its log is this process's own: nothing is ever missing from it)."""
        events = await self.session.log.read(self._cursor)
        if events:
            self._cursor = events[-1].id
        return [SessionEvent(e.id, e.name, msgspec.json.decode(frame_data(e.frame))) for e in events]

    async def wait(self, *, finalized_after: int | None = None, or_until: trio.Event | None = None) -> None:
        """Until a new event is logged, or (``finalized_after``) a finalize is flushed, or ``or_until`` is set."""
        if finalized_after is None and or_until is None:
            await self.session.log.wait_after(self._cursor)
            return
        async with trio.open_nursery() as nursery:

            async def first(wait: Callable[[], Any]) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, lambda: self.session.log.wait_after(self._cursor))
            if finalized_after is not None:
                nursery.start_soon(first, lambda: self.session.wait_finalized_after(finalized_after))
            if or_until is not None:
                nursery.start_soon(first, or_until.wait)

    def close(self, reason: str = "client_gone") -> None:
        """The adapter's client is gone: a session not ended by ``end`` is cancelled at once
        (these protocols cannot resume a socket, so waiting for one would only hold Riva)."""
        if not self._attachment.ended:
            self.session.cancel(reason)
        self._attachment.close()
