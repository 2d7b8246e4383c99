"""`edge detect` on a recorded clip: frames/s of its loop, for one or more source trees.

What is timed is what `edge detect CLIP` does once its model is loaded: decode every frame, run
them through `Detector.detect_stream`, write one JSON line per frame (to /dev/null). Each
measurement runs in a fresh process with `PYTHONPATH` set to a tree, so two checkouts (a commit
before a change and after it) can be compared in one run; the trees alternate over `--rounds` so
that a change of background load hits them alike. The 1-minute load average is recorded before
every measurement, and the process's CPU time per frame (all its threads) beside the wall-clock
rate: on a shared box the rate follows the load, the CPU time much less.

Run: `python -m bench.bench_detect_file [--clip NAME] [--frames N] [--rounds 3]
[--tree PATH ...]` (default tree: this checkout; a minute or two on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/bench_detect_file.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.probes import load_average, machine
from edge.assets import asset

ROOT = Path(__file__).resolve().parent.parent

# Runs in the measured tree: `edge detect`'s own config and loop (`edge.commands.detect`).
MEASURE = """
import io, itertools, json, os, sys, time
from edge.commands.detect import _write_all, detector_config
from edge.infer.detector import Detector
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics
clip, frames = sys.argv[1], int(sys.argv[2])
detector = Detector(detector_config(None, None), EdgeMetrics())
with open(os.devnull, "w") as out:
    start, cpu = time.perf_counter(), time.process_time()
    count = _write_all(detector, itertools.islice(read_frames(clip), frames), out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"frames": count, "seconds": seconds, "cpu_s": cpu, "workers": detector.workers,
                  "max_batch": detector.max_batch, "provider": detector.provider}))
"""


def measure(tree: Path, clip: Path, frames: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(clip), str(frames)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="traffic_highway_overpass.mp4")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, action="append", help="source tree (repeatable)")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [ROOT]]
    clip = asset("video", args.clip)
    print(json.dumps(machine()))
    rates: dict[Path, list[float]] = {t: [] for t in trees}
    cpu: dict[Path, list[float]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees:
            load = load_average()
            got = measure(tree, clip, args.frames)
            fps = got["frames"] / got["seconds"]
            rates[tree].append(fps)
            cpu_ms = 1000 * got["cpu_s"] / got["frames"]
            cpu[tree].append(cpu_ms)
            print(f"round {r + 1} {tree}: {got['frames']:.0f} frames in {got['seconds']:.2f} s = "
                  f"{fps:.1f} frames/s, {cpu_ms:.1f} CPU-ms/frame (load {load:.2f}; "
                  f"{got['provider']}, "
                  f"{got['workers']} workers, batch {got['max_batch']})")  # fmt: skip
    first = rates[trees[0]]
    for tree, fps in rates.items():
        ratios = [a / b for a, b in zip(fps, first, strict=True)]  # same round: same load, nearly
        print(f"{tree}: median {statistics.median(fps):.1f} frames/s "
              f"(min {min(fps):.1f}, max {max(fps):.1f}), "
              f"median {statistics.median(cpu[tree]):.1f} CPU-ms/frame, "
              f"{statistics.median(ratios):.2f}x the first tree's rate in the same round "
              "(median)")  # fmt: skip


if __name__ == "__main__":
    main()
