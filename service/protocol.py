"""The audio WebSocket's control messages: pure parsing, no sockets."""

from __future__ import annotations

import enum

import msgspec

from service.errors import BadMessage

MAX_CONTROL_BYTES = 4096


class Control(enum.Enum):
    END = "end"  # no more audio: flush finals, then the session finishes
    FINALIZE = "finalize"  # finals now, then continue on a fresh Riva stream
    KEEPALIVE = "keepalive"


class _Message(msgspec.Struct, forbid_unknown_fields=False):
    type: str


_decoder = msgspec.json.Decoder(_Message)


def parse_control(text: str) -> Control:
    """Parse a text frame; raise BadMessage saying what is wrong."""
    if len(text) > MAX_CONTROL_BYTES:
        raise BadMessage(f"control messages are at most {MAX_CONTROL_BYTES} bytes")
    try:
        message = _decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise BadMessage(f'control message must be a JSON object with a string "type": {exc}') from exc
    except msgspec.DecodeError as exc:
        raise BadMessage(f"control message is not valid JSON: {exc}") from exc
    try:
        return Control(message.type)
    except ValueError:
        known = ", ".join(c.value for c in Control)
        raise BadMessage(f"unknown control message type {message.type!r}; expected one of {known}") from None
