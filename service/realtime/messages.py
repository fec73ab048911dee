"""Client events on a realtime socket: pure parsing and validation, and the server's ``error`` event.

Every problem is an ``EventError``: the connection answers it with a typed ``error`` event
(``type``, ``code``, ``message``, ``param``, ``event_id``) and stays open.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

import msgspec

from service.errors import ReserveError

CLIENT_ERROR = "invalid_request_error"
SERVER_ERROR = "server_error"


class EventError(Exception):
    """A client event the gateway cannot act on; the socket stays open."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        kind: str = CLIENT_ERROR,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id
        self.kind = kind

    @classmethod
    def from_reserve(cls, error: ReserveError, *, event_id: str | None = None) -> EventError:
        kind = CLIENT_ERROR if error.http_status < 500 else SERVER_ERROR
        return cls(error.code, error.message, event_id=event_id, kind=kind)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def error_event(error: EventError) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": error.kind,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": error.event_id,
        },
    }


def parse_client_event(message: str | bytes | None, *, max_bytes: int) -> dict[str, Any]:
    """A JSON object with a string ``type``; anything else is an ``EventError``. (Quart hands an
    empty frame over as ``None``.)"""
    if not message:
        raise EventError("invalid_event", "an empty frame is not an event")
    if isinstance(message, bytes):
        raise EventError("invalid_event", "send events as JSON text frames; binary frames are not part of this API")
    if len(message) > max_bytes:
        raise EventError("event_too_large", f"client events are at most {max_bytes} bytes; got {len(message)}")
    try:
        event = msgspec.json.decode(message)
    except msgspec.DecodeError as exc:
        raise EventError("invalid_json", f"the event is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EventError("invalid_event", "an event is a JSON object")
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    if not isinstance(event.get("type"), str):
        raise EventError("invalid_event", 'an event needs a string "type"', param="type", event_id=event_id)
    return event


def event_id_of(event: dict[str, Any]) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None


def decode_audio(event: dict[str, Any], *, max_bytes: int) -> bytes:
    """The base64 ``audio`` of an ``input_audio_buffer.append``, at most ``max_bytes`` decoded."""
    event_id = event_id_of(event)
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise EventError("invalid_audio", '"audio" must be a base64 string', param="audio", event_id=event_id)
    if len(audio) // 4 * 3 > max_bytes + 2:  # judged before decoding anything
        raise EventError(
            "audio_too_large",
            f"one append carries at most {max_bytes} bytes of audio; split it into smaller appends",
            param="audio",
            event_id=event_id,
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("invalid_audio", '"audio" is not valid base64', param="audio", event_id=event_id) from None


def section(payload: dict[str, Any], name: str, *, param: str, event_id: str | None) -> dict[str, Any] | None:
    """An optional object member (``None`` when absent or null)."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EventError("invalid_value", f"{param} must be an object", param=param, event_id=event_id)
    return value
