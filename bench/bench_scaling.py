"""Cameras per box: the whole service at N paced 720p25 cameras, for 0 / 1 / 2 ... worker processes.

Each run starts the real `EdgeService` (tracking and line counting on, no viewer) on N file cameras
played in real time and looped: 1280×720 25 fps H.264 clips made once from the shared clips
(upscaled). After a warm-up it measures, from the service's own metrics and /proc:
- inferred frames/s (all cameras) and the share of the source rate (N × 25) it keeps;
- p95 end-to-end latency (decode → tracked), from `edge_end_to_end_seconds`' buckets;
- cores busy: CPU seconds of the service and its workers per wall second;
- the batching process's CPU per inferred frame outside the ONNX Runtime run: its CPU time minus
  the CPU the threads spent inside `session.run` (measured around each run with
  `time.thread_time`; on a CPU each batch runs single-threaded in its calling thread).
With `--sweep`, the largest N that keeps ≥ 95 % of the source rate is searched for each mode;
`--threads` splits the batching process's CPU per frame outside ORT by thread (event loop, the
senders to the workers, the batch threads outside `session.run`, ...).

Run: `python -m bench.bench_scaling [--cameras 12] [--processes 0,1,2] [--seconds 20]`.
Compare modes within one run only: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

if __package__ in (None, ""):  # `python bench/bench_scaling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from edge.app import EdgeService
from edge.assets import asset
from edge.config import EdgeConfig
from edge.infer.detector import Detector
from edge.metrics import EdgeMetrics
from edge.testing import free_port

CLIPS = ("traffic_highway_cctv.mp4", "traffic_highway_overpass.mp4", "car-detection.mp4")
FPS = 25
TICKS = os.sysconf("SC_CLK_TCK")


def make_720p(clip: str, out_dir: Path, seconds: float = 12.0) -> Path:
    """The clip upscaled to 1280×720 at 25 fps (made once, reused)."""
    out = out_dir / f"{Path(clip).stem}-720p25.mp4"
    if out.is_file():
        return out
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(asset("video", clip))) as src, av.open(str(tmp), "w") as dst:
        stream = dst.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "g": "50", "bf": "0"}
        n = 0
        for frame in src.decode(video=0):
            pic = frame.reformat(1280, 720, "yuv420p")
            pic.pts, pic.time_base = n, Fraction(1, FPS)
            dst.mux(stream.encode(pic))
            n += 1
            if n >= seconds * FPS:
                break
        dst.mux(stream.encode(None))
    tmp.replace(out)
    return out


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class OrtClock:
    """CPU seconds threads spent inside the detector's ONNX Runtime runs."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self._lock = threading.Lock()
        original = Detector._run_plain

        def timed(det: Detector, batch: object) -> object:
            start = time.thread_time()
            try:
                return original(det, batch)  # type: ignore[arg-type]
            finally:
                spent = time.thread_time() - start
                with self._lock:
                    self.cpu_s += spent

        Detector._run_plain = timed  # type: ignore[method-assign]


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by name (without trailing numbers: the
    batch threads `edge-infer_0`, `_1` together)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other").rstrip("0123456789_-") or "other"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def quantile_from_buckets(samples: dict[float, float], q: float) -> float:
    """`q`-quantile from cumulative bucket counts (upper bound → count), linear in a bucket."""
    bounds = sorted(samples)
    if not bounds:
        return float("nan")
    total = samples[bounds[-1]]
    if total <= 0:
        return float("nan")
    want, prev_b, prev_c = q * total, 0.0, 0.0
    for b in bounds:
        c = samples[b]
        if c >= want:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (want - prev_c) / max(c - prev_c, 1e-9)
        prev_b, prev_c = b, c
    return bounds[-1]


