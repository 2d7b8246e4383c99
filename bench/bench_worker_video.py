"""Live video with camera workers: the service process's CPU per rendered frame, tree against tree.

`edge run` with `ingest.processes: 1` on N paced 720p25 file cameras (looped; the clips of
`bench_scaling`), each watched by one aiortc viewer (in this process) from the start. After a
warm-up it measures, over a window, from /proc and the service's /metrics:
- the service process's CPU (all its threads, its workers excluded) per rendered frame: what the
  live video costs the process that also runs the batcher and the detector (annotation and
  encoding run in the service with the older tree, in the worker with the newer one);
- the workers' CPU per rendered frame, rendered frames/s, and the frames/s the viewers decode.
`--trees A,B` runs each round with `edge` imported from each source tree in turn (the same cameras
and viewers, alternating, so that a shared machine's load hits both alike).

Run: `python -m bench.bench_worker_video [--trees OLD,NEW] [--cameras 2] [--seconds 15]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

if __package__ in (None, ""):  # `python bench/bench_worker_video.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_scaling import CLIPS, make_720p, proc_cpu_s
from edge.publish.viewer_client import ThreadedViewer
from edge.testing import ServiceProcess, free_port, metric_samples, wait_for

ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rendered(svc: ServiceProcess) -> float:
    return sum(v for _, v in metric_samples(svc.text("/metrics"), "edge_frames_rendered_total"))


def run_tree(
    tree: Path, clips: list[Path], cameras: int, warmup_s: float, seconds: float, tmp: Path
) -> dict[str, float]:
    port = free_port()
    config = {
        "cameras": [
            {"id": f"cam{i}", "url": str(clips[i % len(clips)]), "realtime": True, "loop": True,
             "lines": [{"name": "l", "points": [[0, 400], [1280, 400]]}]}
            for i in range(cameras)
        ],
        "detector": {"prepared_dir": str(tmp / "models")},
        "ingest": {"processes": 1},
        "server": {"host": "127.0.0.1", "port": port},
        "metrics": {"gpu": False},
    }  # fmt: skip
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    env_path, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = str(tree)
    os.chdir(tree)  # `python -m` puts the working directory first on the path
    try:
        svc = ServiceProcess(path, port, tmp / f"edge-run-{tree.name}.log")
    finally:
        os.chdir(cwd)
        if env_path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env_path
    with svc:
        viewers = [ThreadedViewer(svc.base, f"cam{i}") for i in range(cameras)]
        try:
            wait_for(lambda: all(v.frames >= 10 for v in viewers), 120)
            time.sleep(warmup_s)
            pid = svc.proc.pid
            kids = children(pid)
            cpu0, kids0 = proc_cpu_s(pid), sum(proc_cpu_s(k) for k in kids)
            r0, f0, t0 = rendered(svc), sum(v.frames for v in viewers), time.monotonic()
            time.sleep(seconds)
            cpu, kid_cpu = proc_cpu_s(pid) - cpu0, sum(proc_cpu_s(k) for k in kids) - kids0
            n, wall = rendered(svc) - r0, time.monotonic() - t0
            decoded = sum(v.frames for v in viewers) - f0
        finally:
            for v in viewers:
                v.stop()
    return {
        "service_ms": 1000 * cpu / max(n, 1),
        "workers_ms": 1000 * kid_cpu / max(n, 1),
        "rendered_fps": n / wall,
        "decoded_fps": decoded / wall,
        "service_cores": cpu / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", default=str(ROOT), help="source trees, comma-separated")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.gettempdir()) / "edge-bench-worker-video"
    tmp.mkdir(exist_ok=True)
    clips = [make_720p(c, Path(tempfile.gettempdir()) / "edge-bench-scaling") for c in CLIPS]
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    commits = {  # a tree that is no checkout (an exported commit) goes by its directory's name
        t: subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip() or t.name
        for t in trees
    }  # fmt: skip
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, {args.cameras} cameras 720p25 watched, "
          f"{args.seconds:g} s per run after {args.warmup:g} s warm-up")  # fmt: skip
    print("| round | commit | service CPU / rendered frame | workers CPU / rendered frame | "
          "service cores | rendered frames/s | viewers' frames/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for rnd in range(args.rounds):
        for tree in trees:
            r = run_tree(tree, clips, args.cameras, args.warmup, args.seconds, tmp)
            print(f"| {rnd + 1} | {commits[tree]} | {r['service_ms']:.2f} ms | "
                  f"{r['workers_ms']:.2f} ms | {r['service_cores']:.2f} | "
                  f"{r['rendered_fps']:.1f} | {r['decoded_fps']:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
