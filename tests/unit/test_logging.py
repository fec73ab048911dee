"""Log formats and redaction, on real LogRecords and hypercorn's own access-log atoms."""

from __future__ import annotations

import json
import logging
import os

from hypercorn.logging import AccessLogAtoms

from service.observability.logging import AccessLogFilter, JsonFormatter, TextFormatter, redact

ACCESS_FORMAT = '%(h)s "%(R)s" %(s)s %(b)s %(D)sus'


def record(msg: str, *args: object, name: str = "reserve.session", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_redact_hides_tokens_in_queries_and_bearer_headers() -> None:
    assert redact("GET /x?token=abc.DEF-123&last_event_id=4") == "GET /x?token=REDACTED&last_event_id=4"
    assert redact("/y?access_token=zzz") == "/y?access_token=REDACTED"
    assert redact("Authorization: Bearer s3cret") == "Authorization: Bearer REDACTED"
    assert redact("no secrets here") == "no secrets here"


def test_json_lines_carry_extras_as_keys() -> None:
    line = json.loads(JsonFormatter().format(record("session %s created", "abc", session_id="abc")))
    assert line["message"] == "session abc created" and line["session_id"] == "abc"
    assert line["level"] == "INFO" and line["logger"] == "reserve.session" and line["ts"].endswith("+00:00")
    assert line["pid"] == os.getpid()  # tells workers apart


def test_text_lines_add_the_session_id_only_when_the_message_lacks_it() -> None:
    text = TextFormatter()
    assert text.format(record("session %s created", "abc", session_id="abc")).endswith("session abc created")
    assert text.format(record("stream opened", session_id="abc")).endswith("stream opened session_id=abc")


def test_access_lines_are_redacted_and_structured() -> None:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/sessions/abc/events",
        "query_string": b"token=s3cret&last_event_id=2",
        "headers": [(b"authorization", b"Bearer s3cret")],
        "client": ("127.0.0.1", 5000),
    }
    atoms = AccessLogAtoms(scope, {"status": 200, "headers": []}, 0.0125)  # type: ignore[arg-type]
    rec = record(ACCESS_FORMAT, atoms, name="hypercorn.access")
    assert AccessLogFilter().filter(rec)
    line = json.loads(JsonFormatter().format(rec))
    assert (
        line["message"]
        == '127.0.0.1:5000 "GET /v1/sessions/abc/events?token=REDACTED&last_event_id=2 1.1" 200 - 12500us'
    )
    assert line["path"] == "/v1/sessions/abc/events" and line["query"] == "token=REDACTED&last_event_id=2"
    assert (line["status"], line["method"], line["duration_ms"]) == (200, "GET", 12.5)
    assert "s3cret" not in json.dumps(line)


def test_hypercorns_closed_before_done_lines_are_debug_only() -> None:
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/x"}
    atoms = AccessLogAtoms({**scope, "query_string": b"", "headers": [], "client": None}, None, 0.001)  # type: ignore[arg-type]
    reserve = logging.getLogger("reserve")
    level = reserve.level
    try:
        reserve.setLevel(logging.INFO)
        assert not AccessLogFilter().filter(record(ACCESS_FORMAT, atoms, name="hypercorn.access"))
        reserve.setLevel(logging.DEBUG)
        rec = record(ACCESS_FORMAT, atoms, name="hypercorn.access")
        assert AccessLogFilter().filter(rec) and rec.levelname == "DEBUG"
    finally:
        reserve.setLevel(level)
