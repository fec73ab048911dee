"""Structured logs: one format for the service and hypercorn, readable text or JSON lines.

``configure_logging`` (called by ``create_app``) gives the root logger one handler of
ours; hypercorn's ``hypercorn.access`` and ``hypercorn.error`` loggers propagate to it
instead of printing on their own (hypercorn adds a handler to each *after* the app is
imported, so ``hypercorn.toml`` re-applies this through ``logconfig_dict``, which
hypercorn runs last). Context such as ``session_id`` travels as a structured ``extra``:
JSON lines carry it as a key. Anything that looks like ``token=...`` is redacted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HYPERCORN_LOGGERS = ("hypercorn.access", "hypercorn.error")
_TOKEN = re.compile(r"(?i)(token=)[^&\s\"'#]+")
_SECRET_HEADER = re.compile(r"(?i)(authorization:?\s*bearer\s+)\S+")
_SUBPROTOCOL_TOKEN = re.compile(r"(\btoken\.)[A-Za-z0-9_~-][A-Za-z0-9._~-]*")  # Sec-WebSocket-Protocol: token.<t>
_SIGNED_TOKEN = re.compile(r"\brsv1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # service/auth/tokens.py, wherever it appears
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OURS = "_reserve_handler"
_format: LogFormat = "text"


def redact(text: str) -> str:
    """Credentials never reach a log line: ``token=abc`` becomes ``token=REDACTED`` (likewise
    ``Bearer``, a ``token.<t>`` subprotocol and a signed ``rsv1.`` token)."""
    text = _SIGNED_TOKEN.sub("rsv1.REDACTED", text)
    text = _SUBPROTOCOL_TOKEN.sub(r"\1REDACTED", text)
    return _SECRET_HEADER.sub(r"\1REDACTED", _TOKEN.sub(r"\1REDACTED", text))


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, pid, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,  # which worker, when several serve one port
        }
        for key, value in extras(record).items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For people: the usual one-line format; ``session_id`` is added when the message lacks it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        session_id = getattr(record, "session_id", None)
        if session_id and str(session_id) not in line:
            line += f" session_id={session_id}"
        return line


class AccessLogFilter(logging.Filter):
    """hypercorn's access lines: the token redacted, and the request as structured fields.

    hypercorn also logs a line with status ``-`` whenever a connection closes before it
    marked the response done, which happens after most complete responses too (a race
    in hypercorn, not a failure). Those lines are DEBUG, shown with RESERVE_LOG_LEVEL=DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms: Mapping[str, Any] | None = record.args if isinstance(record.args, Mapping) else None
        if atoms is not None and atoms["s"] == "-":
            if not logging.getLogger("reserve").isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg = redact(record.getMessage())
        record.args = None
        if atoms is not None:
            record.method = atoms["m"]
            record.path = atoms["U"]
            record.query = redact(atoms["q"])
            record.status = int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"]
            record.duration_ms = round(int(atoms["D"]) / 1000, 3)
            record.client = atoms["h"]
            record.protocol = atoms["H"]
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        setattr(self, _OURS, True)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def make_formatter(log_format: LogFormat | None = None) -> logging.Formatter:
    return JsonFormatter() if (log_format or _format) == "json" else TextFormatter()


def make_handler() -> logging.Handler:
    """The one handler every log line goes through (also named in hypercorn.toml)."""
    handler = _StderrHandler()
    handler.setFormatter(make_formatter())
    return handler


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Idempotent: one handler of ours on the root logger, hypercorn's loggers feeding it."""
    global _format
    _format = log_format
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
    root.addHandler(make_handler())
    logging.getLogger("reserve").setLevel(level)
    logging.getLogger("fake_riva").setLevel(level)
    for name in HYPERCORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = True
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    access = logging.getLogger("hypercorn.access")
    if not any(isinstance(f, AccessLogFilter) for f in access.filters):
        access.addFilter(AccessLogFilter())
