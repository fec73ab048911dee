"""A session as a record any instance can read: what it is, where it stands, who may open it.

The owner writes the record with its events (shared mode); another instance reads it to
answer ``GET``, to check a token, or to take the session over. Tokens are kept only as
SHA-256 digests, so Redis never holds a credential.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from service.errors import Forbidden, TooManyReaders, Unauthorized
from service.sessions.config import RecognitionSettings
from service.sessions.state import State

if TYPE_CHECKING:
    from service.events.log import EventLog
    from service.sessions.session import Session


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token(token_digest: str, token: str | None) -> None:
    if not token:
        raise Unauthorized("this session needs its token: Authorization: Bearer <token> or ?token=")
    if not hmac.compare_digest(digest(token).encode(), token_digest.encode()):
        raise Forbidden("the token does not match this session")


def static_fields(session: Session) -> dict[str, str]:
    """What never changes; ``token_hash`` first (the append script checks for it)."""
    return {
        "token_hash": session.token_digest,
        "config": session.config.model_dump_json(),
        "created_at": repr(session.created_at),
        "key_id": session.owner or "",
        "ticket": session.ticket,
    }


def dynamic_fields(session: Session) -> dict[str, str]:
    return {
        "state": session.state.value,
        "end_reason": session.end_reason or "",
        "ended_at": "" if session.ended_at is None else repr(session.ended_at),
        "final_text": session.final_text,
        "seq": str(session.seq),
        "covered": str(session.covered_bytes),
        "counters": msgspec.json.encode(session.counters).decode(),  # dataclasses.asdict cost 10x
        "attached": "1" if session.audio_attached else "",
        "handed_over": "1" if session.handed_over else "",  # its owner let go of it (a move, not a takeover)
    }


def config_of(record: dict[str, str]) -> RecognitionSettings:
    return RecognitionSettings.model_validate_json(record["config"])


def restore(session: Session, record: dict[str, str]) -> None:
    """The parts of a record a new owner takes over as they are."""
    state = State(record.get("state", "waiting"))
    session.state = State.WAITING if state is State.WAITING else State.STREAMING
    session.created_at = float(record.get("created_at", "0"))
    session.owner = record.get("key_id") or None
    session.ticket = record.get("ticket", "")
    counters = json.loads(record.get("counters") or "{}")
    for name, value in counters.items():
        if hasattr(session.counters, name):
            setattr(session.counters, name, value)
    covered = int(record.get("covered", "0"))
    session.counters.audio_bytes = covered  # the client resends from here
    session.covered_bytes_restored = covered


class RemoteSession:
    """A session another instance owns, seen through its record and its shared event log."""

    def __init__(
        self,
        record: dict[str, str],
        session_id: str,
        logs: Callable[[str], EventLog],
        max_readers: int,
    ) -> None:
        self.id = session_id
        self.record = record
        self._logs = logs
        self.owner = record.get("key_id") or None
        self.state = State(record.get("state", "waiting"))
        self._max_readers = max_readers

    @property
    def log(self) -> EventLog:
        """This process's view of the session's shared log (made when a reader asks for it)."""
        return self._logs(self.id)

    @property
    def readers(self) -> int:
        return int(getattr(self.log, "readers", 0))

    @readers.setter
    def readers(self, value: int) -> None:
        self.log.readers = value  # type: ignore[attr-defined]

    def check_token(self, token: str | None) -> None:
        check_token(self.record.get("token_hash", ""), token)

    def check_reader_room(self) -> None:
        if self.readers >= self._max_readers:
            raise TooManyReaders(f"at most {self._max_readers} event streams may follow one session", retry_after_s=5)

    def describe(self) -> dict[str, Any]:
        record = self.record
        ended_at = record.get("ended_at")
        return {
            "id": self.id,
            "state": self.state.value,
            "end_reason": record.get("end_reason") or None,
            "created_at": float(record.get("created_at", "0")),
            "ended_at": float(ended_at) if ended_at else None,
            "final_transcript": record.get("final_text", ""),
            "last_event_id": int(record.get("last_id", "0")),
            "audio_attached": bool(record.get("attached")),
            "readers": self.readers,
            "counters": json.loads(record.get("counters") or "{}"),
            "config": config_of(record).model_dump(),
        }
