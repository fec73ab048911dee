"""py-spy on the gateway during a steady window, and a summary of where its samples went."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    """Starts ``py-spy record`` (raw collapsed stacks) when the window opens, one per process.

    ``pids`` is called then, so a supervisor's workers are the ones serving at that moment; each
    process's stacks go to ``out`` with its pid in the name (see ``outputs``).
    """

    pids: Callable[[], list[int]]
    out: Path
    rate_hz: int = 100
    native: bool = False
    gil: bool = True  # sample only the thread holding the GIL: where the Python CPU goes
    blocking: bool = False  # pause the process for each sample: exact stacks, but it slows the gateway
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def __call__(self, window_s: float) -> None:
        for pid in self.pids():
            self._record(pid, window_s)

    def _record(self, pid: int, window_s: float) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        out = self.out.with_name(f"{self.out.stem}-{pid}{self.out.suffix}")
        self.outputs.append(out)
        argv = [exe, "record", "-p", str(pid), "-d", str(max(1, int(window_s) - 1)), "-r", str(self.rate_hz)]
        argv += ["--format", "raw", "-o", str(out)]
        if not self.blocking:  # pausing a process of hundreds of threads for every sample distorts it
            argv.append("--nonblocking")
        if self.native:
            argv.append("--native")
        if self.gil:
            argv.append("--gil")
        argv.append("--threads")  # stacks start with the thread, so the trio and loop threads can be told apart
        self.started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait(self) -> None:
        for p in self.started:
            p.wait(120)


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if m is None:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['fn']} ({path})"


def summarise(raws: list[Path], top: int = 25) -> dict[str, object]:
    """Self and inclusive sample shares per function, and per thread, from py-spy's collapsed stacks.

    Several files (one per worker) are summed: a worker's thread ids are its own, so a thread is
    keyed by file and id.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    per_thread_id: Counter[str] = Counter()
    names: dict[str, str] = {}  # py-spy's thread id -> the thread it is, once a full stack tells
    total = 0
    lines = [(i, line) for i, raw in enumerate(raws) for line in raw.read_text(errors="replace").splitlines()]
    for i, line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f]
        thread = f"{i}:" + next((f for f in raw_frames if f.startswith("thread ")), "?")
        frames = [_short(f) for f in raw_frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        per_thread_id[thread] += count
        if (name := _thread_of(frames)) is not None:
            names[thread] = name
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    by_thread: Counter[str] = Counter()
    for thread, count in per_thread_id.items():
        by_thread[names.get(thread, "other")] += count
    return {
        "samples": total,
        "self": [(f, round(100 * c / total, 1)) for f, c in own.most_common(top)] if total else [],
        "inclusive": [(f, round(100 * c / total, 1)) for f, c in inclusive.most_common(top)] if total else [],
        "by_thread": [(t, round(100 * c / total, 1)) for t, c in by_thread.most_common()] if total else [],
    }


def _thread_of(frames: list[str]) -> str | None:
    """The thread a full stack ran in (nonblocking samples are often cut short: those say nothing)."""
    if any("_riva_aio_loop " in f for f in frames):
        return "aio_loop"
    if any(f.startswith("trio_worker ") for f in frames):
        return "main (trio)"
    return None
