"""The garbage collector's pace for a gateway process.

A collection holds the GIL, so it stalls the trio thread and the Riva loop thread alike.
At Python's default young-generation threshold (700 allocations) a gateway carrying 200
streams spent about 0.5-1.3 s in a few hundred collections per 10 s run, and they were much
of its p99; at 5000, with the start-up heap frozen, about 0.1 s in a few dozen
(docs/benchmark.md, "Garbage collection"). Cycles are still collected, just in larger steps.
"""

from __future__ import annotations

import gc

_frozen = [False]  # once per process: later calls (tests start many gateways) only set the pace


def tune_gc(threshold: int) -> None:
    """Set the young-generation threshold and, the first time, freeze what start-up built.

    Frozen objects (modules, settings, the app) are never traversed again; collecting first
    keeps garbage out of the frozen set."""
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
    if not _frozen[0]:
        _frozen[0] = True
        gc.collect()
        gc.freeze()
