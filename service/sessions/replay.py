"""Audio sent since Riva's last final result, kept to replay into a new stream.

Positions are absolute byte offsets in the session's audio. A final result moves the
start forward (that audio can never be needed again); the buffer is bounded, and when
it is full the oldest audio is dropped and counted, so memory never grows unbounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class ReplayBuffer:
    def __init__(self, *, max_bytes: int, frame_bytes: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._max_bytes = max_bytes
        self._frame = max(1, frame_bytes)  # never cut inside a sample
        self.start = 0  # absolute offset of the first byte held
        self.end = 0  # absolute offset after the last byte held
        self.dropped_bytes = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    def append(self, audio: bytes) -> None:
        self._chunks.append(audio)
        self.end += len(audio)
        overflow = self.size - self._max_bytes
        if overflow > 0:
            self.dropped_bytes += overflow
            self.release_to(self.start + overflow)

    def release_to(self, offset: int) -> None:
        """Forget audio before ``offset`` (rounded down to a whole sample)."""
        offset = min(self.end, offset - offset % self._frame)
        while self._chunks and self.start < offset:
            head = self._chunks[0]
            if self.start + len(head) <= offset:
                self._chunks.popleft()
                self.start += len(head)
            else:
                cut = offset - self.start
                self._chunks[0] = head[cut:]
                self.start = offset

    def clear(self) -> None:
        self.release_to(self.end)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._chunks))
