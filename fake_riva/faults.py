"""Fault injection: how a stream should misbehave, from per-stream keys or server flags.

Keys (in ``custom_configuration``, or as server-wide ``--fault key=value``):
``fake.refuse`` (a gRPC code name: fail at stream start), ``fake.fail_after_chunks``
with ``fake.fail_code`` (default UNAVAILABLE), ``fake.delay_ms`` (before each result),
``fake.stall`` (accept audio, answer nothing), ``fake.end_after_chunks`` (end the
stream early and cleanly, like Riva's idle timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    end_after_chunks: int | None = None

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
                end_after_chunks=_int(merged.get("fake.end_after_chunks")),
            )
        except (KeyError, ValueError) as exc:
            raise BadFault(f"bad fault setting: {exc}") from exc


def _code(name: str) -> grpc.StatusCode:
    return grpc.StatusCode[name.upper()]


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
