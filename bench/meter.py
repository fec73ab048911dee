"""CPU marks over a steady window, and RSS/thread samples, from the OS (psutil, /proc)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import psutil

from bench.procs import cpu_seconds, thread_cpu, tree, tree_cpu_seconds


@dataclass
class Mark:
    at: float
    cpu: dict[str, float]
    threads: dict[int, tuple[str, float]]
    processes: dict[int, float] = field(default_factory=dict)


def _all_processes() -> dict[int, float]:
    """CPU seconds of every process (pid -> seconds): the machine's load, other people's included.
    (This VM's /proc/stat lags and under-counts, so the machine figure is summed from processes.)"""
    out: dict[int, float] = {}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            out[process.pid] = cpu_seconds(process)
    return out


@dataclass
class Watch:
    """The processes whose CPU a phase reports; ``breakdown`` is the one split by thread group."""

    processes: dict[str, psutil.Process]
    breakdown: str | None = None
    trees: frozenset[str] = frozenset()  # these count their descendants too (several workers)

    def mark(self) -> Mark:
        cpu: dict[str, float] = {}
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.Error):
                cpu[name] = tree_cpu_seconds(process) if name in self.trees else cpu_seconds(process)
        threads: dict[int, tuple[str, float]] = {}
        if self.breakdown is not None:
            with contextlib.suppress(OSError):
                threads = thread_cpu(self.processes[self.breakdown].pid)
        return Mark(time.perf_counter(), cpu, threads, _all_processes())


@dataclass
class Window:
    seconds: float
    cpu_s: dict[str, float]
    thread_cpu_s: dict[str, float]


def window(start: Mark, end: Mark, breakdown: str | None = None) -> Window:
    """CPU per process over the window; for ``breakdown``, also per thread group, and the
    difference to the process total ("rest": threads that ended inside the window, and the
    gap between the scheduler's exact times and the process's tick-based ones)."""
    cpu = {k: end.cpu[k] - start.cpu[k] for k in end.cpu if k in start.cpu}
    if end.processes:  # processes that ended inside the window are missed; new ones count from zero
        cpu["machine"] = sum(v - start.processes.get(pid, 0.0) for pid, v in end.processes.items())
    groups: dict[str, float] = {}
    for tid, (group, seconds) in end.threads.items():
        before = start.threads.get(tid)
        groups[group] = groups.get(group, 0.0) + seconds - (before[1] if before else 0.0)
    if breakdown is not None and breakdown in cpu and end.threads:
        groups["rest"] = cpu[breakdown] - sum(groups.values())
    threads = {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}
    return Window(end.at - start.at, cpu, threads)


@dataclass
class Peaks:
    """RSS and thread count of one process (with ``whole_tree``, summed over it and its
    descendants), sampled through a phase."""

    process: psutil.Process
    rss_max: int = 0
    threads_max: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    whole_tree: bool = False

    def sample(self) -> tuple[int, int]:
        rss, threads = tree_rss_threads(self.process) if self.whole_tree else rss_threads(self.process)
        if not rss:
            return 0, 0
        self.rss_max = max(self.rss_max, rss)
        self.threads_max = max(self.threads_max, threads)
        self.samples.append((time.perf_counter(), rss, threads))
        return rss, threads


def rss_threads(process: psutil.Process) -> tuple[int, int]:
    try:
        with process.oneshot():
            return int(process.memory_info().rss), int(process.num_threads())
    except psutil.Error:
        return 0, 0


def tree_rss_threads(process: psutil.Process) -> tuple[int, int]:
    """RSS and threads summed over the process tree (shared pages count once per process)."""
    rss = threads = 0
    for member in tree(process):
        r, t = rss_threads(member)
        rss, threads = rss + r, threads + t
    return rss, threads
