"""How fast the store answers a day's 15-minute counts and a page of events, on a big database.

Builds a database of `--events` events (default 100 000: 50 000 vehicles, each a crossing and a
track end, spread over `--days` days on 3 cameras × 2 lines) through the real writer
(`EventStore.write`, batches of 500), then times, each `--repeat` times (median and max):
- `counts`: `StoreQueries.counts` of one camera for one day in 15-minute intervals (96 rows per
  line, every class × direction column) and its CSV, as `GET /api/counts?format=csv` runs it;
- `counts_all`: the same for every camera;
- `events`: the newest page of 100 events of one camera, and a page deep in the history (cursor).
The goal from the issue: a day's 15-minute counts in under 50 ms.

Run: `python -m bench.bench_store [--events 100000] [--repeat 30]` (about 10 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # `python bench/bench_store.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.store.database import EventStore
from edge.store.query import queries_for
from edge.testing import synthetic_traffic

CAMERAS = ("cam1", "cam2", "cam3")
CLASSES = ("car", "motorcycle", "bus", "truck")


def build(path: Path, events: int, days: float) -> float:
    """Fill the database; returns the write rate in events/s."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    per_camera = events // 2 // len(CAMERAS)
    every_s = days * 86400 / per_camera
    store = EventStore(path, 900, 36500, 64 * 1024**3)
    t = time.perf_counter()
    n = 0
    for i, camera in enumerate(CAMERAS):
        batch = synthetic_traffic(per_camera, every_s, start, camera, 1 + i * per_camera)
        for k in range(0, len(batch), 500):
            store.write(batch[k : k + 500])
        n += len(batch)
    rate = n / (time.perf_counter() - t)
    store.close()
    return rate


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edge.db"
        rate = build(path, args.events, args.days)
        lines = {c: {"north": ("toward", "away"), "west": ("toward", "away")} for c in CAMERAS}
        q = queries_for(path, 15, CLASSES, lines)
        day_end = int(datetime.now(UTC).replace(minute=0, second=0, microsecond=0).timestamp())
        day_start = day_end - 86400
        newest = q.events(100, camera="cam1")
        deep = q.events(100, camera="cam1", before=(round(newest[-1]["epoch"] * 1000) - 86400_000
                                                    * int(args.days // 2), 10**12))  # fmt: skip
        assert deep, "the deep page is empty"
        results = {
            "counts (1 camera, 1 day, 15 min, JSON rows + CSV)": lambda: (
                r := q.counts(day_start, day_end, 900, camera="cam1"), r.rows(), r.to_csv()),
            "counts_all (3 cameras, 1 day, 15 min, CSV)": lambda: q.counts(
                day_start, day_end, 900).to_csv(),
            "events (newest 100 of one camera)": lambda: q.events(100, camera="cam1"),
            "events (100, half-way back, by cursor)": lambda: q.events(
                100, camera="cam1", before=(round(deep[0]["epoch"] * 1000), deep[0]["id"])),
        }  # fmt: skip
        size_mb = path.stat().st_size / 1e6
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}, "
              f"commit {commit}")  # fmt: skip
        print(f"database: {args.events} events over {args.days:g} days, {size_mb:.1f} MB; "
              f"written at {rate:,.0f} events/s (batches of 500)")
        print("| query | median ms | max ms |\n|---|---|---|")
        for name, fn in results.items():
            med, worst = timed(fn, args.repeat)
            print(f"| {name} | {med:.2f} | {worst:.2f} |")


if __name__ == "__main__":
    main()
