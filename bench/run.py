"""``python -m bench.run``: the gateway's overhead over direct gRPC, at N concurrent real-time streams.

For each N of the sweep, fresh processes: fake_riva (tagged recognizer, grpc.aio by
default) and the gateway (hypercorn, the project's hypercorn.toml without the access
log). Then two phases from this one process:

1. gateway: N sessions over REST, each with an SSE reader and an audio WebSocket
   sending 100 ms chunks of 16 kHz LINEAR_PCM at real-time pace (trio, raw HTTP/1.1
   clients in ``bench.wire``);
2. direct: the same N streams straight to fake_riva over gRPC (grpc.aio by default).

Every chunk carries a tag that fake_riva echoes as the text of one result, so each
result is matched to the moment its chunk was sent. CPU is read from the OS (psutil)
over a steady window in which all streams are live. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import psutil
import trio

from bench import procs, worker_tallies
from bench.direct_load import run_direct_aio, run_direct_threads
from bench.gateway_load import GatewayPlan, run_gateway_phase
from bench.meter import Peaks, Watch, rss_threads, tree_rss_threads
from bench.model import PhaseResult, chunk_bytes
from bench.profile import Profiler, summarise
from service.settings import RivaTransport

DEFAULT_SWEEP = "50,100,150,200,300,400,600,800"
DEFAULT_SECONDS = 15.0
OVERHEAD_LIMIT_MS = 100.0
BROKEN_OVERHEAD_MS = 1000.0
THREADS_SETTLE_S = 20.0  # trio keeps an idle worker thread for 10 s before it exits


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _git_head() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "service"], cwd=procs.ROOT, capture_output=True)
        return out.stdout.strip() + (" (service/ modified in the working tree)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def one_n(args: argparse.Namespace, n: int, transports: list[str], out_dir: Path) -> list[dict[str, Any]]:
    """N streams through the gateway once per transport, then directly once (the shared baseline)."""
    log_dir = out_dir / f"n{n}"
    me = psutil.Process()
    rows: list[dict[str, Any]] = []
    with (
        procs.fake_riva(log_dir, aio=not args.sync_fake_riva, max_streams=max(512, 2 * n)) as (riva, target),
        contextlib.ExitStack() as stack,
    ):
        redis = stack.enter_context(procs.redis_server(log_dir / "redis")) if args.redis else None
        for transport in transports:
            rows.append(
                _through_gateway(args, n, transport, target, riva.process, me, log_dir / transport, out_dir, redis)
            )
        direct_watch = Watch({"fake_riva": riva.process, "loadgen": me})
        run_direct = run_direct_threads if args.direct == "threads" else run_direct_aio
        dres = run_direct(
            target,
            n,
            args.seconds,
            direct_watch,
            Peaks(riva.process),
            final_every=args.final_every,
            chunk_s=args.chunk_ms / 1000,
        )
    for row in rows:
        _compare(row, dres, n)
    return rows


def _through_gateway(
    args: argparse.Namespace,
    n: int,
    transport: str,
    target: str,
    riva_p: psutil.Process,
    me: psutil.Process,
    log_dir: Path,
    out_dir: Path,
    redis: tuple[procs.Child, str] | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {"n": n, "transport": transport, "shared_state": "redis" if redis else "memory"}
    row["workers"] = args.workers
    many = args.workers > 1  # a supervisor and its workers: CPU, RSS and threads summed over the tree

    def rss_and_threads(p: psutil.Process) -> tuple[int, int]:
        return tree_rss_threads(p) if many else rss_threads(p)

    with procs.gateway(
        log_dir,
        target,
        max_sessions=n + 16,
        transport=transport,
        src=args.gateway_src,
        app=args.gateway_app,
        redis_url=redis[1] if redis else "",
        workers=args.workers,
    ) as (gw, port):
        gw_p = gw.process
        time.sleep(0.5)
        threads_base = rss_and_threads(gw_p)[1]
        # warm-up: a few short sessions, so first-use costs are not counted against N
        warm = trio.run(
            run_gateway_phase,
            GatewayPlan("127.0.0.1", port, 4, 1.0, warmup_s=0.2, final_every=args.final_every),
            Watch({}),
            Peaks(gw_p, whole_tree=many),
        )
        if warm.errors:
            raise RuntimeError(f"warm-up through the gateway failed: {warm.error_kinds}")
        time.sleep(0.5)
        rss_base = rss_and_threads(gw_p)[0]

        watched = {"gateway": gw_p, "fake_riva": riva_p, "loadgen": me}
        if redis is not None:
            watched["redis"] = redis[0].process
        # per-thread groups only for one process; with several workers the gateway is the tree's sum
        watch = Watch(watched, breakdown=None if many else "gateway", trees=frozenset({"gateway"} if many else ()))
        peaks = Peaks(gw_p, whole_tree=many)
        profiler = None
        profile_path = out_dir / f"profile-n{n}-{transport}.txt"
        if args.profile == n:
            profiler = Profiler(
                lambda: [p.pid for p in (procs.tree(gw_p)[1:] if many else [gw_p])],
                profile_path,
                rate_hz=args.profile_rate,
                native=args.native,
                gil=not args.all_threads,
                blocking=args.profile_blocking,
            )
        plan = GatewayPlan(
            "127.0.0.1",
            port,
            n,
            args.seconds,
            on_window_start=profiler,
            final_every=args.final_every,
            chunk_s=args.chunk_ms / 1000,
        )
        gres = trio.run(run_gateway_phase, plan, watch, peaks)
        ended = time.perf_counter()
        if many:  # how the workers split the run (warm-up included: 4 short sessions)
            row["workers_split"] = worker_tallies.summary(worker_tallies.scrape(port, args.workers))
        threads_end = rss_and_threads(gw_p)[1]
        if profiler is not None:
            profiler.wait()

        # threads back to baseline once every session ended (trio's idle workers linger 10 s)
        threads_after = rss_and_threads(gw_p)[1]
        while threads_after > threads_base and time.perf_counter() - ended < THREADS_SETTLE_S:
            time.sleep(0.5)
            threads_after = rss_and_threads(gw_p)[1]
        row["gateway_threads"] = {
            "baseline": threads_base,
            "peak": peaks.threads_max,
            "at_end": threads_end,
            "after": threads_after,
            "settled_after_s": round(time.perf_counter() - ended, 1),
        }
        row["gateway_rss"] = {
            "baseline_mib": round(rss_base / 2**20, 1),
            "peak_mib": round(peaks.rss_max / 2**20, 1),
            "after_mib": round(rss_and_threads(gw_p)[0] / 2**20, 1),
            "per_session_kib": round((peaks.rss_max - rss_base) / 1024 / max(1, n), 1),
        }
    row["gateway"] = _phase(gres)
    stream_s = int(gres.extra.get("streams_started", n)) * gres.window_s  # streams that ran, over the window
    gw_cpu = gres.cpu_s.get("gateway", math.nan)
    row["gateway_cpu"] = {
        "cpu_s": round(gw_cpu, 2),
        "stream_s": round(stream_s, 1),
        "cpu_s_per_stream_s": gw_cpu / stream_s if stream_s else math.nan,
        "pct_core_per_stream": round(100 * gw_cpu / stream_s, 4) if stream_s else math.nan,
        "us_per_chunk": round(1e6 * gw_cpu * args.chunk_ms / 1000 / stream_s, 1) if stream_s else math.nan,
        "by_thread_s": gres.extra.get("gateway_thread_cpu_s", {}),
    }
    if redis is not None:
        redis_cpu = gres.cpu_s.get("redis", math.nan)
        row["redis_cpu"] = {
            "cpu_s": round(redis_cpu, 2),
            "pct_core_per_stream": round(100 * redis_cpu / stream_s, 4) if stream_s else math.nan,
        }
    if profiler is not None and (found := [p for p in profiler.outputs if p.exists()]):
        row["profile"] = summarise(found)
    row["_gres"] = gres
    return row


def _compare(row: dict[str, Any], dres: PhaseResult, n: int) -> None:
    gres: PhaseResult = row.pop("_gres")
    row["direct"] = _phase(dres)
    g, d = gres.latencies_ms, dres.latencies_ms
    row["overhead_ms"] = {q: round(g[q] - d[q], 1) for q in ("p50", "p95", "p99")}
    row["sustained"] = bool(
        gres.errors == 0
        and dres.errors == 0
        and row["overhead_ms"]["p99"] < OVERHEAD_LIMIT_MS
        and gres.streams_realtime == n
    )


def _phase(r: PhaseResult) -> dict[str, Any]:
    w = r.window_s or math.nan
    data = asdict(r)
    data["latencies_ms"] = {k: round(v, 1) for k, v in r.latencies_ms.items()}
    data["cpu_pct_of_core"] = {k: round(100 * v / w, 1) for k, v in r.cpu_s.items()}
    return data


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'N':>5} | {'transport':>9} | {'gw p50/p95/p99 ms':>19} | "
        f"{'direct p50/p95/p99':>19} | {'added p50/p95/p99':>19} | "
        f"{'RT gw/dir':>9} | {'gw %core/str':>12} | {'us/chunk':>8} | {'RSS/sess KiB':>12} | "
        f"{'threads b/pk/after':>18} | {'err gw/dir':>10} | {'gw/riva/lg/box %core':>22} | ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        g, d, o = r["gateway"]["latencies_ms"], r["direct"]["latencies_ms"], r["overhead_ms"]
        t = r["gateway_threads"]
        name = r.get("transport", "threads") + ("+redis" if "redis_cpu" in r else "")
        name += f"x{r['workers']}w" if r.get("workers", 1) > 1 else ""
        pct = r["gateway"]["cpu_pct_of_core"]
        lines.append(
            f"{r['n']:>5} | {name:>9} | {g['p50']:>5.1f}/{g['p95']:>5.1f}/{g['p99']:>6.1f} | "
            f"{d['p50']:>5.1f}/{d['p95']:>5.1f}/{d['p99']:>6.1f} | "
            f"{o['p50']:>5.1f}/{o['p95']:>5.1f}/{o['p99']:>6.1f} | "
            f"{r['gateway']['streams_realtime']:>4}/{r['direct']['streams_realtime']:<4} | "
            f"{r['gateway_cpu']['pct_core_per_stream']:>11.3f}% | {r['gateway_cpu']['us_per_chunk']:>8.0f} | "
            f"{r['gateway_rss']['per_session_kib']:>12.0f} | "
            f"{t['baseline']:>4}/{t['peak']:>5}/{t['after']:>4}{'':>3} | "
            f"{r['gateway']['errors']:>4}/{r['direct']['errors']:<5} | "
            f"{pct.get('gateway', 0):>4.0f}/{pct.get('fake_riva', 0):>4.0f}/{pct.get('loadgen', 0):>4.0f}/"
            f"{pct.get('machine', 0):>5.0f} | {'yes' if r['sustained'] else 'no'}"
            + (f" | redis {r['redis_cpu']['pct_core_per_stream']:.4f}%/str" if "redis_cpu" in r else "")
            + (_split(r["workers_split"]) if "workers_split" in r else "")
        )
    return "\n".join(lines)


def _split(split: dict[str, Any]) -> str:
    shares = "/".join(str(p) for p in split["results_split_pct"])
    return f" | results {shares}% | handed {split['handoffs']}, followed {split['followed_events']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sweep", default=DEFAULT_SWEEP, help=f"comma-separated N (default {DEFAULT_SWEEP})")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="audio per stream (default %(default)s)")
    parser.add_argument(
        "--final-every",
        type=int,
        default=20,
        metavar="CHUNKS",
        help="a final result every this many chunks, like utterance ends (default 20 = 2 s; 0: only at the end)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=float,
        default=100.0,
        metavar="MS",
        help="audio per WebSocket frame and gRPC request (default %(default)g; a result answers each)",
    )
    parser.add_argument("--direct", choices=("aio", "threads"), default="aio", help="direct gRPC client")
    parser.add_argument("--sync-fake-riva", action="store_true", help="thread-per-stream fake_riva instead of grpc.aio")
    parser.add_argument(
        "--transports",
        default="threads,aio,h2",
        help="gateway Riva transports to compare, comma-separated (default %(default)s)",
    )
    parser.add_argument("--keep-going", action="store_true", help="do not stop the sweep at the first broken N")
    parser.add_argument(
        "--redis", action="store_true", help="shared mode: the gateway keeps its state in a redis-server (its CPU too)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N > 1: `python -m service serve --workers N` (implies --redis); CPU summed over its processes",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="py-spy the gateway at this N")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument(
        "--profile-blocking", action="store_true", help="py-spy pauses the gateway per sample (exact, intrusive)"
    )
    parser.add_argument("--all-threads", action="store_true", help="py-spy every running thread, not only the GIL's")
    parser.add_argument(
        "--gateway-at",
        metavar="REV",
        default="",
        help="serve the gateway from a snapshot of this commit (git archive) instead of the working tree",
    )
    parser.add_argument(
        "--gateway-src", type=Path, default=None, metavar="DIR", help="serve the gateway from this source tree"
    )
    parser.add_argument(
        "--gateway-app",
        default="service.app:app",
        metavar="MODULE:APP",
        help="what hypercorn serves; bench.floor_app:app measures hypercorn+h11+wsproto+trio alone",
    )
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "results")
    parser.add_argument("--json", type=Path, default=None, help="results file (default OUT/latest.json)")
    args = parser.parse_args(argv)
    sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    if args.workers < 1:
        parser.error("--workers takes a whole number of at least 1")
    if args.workers > 1:
        args.redis = True  # several workers share sessions only through Redis
        if args.gateway_app != "service.app:app":
            parser.error("--workers N > 1 serves service.app:app")
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or set(transports) - set(get_args(RivaTransport)):
        parser.error(f"--transports takes {', '.join(get_args(RivaTransport))} (one or more)")
    args.out.mkdir(parents=True, exist_ok=True)
    procs.raise_fd_limit()
    if args.gateway_src is not None:
        args.gateway_src = args.gateway_src.resolve()
        args.gateway_at = str(args.gateway_src)
    elif args.gateway_at:
        args.gateway_src = procs.snapshot(args.gateway_at, args.out / "gateway-src")
    else:
        args.gateway_src = procs.ROOT
    started = time.time()
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "settings": {
            "sweep": sweep,
            "seconds": args.seconds,
            "chunk": f"{args.chunk_ms:g} ms, {chunk_bytes(args.chunk_ms / 1000)} bytes, 16 kHz LINEAR_PCM",
            "results": f"one per chunk; a final every {args.final_every} chunks"
            if args.final_every
            else "one per chunk; final only at the end",
            "transports": transports,
            "direct_client": args.direct,
            "fake_riva": "sync (thread per stream)" if args.sync_fake_riva else "grpc.aio",
            "load_generator": "one process, trio, raw HTTP/1.1 WebSocket + SSE clients (bench/wire.py)",
            "gateway_source": args.gateway_at or "working tree",
            "gateway_app": args.gateway_app,
            "shared_state": "redis" if args.redis else "memory",
            "workers": args.workers,
            "gateway_cpu": "summed over the supervisor and its workers (no per-thread split)"
            if args.workers > 1
            else "the hypercorn process, split by thread group",
            "repo_head": _git_head(),
            "criteria": f"no errors, every stream real-time, p99 added latency < {OVERHEAD_LIMIT_MS:g} ms",
        },
        "rows": rows,
    }
    json_path = args.json or args.out / "latest.json"
    active = list(transports)  # a transport leaves the sweep at the first N that breaks it
    for n in sweep:
        if not active:
            break
        print(
            f"-- N={n} ({', '.join(active)}): {args.seconds:g} s of audio per stream ...", file=sys.stderr, flush=True
        )
        for row in one_n(args, n, active, args.out):
            rows.append(row)
            print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
            broken = (
                row["gateway"]["errors"] > 0.01 * n * args.seconds / (args.chunk_ms / 1000)
                or row["overhead_ms"]["p99"] > BROKEN_OVERHEAD_MS
            )
            if broken and not args.keep_going:
                print(f"-- N={n} broke the {row['transport']} transport; it leaves the sweep", file=sys.stderr)
                active.remove(row["transport"])
        report["elapsed_s"] = round(time.time() - started, 1)
        report["largest_sustained_n"] = {
            t: max((r["n"] for r in rows if r["transport"] == t and r["sustained"]), default=None) for t in transports
        }
        json_path.write_text(json.dumps(report, indent=2, default=str))
    print(table(rows))
    largest = ", ".join(f"{t} {n}" for t, n in report["largest_sustained_n"].items())
    print(f"\nlargest N sustained ({report['settings']['criteria']}): {largest}")
    print(f"elapsed {report['elapsed_s']} s; JSON: {json_path}")
    for r in rows:
        if "profile" in r:
            print(f"\nprofile at N={r['n']}, {r['transport']} ({r['profile']['samples']} samples), self time:")
            print("  by thread: " + ", ".join(f"{t} {pct}%" for t, pct in r["profile"]["by_thread"]))
            for fn, pct in r["profile"]["self"][:20]:
                print(f"  {pct:5.1f}%  {fn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