def snapshot(metrics: EdgeMetrics) -> dict[str, object]:
    inferred, decoded, buckets = 0.0, 0.0, {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == "edge_frames_inferred_total":
                inferred += s.value
            elif s.name == "edge_frames_decoded_total":
                decoded += s.value
            elif s.name == "edge_end_to_end_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return {"inferred": inferred, "decoded": decoded, "buckets": buckets}


async def run_mode(
    clips: list[Path],
    cameras: int,
    processes: int,
    warmup_s: float,
    seconds: float,
    tmp: Path,
    max_batch: int | None = None,
) -> dict[str, float]:
    config = EdgeConfig.model_validate({
        "cameras": [
            {"id": f"cam{i}", "url": str(clips[i % len(clips)]), "realtime": True, "loop": True,
             "lines": [{"name": "l", "points": [[0, 400], [1280, 400]]}]}
            for i in range(cameras)
        ],
        "detector": {"prepared_dir": str(tmp / "models"), "max_batch": max_batch},
        "ingest": {"processes": processes},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"gpu": False},
    })  # fmt: skip
    metrics = EdgeMetrics()
    service = EdgeService(config, metrics)
    ort = OrtClock.instance
    started = asyncio.Event()
    task = asyncio.create_task(service.run(started))
    await asyncio.wait_for(started.wait(), 120)
    await asyncio.sleep(warmup_s)
    children = [p.pid for p in mp.active_children() if p.pid]
    a, t0, cpu0, ort0 = snapshot(metrics), time.monotonic(), time.process_time(), ort.cpu_s
    kids0, threads0 = sum(proc_cpu_s(p) for p in children), thread_cpu_s()
    await asyncio.sleep(seconds)
    b, wall = snapshot(metrics), time.monotonic() - t0
    main_cpu, ort_cpu = time.process_time() - cpu0, ort.cpu_s - ort0
    threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu_s().items()}
    kids = sum(proc_cpu_s(p) for p in children) - kids0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    inferred = float(b["inferred"]) - float(a["inferred"])  # type: ignore[arg-type]
    ba, bb = a["buckets"], b["buckets"]
    delta = {k: bb[k] - ba.get(k, 0.0) for k in bb}  # type: ignore[union-attr,index]
    per_frame = 1000 / max(inferred, 1)
    threads["edge-infer"] = threads.get("edge-infer", 0.0) - ort_cpu  # outside ORT
    split = {k: v * per_frame for k, v in sorted(threads.items(), key=lambda kv: -kv[1])}
    return {
        "threads": split,  # type: ignore[dict-item]
        "processes": processes,
        "cameras": cameras,
        "inferred_fps": inferred / wall,
        "source_share": inferred / wall / (cameras * FPS),
        "p95_ms": 1000 * quantile_from_buckets(delta, 0.95),
        "cores_busy": (main_cpu + kids) / wall,
        "main_outside_ort_ms": 1000 * (main_cpu - ort_cpu) / max(inferred, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=12)
    parser.add_argument("--processes", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument(
        "--max-batch", type=int, default=None,
        help="detector.max_batch (default: the plan's; 8 is what a GPU gets)",
    )  # fmt: skip
    parser.add_argument("--sweep", action="store_true", help="find the largest N at ≥ 95 %%")
    parser.add_argument(
        "--threads", action="store_true",
        help="also the batching process's CPU per frame outside ORT by thread",
    )  # fmt: skip
    args = parser.parse_args()
    tmp = Path(tempfile.gettempdir()) / "edge-bench-scaling"
    tmp.mkdir(exist_ok=True)
    clips = [make_720p(c, tmp) for c in CLIPS]
    OrtClock.instance = OrtClock()  # type: ignore[attr-defined]
    modes = [int(p) for p in args.processes.split(",")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, commit {commit}, "
          f"{args.seconds:g} s per run after {args.warmup:g} s warm-up")  # fmt: skip
    print("| processes | cameras | inferred frames/s | of source rate | p95 end-to-end | "
          "cores busy | batching process CPU outside ORT |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for p in modes:
        counts = [args.cameras]
        if args.sweep:
            counts = [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64]
        for n in counts:
            r = asyncio.run(run_mode(clips, n, p, args.warmup, args.seconds, tmp, args.max_batch))
            print(f"| {p} | {n} | {r['inferred_fps']:.1f} | {100 * r['source_share']:.0f} % | "
                  f"{r['p95_ms']:.0f} ms | {r['cores_busy']:.2f} | "
                  f"{r['main_outside_ort_ms']:.2f} ms/frame |", flush=True)  # fmt: skip
            if args.threads:
                split = r["threads"].items()  # type: ignore[attr-defined]
                print("  by thread, ms/frame: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in split if v >= 0.0005))  # fmt: skip
            if args.sweep and r["source_share"] < 0.95:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
