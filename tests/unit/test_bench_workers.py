"""The benchmark's multi-worker accounting: a supervisor's figures include its workers, and the
report names the mode of each row (a wrong sum would quietly halve ``--workers 2``'s CPU)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psutil

from bench.meter import rss_threads, tree_rss_threads
from bench.procs import cpu_seconds, tree, tree_cpu_seconds
from bench.report import markdown


def test_tree_counts_every_descendant_process() -> None:
    me = psutil.Process()
    grandparent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'input()'])"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(grandparent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = {p.pid for p in tree(me)}
        assert grandparent.pid in pids
        assert {c.pid for c in psutil.Process(grandparent.pid).children()} <= pids  # recursive
        assert len(pids) >= 3
        assert tree_rss_threads(me)[0] > rss_threads(me)[0]
        assert tree_rss_threads(me)[1] >= rss_threads(me)[1] + 2
        assert tree_cpu_seconds(me) >= cpu_seconds(me)
    finally:
        grandparent.communicate(b"\n", timeout=10)


def _row(workers: int, redis: bool) -> dict[str, Any]:
    lat = {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    row: dict[str, Any] = {
        "n": 100,
        "transport": "aio",
        "workers": workers,
        "gateway": {"latencies_ms": lat, "streams_realtime": 100, "errors": 0, "cpu_pct_of_core": {"redis": 4.0}},
        "direct": {"latencies_ms": lat, "streams_realtime": 100, "errors": 0},
        "overhead_ms": lat,
        "gateway_cpu": {"pct_core_per_stream": 0.5, "us_per_chunk": 500.0, "cpu_s": 7.0, "by_thread_s": {}},
        "gateway_rss": {"per_session_kib": 260.0},
        "gateway_threads": {"baseline": 21, "peak": 23, "after": 21},
        "sustained": True,
    }
    if redis:
        row["redis_cpu"] = {"pct_core_per_stream": 0.04}
    return row


def test_report_names_mode_and_workers_and_gives_redis_its_column() -> None:
    report = {
        "command": "python -m bench.run --workers 2",
        "date": "2026-11-30",
        "settings": {"seconds": 15, "criteria": "c"},
        "rows": [_row(2, True)],
        "largest_sustained_n": {"aio": 100},
    }
    text = markdown(report)
    assert "| 100 | aio + redis, 2 workers |" in text
    assert "Redis CPU" in text and "| 0.0400 (4) |" in text
    report["rows"] = [_row(1, False)]
    text = markdown(report)
    assert "| 100 | aio |" in text and "Redis CPU" not in text
