"""What every session shares (settings, Riva, metrics, shared state), and a session's counters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.events.wakes import Wakes
from service.observability.metrics import Metrics
from service.riva.stream import Transport
from service.riva.targets import TargetPool
from service.settings import Settings
from service.shared.base import KeyCounters

if TYPE_CHECKING:
    from service.shared.redis.hub import RedisHub


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every session shares: settings, the Riva targets, the transport streams go through,
    and (shared mode) the link to Redis and the per-key counters a session's end releases."""

    settings: Settings
    targets: TargetPool
    transport: Transport
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    hub: RedisHub | None = None
    counters: KeyCounters | None = None
    wakes: Wakes | None = None  # in-memory logs' readers woken together (None: at every event)


@dataclass(slots=True)
class Counters:
    audio_bytes: int = 0
    audio_frames: int = 0
    riva_streams: int = 0
    reconnects: int = 0
    interim_results: int = 0
    final_results: int = 0
    dropped_interims: int = 0
    replay_dropped_bytes: int = 0
