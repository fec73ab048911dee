"""Prometheus metrics: one registry per app, fed by one-line hooks.

Every ``Metrics`` owns its own ``CollectorRegistry`` (several apps in one test
process must not share counters). Sessions get a ``SessionObserver`` that keeps the
few timestamps latency needs; the registry calls ``Metrics`` directly. Gauges that
mirror state owned elsewhere (live sessions, SSE readers, worker threads)
are read at scrape time, so they can never drift from the truth. Labels are
low-cardinality only: outcome, reason, kind, encoding, codes; never session ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

import prometheus_client
import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.errors import ReserveError

# counters' *_created timestamps only double the exposition; nobody here graphs them
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class SessionCounts(Protocol):
    """What the scrape reads from the session registry."""

    @property
    def live_sessions(self) -> int: ...

    @property
    def retained_sessions(self) -> int: ...

    @property
    def sse_readers(self) -> int: ...


class Metrics:
    """The gateway's metrics and the methods that move them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_created = Counter("reserve_sessions_created", "Sessions created", registry=r)
        self.sessions_finished = Counter(
            "reserve_sessions_finished",
            "Sessions that ended, by outcome (finished, failed, cancelled) and end reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.session_errors = Counter(
            "reserve_session_errors", "Errors that ended a session, by error code", ["code"], registry=r
        )
        self.audio_seconds = Tallies(
            "reserve_audio_received_seconds",
            "Seconds of audio received from clients (fixed-rate encodings; compressed audio counts in bytes only)",
            registry=r,
        )
        self.audio_bytes = Tallies(
            "reserve_audio_received_bytes", "Audio bytes received from clients, by encoding", ["encoding"], registry=r
        )
        self.adapter_sessions = Counter(
            "reserve_adapter_sessions",
            "Sessions opened through a compatibility endpoint: openai, openai-beta, nvidia, transcriptions",
            ["protocol"],
            registry=r,
        )
        self.realtime_errors = Counter(
            "reserve_realtime_errors", "error events sent on realtime sockets, by code", ["code"], registry=r
        )
        self.results = Tallies(
            "reserve_results", "Transcript results published to clients, by kind (interim, final)", ["kind"], registry=r
        )
        self.dropped_interims = Counter(
            "reserve_interims_dropped",
            "Interim results not logged because a session's event log was full (counted when the session ends)",
            registry=r,
        )
        self.riva_errors = Counter(
            "reserve_riva_errors",
            "Failed Riva streams, by gRPC status code ('none': failed without one, e.g. an unreadable answer)",
            ["grpc_code"],
            registry=r,
        )
        self.riva_reconnects = Counter(
            "reserve_riva_reconnects", "Times a session lost its Riva stream and began reconnecting", registry=r
        )
        self.first_result = Histogram(
            "reserve_first_result_seconds",
            "Time from a session's first audio frame to its first transcript result "
            "(an interim; a final when interims are off)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "reserve_final_latency_seconds",
            "Time from the end of a stream's audio (trigger: end or finalize) until Riva has sent all its finals",
            ["trigger"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.chunk_latency = Histogram(
            "reserve_chunk_to_result_seconds",
            "Approximate: time from the oldest audio chunk handed to the Riva stream since the previous result "
            "to the next result (includes queueing and Riva's buffering; replayed audio is not timed)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_round_trips = Counter(
            "reserve_redis_round_trips", "Redis round trips that succeeded, by what they did", ["op"], registry=r
        )
        self.redis_errors = Counter(
            "reserve_redis_errors", "Redis round trips that failed, by what they tried", ["op"], registry=r
        )
        self.redis_batch_events = Histogram(
            "reserve_redis_batch_events",
            "Events written to Redis per publish batch (one script call for every session with something new)",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
            registry=r,
        )
        self.sessions_moved = Counter(
            "reserve_sessions_moved",
            "Sessions taken over by this instance: 'move' (its owner handed over) or 'takeover' (its owner was gone)",
            ["kind"],
            registry=r,
        )
        self.redis_followed_events = Counter(
            "reserve_redis_followed_events",
            "Events this process read from the Redis stream of a session another process owns",
            registry=r,
        )
        self.worker_handoffs = Counter(
            "reserve_worker_handoffs",
            "Connections handed between the workers of one supervisor to their session's home: 'sent', "
            "'received', or 'failed' (the sibling was gone or busy; served by the worker that accepted it)",
            ["way"],
            registry=r,
        )
        self._watched = _Watched()
        r.register(self._watched)
        for standard in (ProcessCollector, PlatformCollector, GCCollector):  # process_*, python_*
            standard(registry=r)

    # -- wiring ---------------------------------------------------------------------
    def watch(self, sessions: SessionCounts, limiter: trio.CapacityLimiter) -> None:
        """Read live sessions and worker threads from their owners at every scrape."""
        self._watched.sessions = sessions
        self._watched.limiter = limiter

    def exposition(self) -> bytes:
        """The text format a Prometheus server scrapes."""
        return generate_latest(self.registry)

    def observe_session(self, bytes_per_second: int | None, encoding: str) -> SessionObserver:
        return SessionObserver(self, bytes_per_second, encoding)

    # -- events without a session's timings -------------------------------------------
    def session_created(self) -> None:
        self.sessions_created.inc()

    def adapter_session(self, protocol: str) -> None:
        self.adapter_sessions.labels(protocol).inc()

    def realtime_error(self, code: str) -> None:
        self.realtime_errors.labels(code).inc()

    def riva_error(self, error: ReserveError) -> None:
        """One failed Riva stream (whether or not the session survives it by reconnecting)."""
        self.riva_errors.labels(str(error.details.get("grpc_code", "none"))).inc()

    def redis_round_trip(self, op: str) -> None:
        self.redis_round_trips.labels(op).inc()

    def redis_error(self, op: str) -> None:
        self.redis_errors.labels(op).inc()

    def redis_batch(self, events: int) -> None:
        self.redis_batch_events.observe(events)

    def redis_takeover(self, kind: str) -> None:
        self.sessions_moved.labels(kind).inc()

    def redis_followed(self, events: int) -> None:
        self.redis_followed_events.inc(events)

    def worker_handoff(self, way: str) -> None:
        self.worker_handoffs.labels(way).inc()

    def riva_reconnect(self) -> None:
        """A session lost its Riva stream and starts reconnecting (once per outage, not per attempt)."""
        self.riva_reconnects.inc()


class SessionObserver:
    """One session's timestamps: first audio, oldest unanswered chunk, end of audio.

    Every hook runs in the trio thread (results arrive there through ``run_sync_soon``).
    """

    __slots__ = (
        "_audio_bytes",
        "_audio_seconds",
        "_encoding",
        "_ended",
        "_final",
        "_first_audio",
        "_first_result_seen",
        "_interim",
        "_metrics",
        "_rate",
        "_unanswered",
    )

    def __init__(self, metrics: Metrics, bytes_per_second: int | None, encoding: str) -> None:
        self._metrics = metrics
        self._rate = bytes_per_second
        self._encoding = encoding
        self._first_audio: float | None = None
        self._first_result_seen = False
        self._unanswered: float | None = None
        self._ended: tuple[float, str] | None = None
        # labelled children looked up once per session, not per chunk (labels() costs ~0.7 µs)
        self._audio_bytes = metrics.audio_bytes.labels(encoding)
        self._audio_seconds = metrics.audio_seconds.labels()
        self._interim = metrics.results.labels("interim")
        self._final = metrics.results.labels("final")

    def audio(self, size: int) -> None:
        """A client's audio frame entered the session."""
        if self._first_audio is None:
            self._first_audio = time.monotonic()
        self._audio_bytes.value += size
        if self._rate:
            self._audio_seconds.value += size / self._rate

    def forwarded(self) -> None:
        """A chunk goes to the Riva stream (queued for it, if the stream is still opening)."""
        if self._unanswered is None:
            self._unanswered = time.monotonic()

    def result(self, is_final: bool) -> None:
        """A transcript result was published to the session's readers."""
        now = time.monotonic()
        m = self._metrics
        (self._final if is_final else self._interim).value += 1
        if not self._first_result_seen and self._first_audio is not None:
            self._first_result_seen = True
            m.first_result.observe(now - self._first_audio)
        if self._unanswered is not None:
            m.chunk_latency.observe(now - self._unanswered)
            self._unanswered = None

    def riva_error(self, error: ReserveError) -> None:
        self._metrics.riva_error(error)

    def end_of_audio(self, trigger: str) -> None:
        """The stream's input was closed (``end`` or ``finalize``); its finals are due."""
        self._ended = (time.monotonic(), trigger)
        self._unanswered = None

    def flushed(self) -> None:
        """Riva ended the stream after sending its finals."""
        if self._ended is not None:
            started, trigger = self._ended
            self._metrics.final_latency.labels(trigger).observe(time.monotonic() - started)
            self._ended = None

    def ended(self, outcome: str, reason: str, error: ReserveError | None, dropped_interims: int) -> None:
        """The session's ``end`` event is in its log."""
        m = self._metrics
        m.sessions_finished.labels(outcome, reason).inc()
        if error is not None:
            m.session_errors.labels(error.code).inc()
        if dropped_interims:
            m.dropped_interims.inc(dropped_interims)


class _Watched(Collector):
    """Gauges read from their owners when Prometheus scrapes."""

    def __init__(self) -> None:
        self.sessions: SessionCounts | None = None
        self.limiter: trio.CapacityLimiter | None = None

    def collect(self) -> Iterable[Metric]:
        sessions, limiter = self.sessions, self.limiter
        yield GaugeMetricFamily(
            "reserve_sessions_active",
            "Sessions not yet ended (waiting, streaming or finishing)",
            value=sessions.live_sessions if sessions else 0,
        )
        yield GaugeMetricFamily(
            "reserve_sessions_retained",
            "Ended sessions whose events are still readable (RESERVE_SESSION_RETENTION_S)",
            value=sessions.retained_sessions if sessions else 0,
        )
        yield GaugeMetricFamily(
            "reserve_sse_readers",
            "Event streams (SSE responses) open now",
            value=sessions.sse_readers if sessions else 0,
        )
        yield GaugeMetricFamily(
            "reserve_riva_streams_open",
            "Riva streams open now (with RESERVE_RIVA_TRANSPORT=threads, one worker thread each)",
            value=limiter.borrowed_tokens if limiter else 0,
        )
        yield GaugeMetricFamily(
            "reserve_riva_streams_capacity",
            "Riva streams the gateway allows at once (RESERVE_MAX_SESSIONS)",
            value=limiter.total_tokens if limiter else 0,
        )


class Tally:
    """One counter of a ``Tallies`` family: a plain number, added to from the trio thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class Tallies(Collector):
    """A counter family for what moves on every audio frame or result. prometheus_client's
    ``Counter.inc`` takes a lock and checks its arguments each time, a few per cent of the
    gateway's thread at 100 streams; every hook that adds to these runs in the trio thread,
    and so does the scrape that reads them."""

    def __init__(
        self, name: str, documentation: str, labelnames: Iterable[str] = (), *, registry: CollectorRegistry
    ) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, list(labelnames)
        self._tallies: dict[tuple[str, ...], Tally] = {}
        if not self._labelnames:
            self.labels()  # an unlabelled counter is exposed from the start, at 0
        registry.register(self)

    def labels(self, *values: str) -> Tally:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
        return self._tallies.setdefault(values, Tally())

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, tally in self._tallies.items():
            family.add_metric(list(values), tally.value)
        yield family
