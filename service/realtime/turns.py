"""Reserve's transcript events as realtime turns: items, deltas and completions. Pure: events in,
server events out, no sockets.

**What a delta is.** OpenAI's and NVIDIA's clients append deltas to show a turn's text so far,
and cannot take words back, while Riva revises its interim hypotheses. A delta here is the text
that extends what was already sent for the item, at a word boundary: the deltas of an item
concatenate to a word prefix of Riva's latest hypothesis for it. When Riva revises a word already
sent, no delta goes out until its hypothesis extends the sent text again; the ``completed``
transcript (Riva's final) is what counts, as with OpenAI.

**What a turn is.** With turn detection (``server_vad``, or always with NVIDIA), Riva's endpointing
ends turns: each Riva final is one item. With ``turn_detection: null`` the client's ``commit``
ends the turn (Reserve's ``finalize``) and the item's transcript is every final up to the flush.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from service.realtime.messages import EventError, error_event, new_id

Style = Literal["ga", "beta", "nvidia"]
Event = dict[str, Any]


def delta(sent: str, hypothesis: str) -> str | None:
    """The text to append to ``sent`` to show ``hypothesis``, or None (nothing new, or a revision)."""
    if not sent:
        return hypothesis or None
    if hypothesis.startswith(sent + " "):
        return hypothesis[len(sent) :]
    return None


@dataclass(slots=True)
class _Item:
    id: str
    previous_id: str | None
    start_s: float
    end_s: float = 0.0
    finals: list[str] = field(default_factory=list)
    interim: str = ""
    sent: str = ""
    words: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False  # speech_started sent
    committed: bool = False
    discard: bool = False  # cleared by the client: its results are dropped

    @property
    def text(self) -> str:
        return " ".join(t for t in self.finals if t)

    @property
    def hypothesis(self) -> str:
        return " ".join(t for t in [*self.finals, self.interim] if t)


class Turns:
    def __init__(self, style: Style, *, manual: bool) -> None:
        self.style: Style = style
        self.manual = manual
        self._items: deque[_Item] = deque([_Item(new_id("item"), None, 0.0)])
        self._transcript: list[str] = []  # every final of the connection (NVIDIA's last result)
        self._audio_s = 0.0
        self.audio_since_commit = False

    # -- what the session publishes ------------------------------------------------------
    def transcript(self, data: dict[str, Any]) -> list[Event]:
        item = self._items[0]
        self._audio_s = max(self._audio_s, float(data.get("audio_processed", 0.0)))
        if item.discard:
            if data["is_final"]:
                item.interim = ""
            return []
        out: list[Event] = []
        text = str(data.get("text", "")).strip()
        if not data["is_final"]:
            item.interim = text
            if text and not item.started and not self.manual and self.style != "nvidia":
                item.started = True
                out.append(self._event("input_audio_buffer.speech_started", audio_start_ms=round(item.start_s * 1000)))
                out[-1]["item_id"] = item.id
            out.extend(self._delta(item))
            return out
        item.interim = ""
        item.end_s = self._audio_s
        if text:
            item.finals.append(text)
            self._transcript.append(text)
        item.words.extend(data.get("words", []))
        if self.manual:
            out.extend(self._delta(item))
            return out
        if not item.text and not item.sent:  # Riva finalised silence: no turn
            item.start_s = self._audio_s
            return out
        out.extend(self._stopped(item))
        out.extend(self._delta(item))
        out.extend(self._complete())
        return out

    def flushed(self) -> list[Event]:
        """A client commit's finalize is flushed: its item is complete (manual turns)."""
        if not self._items[0].committed:
            return []
        item = self._items[0]
        if item.discard:
            self._items.popleft()
            self._ensure_open(item)
            return []
        return [*self._delta(item), *self._complete()]

    def ended(self) -> list[Event]:
        """The session ended after the client's end of audio (NVIDIA: the last result)."""
        if self.style != "nvidia":
            return []
        return [
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=self._items[0].id,
                content_index=0,
                transcript=" ".join(self._transcript),
                is_last_result=True,
                words_info={"words": []},
            )
        ]

    def failed(self, error: EventError) -> list[Event]:
        """The session failed: the open turn fails with it."""
        item = self._items[0]
        out = [error_event(error)]
        if self.style != "nvidia" and (item.committed or item.sent):
            failed = self._event(
                "conversation.item.input_audio_transcription.failed",
                item_id=item.id,
                content_index=0,
                error={"type": error.kind, "code": error.code, "message": error.message, "param": None},
            )
            out.append(failed)
        return out

    # -- what the client asks ------------------------------------------------------------
    def commit(self) -> list[Event]:
        """The client committed the buffer: announce the item; it completes when flushed."""
        item = self._items[-1]
        item.committed = True
        self.audio_since_commit = False
        self._items.append(_Item(new_id("item"), item.id, self._audio_s))
        return self._announce(item)

    def clear(self) -> list[Event]:
        """Drop the uncommitted audio's turn: its results are discarded up to the flush."""
        item = self._items[-1]
        item.committed = item.discard = True
        self.audio_since_commit = False
        self._items.append(_Item(new_id("item"), item.previous_id, self._audio_s))
        return [self._event("input_audio_buffer.cleared")]

    # -- building events -----------------------------------------------------------------
    def _delta(self, item: _Item) -> list[Event]:
        more = delta(item.sent, item.hypothesis)
        if more is None:
            return []
        item.sent += more
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta", item_id=item.id, content_index=0, delta=more
            )
        ]

    def _stopped(self, item: _Item) -> list[Event]:
        out: list[Event] = []
        if self.style != "nvidia":
            if not item.started:
                out.append(
                    self._event(
                        "input_audio_buffer.speech_started", audio_start_ms=round(item.start_s * 1000), item_id=item.id
                    )
                )
            stopped = self._event("input_audio_buffer.speech_stopped", audio_end_ms=round(item.end_s * 1000))
            stopped["item_id"] = item.id
            out.append(stopped)
        item.committed = True
        out.extend(self._announce(item))
        return out

    def _announce(self, item: _Item) -> list[Event]:
        if self.style == "nvidia":
            return []
        committed = self._event("input_audio_buffer.committed", item_id=item.id, previous_item_id=item.previous_id)
        name = "conversation.item.added" if self.style == "ga" else "conversation.item.created"
        return [committed, self._event(name, previous_item_id=item.previous_id, item=self._item_object(item, None))]

    def _complete(self) -> list[Event]:
        item = self._items.popleft()
        self._ensure_open(item)
        seconds = round(max(0.0, item.end_s - item.start_s), 3)
        completed = self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=item.text,
        )
        if self.style == "nvidia":
            completed["is_last_result"] = False
            completed["words_info"] = {"words": [nvidia_word(w) for w in item.words]}
            return [completed]
        completed["usage"] = {"type": "duration", "seconds": seconds}
        out = [completed]
        if self.style == "ga":
            out.append(
                self._event(
                    "conversation.item.done", previous_item_id=item.previous_id, item=self._item_object(item, item.text)
                )
            )
        return out

    def _ensure_open(self, done: _Item) -> None:
        if not self._items:
            self._items.append(_Item(new_id("item"), done.id, done.end_s or self._audio_s))
        elif not self._items[0].committed:
            self._items[0].start_s = max(self._items[0].start_s, done.end_s)

    @staticmethod
    def _item_object(item: _Item, transcript: str | None) -> dict[str, Any]:
        return {
            "id": item.id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": transcript}],
        }

    @staticmethod
    def _event(name: str, **fields: Any) -> Event:
        return {"type": name, "event_id": new_id("event"), **fields}


def nvidia_word(word: dict[str, Any]) -> dict[str, Any]:
    return {
        "word": word["word"],
        "start_time": word["start_ms"],
        "end_time": word["end_ms"],
        "confidence": word.get("confidence", 0.0),
        "speaker_tag": word.get("speaker", 0),
    }
