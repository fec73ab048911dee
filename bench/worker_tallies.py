"""How a multi-worker run split its work, from each worker's own ``/metrics``: the results each
published (so the share of sessions each ran), the connections handed between them, and the
events one read from another's sessions through Redis. A row's CPU per stream depends on that
split (a worker's cost per stream falls with its load), so a run reports it beside its figures."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ATTEMPTS = 100  # fresh connections tried until every worker answered (the kernel picks one each)
COUNTED = {
    "reserve_results": "results",
    "reserve_worker_handoffs": "handoffs",
    "reserve_redis_followed_events": "followed",
}


def scrape(port: int, workers: int) -> dict[int, dict[str, float]]:
    """Each worker's counters, by pid (``/healthz`` then ``/metrics`` over one connection reach
    the same worker); the workers that did not answer within ``ATTEMPTS`` are missing."""
    found: dict[int, dict[str, float]] = {}
    for _ in range(ATTEMPTS):
        if len(found) == workers:
            break
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            pid = int(http.get("/healthz").json()["pid"])
            if pid not in found:
                found[pid] = counters(http.get("/metrics").text)
    return found


def counters(exposition: str) -> dict[str, float]:
    """``results``, ``handoffs`` (sent, not received: one per connection handed) and ``followed``."""
    tally = dict.fromkeys(COUNTED.values(), 0.0)
    for family in text_string_to_metric_families(exposition):
        name = COUNTED.get(family.name)
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and (name != "handoffs" or sample.labels.get("way") == "sent"):
                tally[name] += sample.value
    return tally


def summary(tallies: dict[int, dict[str, float]]) -> dict[str, Any]:
    """The split of results among workers (largest first, in %), handoffs and followed events."""
    results = sorted((t["results"] for t in tallies.values()), reverse=True)
    total = sum(results) or 1.0
    return {
        "workers_answered": len(tallies),
        "results_split_pct": [round(100 * r / total) for r in results],
        "handoffs": int(sum(t["handoffs"] for t in tallies.values())),
        "followed_events": int(sum(t["followed"] for t in tallies.values())),
    }
