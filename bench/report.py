"""``python -m bench.report [results.json ...]``: the results as Markdown tables (for docs/benchmark.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.procs import ROOT


def markdown(report: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = report["rows"]
    s = report["settings"]
    redis = any("redis_cpu" in r for r in rows)  # shared mode: Redis's own CPU gets a column
    lines = [
        f"`{report['command']}` — {report['date']}, gateway: {s.get('gateway_source', '?')} "
        f"({s.get('gateway_app', 'service.app:app')}, repo {s.get('repo_head', '?')}), "
        f"{s['seconds']:g} s per stream, {s.get('results', '')}",
        "",
        "| N | transport | gateway p50 / p95 / p99 ms | direct p50 / p95 / p99 ms | added p50 / p95 / p99 ms "
        "| real-time streams gw / direct | gateway CPU, % of a core per stream | µs CPU per chunk "
        "| RSS per session KiB | threads baseline / peak / after | errors gw / direct "
        "| CPU % of a core: gateway / fake_riva / load gen / all processes | sustained |"
        + (" Redis CPU, % of a core per stream (% of a core) |" if redis else ""),
        "|---:|---|---|---|---|---|---:|---:|---:|---|---|---|---|" + ("---:|" if redis else ""),
    ]
    for r in rows:
        g, d, o = r["gateway"]["latencies_ms"], r["direct"]["latencies_ms"], r["overhead_ms"]
        t = r["gateway_threads"]
        pct = r["gateway"]["cpu_pct_of_core"]
        lines.append(
            f"| {r['n']} | {_name(r)} | {g['p50']:.1f} / {g['p95']:.1f} / {g['p99']:.1f} "
            f"| {d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f} "
            f"| {o['p50']:.1f} / {o['p95']:.1f} / **{o['p99']:.1f}** "
            f"| {r['gateway']['streams_realtime']} / {r['direct']['streams_realtime']} "
            f"| {r['gateway_cpu']['pct_core_per_stream']:.3f} | {r['gateway_cpu']['us_per_chunk']:.0f} "
            f"| {r['gateway_rss']['per_session_kib']:.0f} "
            f"| {t['baseline']} / {t['peak']} / {t['after']} "
            f"| {r['gateway']['errors']} / {r['direct']['errors']} "
            f"| {pct.get('gateway', 0):.0f} / {pct.get('fake_riva', 0):.0f} / {pct.get('loadgen', 0):.0f} "
            f"/ {pct.get('machine', 0):.0f} | {'yes' if r['sustained'] else 'no'} |"
            + (
                f" {r['redis_cpu']['pct_core_per_stream']:.4f} ({pct.get('redis', 0):.0f}) |"
                if "redis_cpu" in r
                else ""
            )
        )
    lines.append("")
    largest = report.get("largest_sustained_n")
    if isinstance(largest, dict):
        largest = ", ".join(f"{t}: {n}" for t, n in largest.items())
    lines.append(f"Largest N sustained: **{largest}** ({s['criteria']}).")
    splits = []
    for r in rows:
        cpu = r["gateway_cpu"]
        splits.append((f"{r['n']} {_name(r)}", cpu.get("by_thread_s", {}), cpu["cpu_s"]))
    if any(split for _, split, _ in splits):
        lines += ["", "Gateway CPU seconds in the window, by thread group:", ""]
        for n, split, total in splits:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in split.items() if abs(v) >= 0.005)
            lines.append(f"- N={n}: {total:.2f} s = {parts}")
    return "\n".join(lines)


def _name(row: dict[str, Any]) -> str:
    name = str(row.get("transport", "threads")) + (" + redis" if "redis_cpu" in row else "")
    workers = int(row.get("workers", 1))
    return name + (f", {workers} workers" if workers > 1 else "")


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or [
        ROOT / "bench" / "results" / "latest.json"
    ]
    for path in paths:
        print(markdown(json.loads(path.read_text())))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
