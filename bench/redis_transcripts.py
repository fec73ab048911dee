"""``python -m bench.redis_transcripts``: what a final costs in Redis mode as transcripts grow.

A final adds a few words to its session's final transcript, which a long session (up to
``RESERVE_MAX_SESSION_DURATION_S``, four hours by default) grows to hundreds of KiB. This
runs one process's ``RedisHub`` against a local redis-server (no persistence), owning N
sessions whose transcripts start at each size of the sweep, and gives every session a final
(an event and the record's change) per round. Per final: the hub's CPU (this process, which
does nothing else), redis-server's CPU and the bytes Redis received. Prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench import procs
from service.observability.metrics import Metrics
from service.settings import Settings
from service.shared.redis.hub import RedisHub

WORDS = " and then some more words"  # what one final adds (25 bytes)


async def measure(url: str, sessions: int, size: int, rounds: int) -> tuple[float, float, float]:
    """µs of hub CPU, µs of Redis CPU and bytes into Redis, per final."""
    hub = RedisHub(Settings(redis_url=url), Metrics())
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        records = {f"t{size}-{n}": {"state": "streaming", "final_text": "x" * size} for n in range(sessions)}
        logs = []
        for sid, record in records.items():
            event_log = hub.log_for(sid)
            event_log.own(0, {"token_hash": "x", "config": "{}"})
            hub.publisher.force_whole_record(sid)
            event_log.note_state(lambda record=record: dict(record))  # type: ignore[misc]
            logs.append(event_log)
        for event_log in logs:  # the starting transcripts, written whole: not measured
            assert await event_log.drained(30)
        net = int(await _info(hub, "stats", "total_net_input_bytes"))
        cpu, redis_cpu = time.process_time(), await _redis_cpu(hub)
        for _ in range(rounds):
            for event_log, record in zip(logs, records.values(), strict=True):
                record["final_text"] += WORDS
                event_log.append("transcript", b'{"text":"and then some more words","is_final":true}')
                event_log.note_state(lambda record=record: dict(record))  # type: ignore[misc]
            for event_log in logs:
                assert await event_log.drained(30)
        finals = sessions * rounds
        hub_us = (time.process_time() - cpu) / finals * 1e6
        redis_us = (await _redis_cpu(hub) - redis_cpu) / finals * 1e6
        net_bytes = (int(await _info(hub, "stats", "total_net_input_bytes")) - net) / finals
        nursery.cancel_scope.cancel()
    return hub_us, redis_us, net_bytes


async def _info(hub: RedisHub, section: str, field: str) -> str:
    info = await hub.client.info(section)
    return str(info[field])


async def _redis_cpu(hub: RedisHub) -> float:
    """redis-server's CPU seconds, as it counts them (getrusage: finer than the OS's ticks)."""
    return float(await _info(hub, "cpu", "used_cpu_user")) + float(await _info(hub, "cpu", "used_cpu_sys"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_transcripts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--sizes", default="0,16384,65536,262144", help="starting transcript sizes, bytes")
    parser.add_argument("--rounds", type=int, default=20, help="finals per session at each size")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{args.sessions} sessions, {args.rounds} finals each per size, hub and redis-server on this machine")
    print(" transcript KiB | hub µs/final | redis µs/final | bytes into Redis/final")
    with tempfile.TemporaryDirectory() as tmp, procs.redis_server(Path(tmp)) as (_, url):
        for size in sizes:
            hub_us, redis_us, net = trio.run(measure, url, args.sessions, size, args.rounds)
            print(f" {size / 1024:14.0f} | {hub_us:12.1f} | {redis_us:14.1f} | {net:22.0f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
