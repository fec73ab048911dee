"""What the client keeps to resend after a dropped audio socket: the audio since the server's
last confirmed point (a final result), bounded, the oldest dropped first."""

from __future__ import annotations

from collections import deque


class SentAudio:
    """Audio sent since the server's last confirmed point, bounded: the oldest is dropped first.

    Positions are absolute byte offsets in the session's audio, as the server counts them.
    """

    def __init__(self, *, max_bytes: int, align: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._max_bytes = max(max_bytes, align)
        self._align = max(1, align)
        self.start = 0  # offset of the first byte kept
        self.end = 0  # offset after the last byte sent

    def append(self, audio: bytes) -> None:
        self._chunks.append(audio)
        self.end += len(audio)
        if self.end - self.start > self._max_bytes:
            self.confirm(self.end - self._max_bytes)

    def confirm(self, offset: int) -> None:
        """Forget audio before ``offset`` (whole samples): the server will not ask for it again."""
        offset = min(self.end, offset - offset % self._align)
        while self._chunks and self.start < offset:
            head = self._chunks[0]
            if self.start + len(head) <= offset:
                self._chunks.popleft()
                self.start += len(head)
            else:
                self._chunks[0] = head[offset - self.start :]
                self.start = offset

    def since(self, offset: int) -> tuple[list[bytes], int]:
        """The audio from ``offset`` on, and how many bytes before what is kept were asked for."""
        lost = max(0, self.start - offset)
        skip = max(0, offset - self.start)
        out: list[bytes] = []
        for chunk in self._chunks:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            out.append(chunk[skip:])
            skip = 0
        return out, lost
