"""Several Riva targets: new streams go to the healthy one with the fewest streams.

Health is learnt from failures (a target whose stream failed rests for a cool-down that
grows while it keeps failing) and probed with ``GetRivaSpeechRecognitionConfig`` in the
background, so a target that comes back is used again without waiting for a session to
gamble on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from service.errors import ReserveError
from service.riva.channel import RivaTarget
from service.riva.probe import probe

log = logging.getLogger("reserve.riva")
COOLDOWN_FIRST_S = 2.0
COOLDOWN_MAX_S = 30.0
MAX_DOUBLINGS = 8  # past this the cool-down is at its most anyway; 2.0 ** 1024 is not a float


class Probe(Protocol):
    """Asks one target whether it answers; raises a ReserveError when it does not."""

    async def __call__(self, target: RivaTarget, *, timeout_s: float) -> object: ...


@dataclass(slots=True)
class _Health:
    target: RivaTarget
    streams: int = 0
    failures: int = 0
    down_until: float = 0.0  # monotonic time before which new streams avoid it

    @property
    def healthy(self) -> bool:
        return time.monotonic() >= self.down_until


class TargetPool:
    def __init__(self, targets: Sequence[RivaTarget]) -> None:
        if not targets:
            raise ValueError("at least one Riva target is needed")
        self._health = [_Health(t) for t in targets]
        self._next = 0

    def __iter__(self) -> Iterator[RivaTarget]:
        return (h.target for h in self._health)

    @property
    def uris(self) -> str:
        return ",".join(h.target.uri for h in self._health)

    def pick(self) -> RivaTarget:
        """The healthy target with the fewest streams (round-robin among equals); when none
        is healthy, the one that has rested longest, since some answer beats none."""
        count = len(self._health)
        order = [self._health[(self._next + i) % count] for i in range(count)]
        self._next = (self._next + 1) % count
        healthy = [h for h in order if h.healthy]
        chosen = min(healthy, key=lambda h: h.streams) if healthy else min(order, key=lambda h: h.down_until)
        return chosen.target

    def opened(self, target: RivaTarget) -> None:
        self._find(target).streams += 1

    def closed(self, target: RivaTarget) -> None:
        self._find(target).streams -= 1

    def failed(self, target: RivaTarget) -> None:
        health = self._find(target)
        health.failures += 1
        cooldown = min(COOLDOWN_MAX_S, COOLDOWN_FIRST_S * 2 ** min(health.failures - 1, MAX_DOUBLINGS))
        health.down_until = time.monotonic() + cooldown
        if len(self._health) > 1:
            log.warning("Riva target %s marked down for %.0f s", target.uri, cooldown)

    def succeeded(self, target: RivaTarget) -> None:
        health = self._find(target)
        if health.failures:
            log.info("Riva target %s is answering again", target.uri)
        health.failures = 0
        health.down_until = 0.0

    async def probe_down_targets(self, *, interval_s: float, timeout_s: float, ask: Probe = probe) -> None:
        """Runs for the gateway's lifetime: ask resting targets whether they are back (through
        ``ask``: the transport's own probe, so "back" means back for its streams)."""
        while True:
            await trio.sleep(interval_s)
            for health in self._health:
                if health.failures:
                    try:
                        await ask(health.target, timeout_s=timeout_s)
                    except ReserveError:
                        continue
                    self.succeeded(health.target)

    def close(self) -> None:
        for health in self._health:
            health.target.close()

    def _find(self, target: RivaTarget) -> _Health:
        for health in self._health:
            if health.target is target:
                return health
        raise KeyError(target.uri)
