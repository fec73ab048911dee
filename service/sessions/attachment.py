"""The one audio socket's handle on its session.

Audio beyond ``max_audio_rate`` times real time (after a burst allowance) waits here, so
a client that sends faster is slowed by backpressure, not buffered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from service.errors import BadMessage
from service.protocol import Control

if TYPE_CHECKING:
    from service.sessions.session import Session

AudioItem = bytes | Control


class AudioAttachment:
    """Closing it detaches the socket from the session."""

    def __init__(self, session: Session, *, resumed: bool) -> None:
        self.session = session
        self.resumed = resumed
        self.ended = False
        settings = session.settings
        rate = session.config.bytes_per_second
        self._allowed_per_s = rate * settings.max_audio_rate if rate else None
        self._burst = rate * settings.audio_burst_s if rate else 0
        self._started = trio.current_time()
        self._bytes = 0

    async def send_audio(self, audio: bytes) -> None:
        if self.session.moving:  # not taken: the next owner's ``resumed`` tells the client to resend it
            await self.session.done.wait()
            return
        if self.ended:
            raise BadMessage("audio after an end message; create a new session to send more")
        self.session.touch()
        await self._pace(len(audio))
        self.session.count_audio(len(audio))
        await self.session.put_audio(audio)

    async def control(self, control: Control) -> None:
        self.session.touch()
        if control is Control.KEEPALIVE:
            return
        if self.session.moving:  # the client says it again to the next owner, after it resends
            await self.session.done.wait()
            return
        if self.ended:
            raise BadMessage(f"{control.value} after an end message")
        if control is Control.END:
            self.ended = True
            self.session.audio_ended()
        await self.session.put_audio(control)

    def close(self) -> None:
        self.session.detach(self)

    async def _pace(self, size: int) -> None:
        if self._allowed_per_s is None:
            return
        self._bytes += size
        due = self._started + (self._bytes - self._burst) / self._allowed_per_s
        if due > trio.current_time():
            await trio.sleep_until(due)
