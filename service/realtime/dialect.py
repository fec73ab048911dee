"""What each realtime dialect must say; the connection speaks through one of these."""

from __future__ import annotations

from typing import Any, Protocol

from service.realtime.config import TranscriptionConfig, vad_endpointing
from service.realtime.messages import EventError
from service.realtime.turns import Event, Style

# client events of OpenAI's conversation API: known, but not part of a transcription session
CONVERSATION_EVENTS = frozenset(
    {
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)


class Dialect(Protocol):
    name: str
    style: Style
    update_type: str  # the client event that configures the session

    def default_config(self) -> TranscriptionConfig: ...

    def greeting(self, config: TranscriptionConfig, session_id: str) -> Event:
        """The first server event, sent on connect."""

    def apply_update(self, config: TranscriptionConfig, session: dict[str, Any], event_id: str | None) -> None:
        """Apply an update's ``session`` to ``config`` (a copy); raise ``EventError`` naming what is refused."""

    def updated(self, config: TranscriptionConfig, session_id: str) -> Event: ...

    def session_object(self, config: TranscriptionConfig, session_id: str) -> dict[str, Any]: ...


def unsupported(param: str, why: str, event_id: str | None) -> EventError:
    return EventError(
        "unsupported_option", f"{param} is not supported by this gateway: {why}", param=param, event_id=event_id
    )


def invalid(param: str, why: str, event_id: str | None) -> EventError:
    return EventError("invalid_value", f"{param}: {why}", param=param, event_id=event_id)


def optional_str(payload: dict[str, Any], name: str, param: str, event_id: str | None) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(param, "must be a string", event_id)
    return value


def apply_turn_detection(config: TranscriptionConfig, value: Any, param: str, event_id: str | None) -> None:
    """``null``: the client commits turns; ``server_vad`` maps onto Riva's endpointing;
    ``semantic_vad`` runs as Riva's own endpointing (Riva has no semantic model)."""
    if value is None:
        config.turn_detection = None
        config.endpointing = {}
        return
    if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
        raise invalid(
            param, 'turn_detection is null, {"type": "server_vad", ...} or {"type": "semantic_vad"}', event_id
        )
    config.turn_detection = dict(value)
    config.endpointing = vad_endpointing(value) if value["type"] == "server_vad" else {}
