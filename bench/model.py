"""What one load phase records, and the figures computed from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fake_riva.recognizers.tagged import FRAME_HEAD_BYTES, frame_head

SAMPLE_RATE_HZ = 16_000
CHUNK_S = 0.1
CHUNK_BYTES = 3200  # 100 ms of 16 kHz 16-bit mono LINEAR_PCM
REALTIME_LAG_S = 0.1  # a stream keeps real-time pace if no chunk goes out later than this


def tag(stream_no: int, chunk_no: int) -> int:
    return stream_no << 32 | chunk_no


def chunk_bytes(chunk_s: float) -> int:
    """Bytes in a chunk of this duration of 16 kHz 16-bit mono LINEAR_PCM."""
    return max(FRAME_HEAD_BYTES, round(SAMPLE_RATE_HZ * 2 * chunk_s))


def chunk(stream_no: int, chunk_no: int, size: int = CHUNK_BYTES) -> bytes:
    """Silence whose head carries the chunk's tag and length (fake_riva's tagged recognizer echoes
    the tag, and finds each chunk again where a gateway merged several into one request)."""
    return frame_head(tag(stream_no, chunk_no), size) + bytes(size - FRAME_HEAD_BYTES)


def parse_tag(text: str) -> int | None:
    """``t<tag>`` (interim) or ``t<tag> end`` (the final): the tag, or None."""
    if not text.startswith("t"):
        return None
    head = text[1:].split(" ", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass
class StreamRecord:
    """One stream's timeline: when each chunk went out, when its result came back."""

    stream_no: int
    chunks: int
    sent: list[float] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    max_lag_s: float = 0.0
    final_seen: bool = False
    duplicates: int = 0
    foreign: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sent = [math.nan] * self.chunks
        self.received = [math.nan] * self.chunks

    def on_result(self, text: str, at: float) -> None:
        value = parse_tag(text)
        if value is None:
            self.foreign += 1
            return
        if value >> 32 != self.stream_no:
            self.foreign += 1
            return
        if text.endswith(" end"):
            self.final_seen = True
            return
        k = value & 0xFFFFFFFF
        if k >= self.chunks:
            self.foreign += 1
        elif self.received[k] == self.received[k]:  # not NaN: seen before
            self.duplicates += 1
        else:
            self.received[k] = at

    @property
    def missing(self) -> int:
        return sum(1 for r in self.received if r != r)

    @property
    def realtime(self) -> bool:
        return self.max_lag_s <= REALTIME_LAG_S and self.missing == 0 and not self.errors


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class PhaseResult:
    """One phase (through the gateway, or direct to fake_riva) at one N."""

    kind: str  # "gateway" | "direct"
    n: int
    seconds: float
    latencies_ms: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    missing_results: int = 0
    streams_realtime: int = 0
    max_send_lag_ms: float = 0.0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the steady window
    extra: dict[str, Any] = field(default_factory=dict)

    def add_error(self, kind: str, count: int = 1) -> None:
        self.errors += count
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count

    def summarise(self, streams: list[StreamRecord]) -> None:
        latencies: list[float] = []
        for s in streams:
            for sent, got in zip(s.sent, s.received, strict=True):
                if got == got and sent == sent:
                    latencies.append((got - sent) * 1000)
        latencies.sort()
        self.samples = len(latencies)
        self.latencies_ms = {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else math.nan,
        }
        self.missing_results = sum(s.missing for s in streams)
        self.streams_realtime = sum(1 for s in streams if s.realtime)
        self.max_send_lag_ms = max((s.max_lag_s for s in streams), default=0.0) * 1000
        if self.missing_results:
            self.add_error("missing_result", self.missing_results)
        for s in streams:
            if s.duplicates:
                self.add_error("duplicate_result", s.duplicates)
            if s.foreign:
                self.add_error("foreign_result", s.foreign)
            if not s.final_seen:
                self.add_error("no_final")
            for e in s.errors:
                self.add_error(e)
