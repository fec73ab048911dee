"""What the client keeps to resend after a dropped audio socket: the audio since the server's
last confirmed point (a final result), bounded, the oldest dropped first."""

from __future__ import annotations

from service.sessions.replay import ReplayBuffer


class SentAudio(ReplayBuffer):
    """Audio sent since the server's last confirmed point, bounded: the oldest is dropped first.

    The same bounded buffer of absolute offsets as the gateway's replay buffer (positions as the
    server counts them); the client adds only the question it asks after a reconnect.
    """

    def __init__(self, *, max_bytes: int, align: int) -> None:
        super().__init__(max_bytes=max(max_bytes, align), frame_bytes=align)

    def confirm(self, offset: int) -> None:
        """Forget audio before ``offset`` (whole samples): the server will not ask for it again."""
        self.release_to(offset)

    def since(self, offset: int) -> tuple[list[bytes], int]:
        """The audio from ``offset`` on, and how many bytes before what is kept were asked for."""
        lost = max(0, self.start - offset)
        skip = max(0, offset - self.start)
        out: list[bytes] = []
        for chunk in self:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            out.append(chunk[skip:])
            skip = 0
        return out, lost
