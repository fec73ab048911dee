"""Output: the live events as they come (text or JSON lines), and the final transcript as
text, JSON, SubRip (srt) or WebVTT (vtt)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

from service.client.transcript import Result, Transcript

OutputFormat = Literal["text", "json", "srt", "vtt"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "json", "srt", "vtt")
CLEAR_LINE = "\r\x1b[2K"
MAX_CUE_WORDS = 12  # a subtitle line longer than this is split at word times
MAX_CUE_S = 6.0


def parse_event_id(raw: str) -> int | str | None:
    if not raw:
        return None
    return int(raw) if raw.isdigit() else raw


def format_event_json(name: str, event_id: int | str | None, data: Any) -> str:
    """One line of ``--json`` output: ``{"event": name, "id": id, "data": {...}}``."""
    return json.dumps({"event": name, "id": event_id, "data": data}, ensure_ascii=False, separators=(",", ":"))


def fit_line(text: str, width: int) -> str:
    """The end of ``text`` in at most ``width - 1`` columns (an interim line must not wrap)."""
    text = " ".join(text.split())
    room = max(width - 1, 1)
    if len(text) <= room:
        return text
    return "…" + text[-(room - 1) :] if room > 1 else text[-1:]


class EventPrinter(Protocol):
    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullPrinter:
    """Prints nothing (a library caller that only wants the Transcript)."""

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonPrinter:
    """``--json``: every event as one JSON object per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        self.out.write(format_event_json(name, event_id, data) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class TextPrinter:
    """Finals as lines; on a terminal the current interim is redrawn in place below them."""

    def __init__(self, out: TextIO, *, tty: bool | None = None, width: Callable[[], int] | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.width = width or (lambda: shutil.get_terminal_size().columns)
        self._interim_shown = False

    def event(self, name: str, event_id: int | str | None, data: dict[str, Any]) -> None:
        if name != "transcript":
            return  # errors and the end are reported by the caller, on stderr / the exit status
        text = str(data.get("text") or "").strip()
        if data.get("is_final"):
            self._clear()
            if text:
                self.out.write(text + "\n")
        elif self.tty and text:
            self.out.write(CLEAR_LINE + fit_line(text, self.width()))
            self._interim_shown = True
        self.out.flush()

    def _clear(self) -> None:
        if self._interim_shown:
            self.out.write(CLEAR_LINE)
            self._interim_shown = False

    def close(self) -> None:
        self._clear()
        self.out.flush()


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """Subtitle cues: one per final, split at word times when it is long."""
    out: list[tuple[float, float, str]] = []
    for result in transcript.results:
        out.extend(_split(result))
    return out


def _split(result: Result) -> list[tuple[float, float, str]]:
    if not result.words:
        return [(result.start_s, result.end_s, result.text)]
    pieces: list[tuple[float, float, str]] = []
    group: list[Any] = []
    for word in result.words:
        if group and (len(group) >= MAX_CUE_WORDS or word.end_s - group[0].start_s > MAX_CUE_S):
            pieces.append((group[0].start_s, group[-1].end_s, " ".join(w.text for w in group)))
            group = []
        group.append(word)
    pieces.append((group[0].start_s, group[-1].end_s, " ".join(w.text for w in group)))
    if len(pieces) == 1:  # keep the final's own text (punctuation, capitals)
        return [(pieces[0][0], pieces[0][1], result.text)]
    return pieces


def render_transcript(transcript: Transcript, fmt: OutputFormat) -> str:
    """The final transcript as a file's contents in ``fmt``."""
    if fmt == "json":
        return json.dumps(transcript.to_json(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        blocks = [
            f"{n}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
            for n, (start, end, text) in enumerate(cues(transcript), start=1)
        ]
        return "\n".join(blocks)
    if fmt == "vtt":
        blocks = [
            f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n" for start, end, text in cues(transcript)
        ]
        return "WEBVTT\n\n" + "\n".join(blocks)
    return "".join(f"{result.text}\n" for result in transcript.results)
