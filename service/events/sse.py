"""Server-Sent Events framing: pure functions from events to bytes."""

from __future__ import annotations

from service.errors import BadRequest

HEARTBEAT = b": keepalive\n\n"
RETRY_MS = 2000


def frame(event_id: int, name: str, data_json: bytes) -> bytes:
    """One event; ``data_json`` is compact JSON, so it never holds a newline."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), data_json)


def gap(missing_from: int, resumes_at: int) -> bytes:
    """A ``gap`` event (no id): events ``missing_from`` up to ``resumes_at`` - 1 are gone."""
    data = b'{"code":"history_lost","missing_from":%d,"resumes_at":%d,"message":"these events are no longer stored"}'
    return b"event: gap\ndata: %s\n\n" % (data % (missing_from, resumes_at))


def preamble() -> bytes:
    """Sent first: flushes headers through proxies and sets the client's reconnect delay."""
    return b"retry: %d\n: stream open\n\n" % RETRY_MS


def parse_last_event_id(header: str | None, query: str | None) -> int:
    """The id to resume after (0: from the start). The header wins, as EventSource sets it."""
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return 0
    assert raw is not None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID must be a non-negative integer event id, got {raw[:40]!r}")
    return int(raw)


def frame_data(frame: bytes) -> bytes:
    """The JSON of a frame built by ``frame`` (protocol adapters read events back as data)."""
    start = frame.index(b"\ndata: ") + 7
    return frame[start:-2]
