"""How many camera worker processes run, and which of them takes a camera a reload adds.

Pure logic, apart from `edge.workers` (which starts the workers) so that it is tested alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def resolve_processes(setting: int | str, cameras: int, cores: int | None = None) -> int:
    """`ingest.processes`: auto is one worker per two cores beyond the batching process's, none
    on boxes of two cores or fewer (measured: BENCHMARKS.md, worker processes), never more than
    the cameras."""
    if setting != "auto":
        return min(int(setting), cameras)
    cores = cores or os.cpu_count() or 1
    return 0 if cores <= 2 else min(cameras, max(1, (cores - 1) // 2))


def place_cameras(loads: Sequence[int], added: int, limit: int) -> list[int]:
    """The worker that takes each of `added` cameras, in order: a position in `loads` (the
    running workers' camera counts) or, from `len(loads)` on, a new worker. A new worker only
    while fewer than `limit` run (or none does), else the one with the fewest cameras (the
    first of those): a box whose cameras come one reload at a time keeps `limit` processes."""
    counts = list(loads)
    placed = []
    for _ in range(added):
        if len(counts) < limit or not counts:
            counts.append(0)
            k = len(counts) - 1
        else:
            k = min(range(len(counts)), key=counts.__getitem__)
        counts[k] += 1
        placed.append(k)
    return placed
