"""``python -m bench.creation_burst``: how bursts of session creations are placed and limited.

Starts fake_riva, a redis-server and ``python -m service serve --workers N`` (the defaults:
``RESERVE_MAX_SESSIONS`` 200 per worker, ``RESERVE_WORKER_FILL`` 200), then sends each burst of
``POST /v1/sessions`` at once, each on a fresh connection, and prints the answers and how many
live sessions each worker then runs. The sessions get no audio and stay live meanwhile.

    python -m bench.creation_burst --bursts 250,150,10
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
from pathlib import Path

import httpx
import trio

from bench import procs

ATTEMPTS = 200  # fresh connections tried until every worker answered /healthz


async def burst(port: int, count: int) -> tuple[collections.Counter[int], collections.Counter[str]]:
    """The answers' status codes, and the refusals' messages (why each was refused)."""
    answers: collections.Counter[int] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    headers = {"Authorization": f"Bearer {procs.API_KEY}"}

    async def create() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as http:
            answer = await http.post("/v1/sessions", json={})
            answers[answer.status_code] += 1
            if answer.status_code != 201:
                reasons[answer.text.strip()[:160]] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(create)
    return answers, reasons


def live_by_worker(port: int, workers: int) -> dict[int, int]:
    found: dict[int, int] = {}
    for _ in range(ATTEMPTS):
        if len(found) == workers:
            break
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}, timeout=5).json()
        found[int(health["pid"])] = int(health["live_sessions"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.creation_burst", description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="250,150,10", help="comma-separated creations sent at once, in turn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-sessions", type=int, default=200, help="RESERVE_MAX_SESSIONS, per worker")
    args = parser.parse_args()
    procs.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="creation-burst-") as logs, contextlib.ExitStack() as stack:
        log_dir = Path(logs)
        _, target = stack.enter_context(procs.fake_riva(log_dir, aio=True, max_streams=10_000))
        _, redis_url = stack.enter_context(procs.redis_server(log_dir))
        gateway = procs.gateway(
            log_dir, target, max_sessions=args.max_sessions, redis_url=redis_url, workers=args.workers
        )
        _, port = stack.enter_context(gateway)
        print(f"{args.workers} workers, RESERVE_MAX_SESSIONS {args.max_sessions} each")
        print(f"{'burst':>6} | {'201':>5} | {'503':>5} | {'other':>5} | live sessions per worker after it")
        for count in (int(n) for n in args.bursts.split(",")):
            answers, reasons = trio.run(burst, port, count)
            other = sum(n for code, n in answers.items() if code not in (201, 503))
            live = sorted(live_by_worker(port, args.workers).values(), reverse=True)
            print(f"{count:>6} | {answers[201]:>5} | {answers[503]:>5} | {other:>5} | {live}")
            for reason, times in reasons.most_common():
                print(f"{'':>6}   {times} x {reason}")


if __name__ == "__main__":
    main()
