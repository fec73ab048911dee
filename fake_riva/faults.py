"""Fault injection: how a stream should misbehave, from per-stream keys or server flags.

Keys (in ``custom_configuration``, or as server-wide ``--fault key=value``):

- ``fake.refuse``: a gRPC code name; fail at stream start.
- ``fake.fail_after_chunks`` with ``fake.fail_code`` (default UNAVAILABLE): fail mid-stream.
- ``fake.delay_ms``: wait before each result.
- ``fake.stall`` (or ``fake.stall_after_chunks``): accept audio, answer nothing, never finish.
- ``fake.end_after_chunks``: end the stream early and cleanly.
- ``fake.idle_timeout_ms``: end the stream cleanly when no audio came for that long (Riva's idle timeout).
- ``fake.fault_times`` with ``fake.fault_id``: inject the refuse/fail/stall faults into only the
  first N streams carrying the same id, so that a reconnect can succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

import grpc


class BadFault(ValueError):
    """A fault key has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Faults:
    refuse: grpc.StatusCode | None = None
    fail_after_chunks: int | None = None
    fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    delay_s: float = 0.0
    stall: bool = False
    stall_after_chunks: int | None = None
    end_after_chunks: int | None = None
    idle_timeout_s: float | None = None
    fault_times: int | None = None
    fault_id: str = ""

    def without_failures(self) -> Faults:
        return replace(self, refuse=None, fail_after_chunks=None, stall=False, stall_after_chunks=None)

    @classmethod
    def parse(cls, *sources: Mapping[str, str]) -> Faults:
        """Merge sources left to right (server flags, then the stream's own keys)."""
        merged: dict[str, str] = {}
        for source in sources:
            merged.update({k: v for k, v in source.items() if k.startswith("fake.")})
        try:
            return cls(
                refuse=_code(merged["fake.refuse"]) if "fake.refuse" in merged else None,
                fail_after_chunks=_int(merged.get("fake.fail_after_chunks")),
                fail_code=_code(merged.get("fake.fail_code", "UNAVAILABLE")),
                delay_s=(_int(merged.get("fake.delay_ms")) or 0) / 1000,
                stall=merged.get("fake.stall", "false").lower() in ("1", "true", "yes"),
                stall_after_chunks=_int(merged.get("fake.stall_after_chunks")),
                end_after_chunks=_int(merged.get("fake.end_after_chunks")),
                idle_timeout_s=(_int(merged.get("fake.idle_timeout_ms")) or 0) / 1000 or None,
                fault_times=_int(merged.get("fake.fault_times")),
                fault_id=merged.get("fake.fault_id", ""),
            )
        except (KeyError, ValueError) as exc:
            raise BadFault(f"bad fault setting: {exc}") from exc


class FaultBudget:
    """Counts injected faults per ``fake.fault_id`` across streams (thread-safe)."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, faults: Faults) -> bool:
        """Whether this stream gets the refuse/fail faults."""
        if faults.fault_times is None:
            return True
        with self._lock:
            used = self._used.get(faults.fault_id, 0)
            if used >= faults.fault_times:
                return False
            self._used[faults.fault_id] = used + 1
            return True


def _code(name: str) -> grpc.StatusCode:
    return grpc.StatusCode[name.upper()]


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
