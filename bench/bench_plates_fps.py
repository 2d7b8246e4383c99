"""Does plate reading slow the video? Inferred frames/s per camera with OCR off and on, in one run.

Two file cameras played in real time and looped (paced like live cameras), each a 960×540
25 fps clip made once from the shared overpass clip's empty road (the median of its frames) with
the shared CZ plate photo's car driven across it, growing as it approaches, then leaving: a
new track, with a legible plate, every few seconds on each camera. The real `EdgeService` runs
them with tracking on, OCR off then on (alternating over `--rounds`), snapshots on with OCR.
Per window: inferred frames/s per camera (from `edge_frames_inferred_total`), OCR attempts,
reads and skipped frames (`edge_ocr_*`), snapshots written and their folder's size, and the CPU
cores busy in the service's process, in the camera worker processes (`--processes N`:
`ingest.processes`, default 0) and in the OCR worker process.

Run: `python -m bench.bench_plates_fps [--seconds 20] [--rounds 2] [--processes 1]`. Compare within
one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

if __package__ in (None, ""):  # `python bench/bench_plates_fps.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
import cv2
import numpy as np
import yaml

from bench.bench_scaling import proc_cpu_s
from edge.app import EdgeService
from edge.assets import asset
from edge.config import EdgeConfig
from edge.metrics import EdgeMetrics
from edge.testing import free_port, metric_value

FPS = 25
CAMERAS = ("cam0", "cam1")


def plate_clip(out: Path, pass_s: float = 4.0, empty_s: float = 1.0) -> Path:
    """One car pass (with its plate) then an empty road, 960×540 at 25 fps (made once)."""
    if out.is_file():
        return out
    with av.open(str(asset("video", "traffic_highway_overpass.mp4"))) as src:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(src.decode(video=0))
                  if i % 10 == 0]  # fmt: skip
    road = np.median(np.stack(frames), axis=0).astype(np.uint8)
    photo = cv2.imread(str(asset("plates", "plate_cz_5AU5341.jpg")))
    car = photo[40:300, 40:470]
    n = int(pass_s * FPS)
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as dst:
        stream = dst.add_stream("libx264", rate=FPS, options={"crf": "18", "g": "50", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = road.shape[1], road.shape[0], "yuv420p"
        for i in range(n + int(empty_s * FPS)):
            img = road.copy()
            if i < n:
                scale = 0.8 + 0.3 * i / (n - 1)
                pasted = cv2.resize(car, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                h, w = pasted.shape[:2]
                x, y = int(10 + (road.shape[1] - w - 20) * i / (n - 1)), road.shape[0] - h - 20
                img[y : y + h, x : x + w] = pasted
            pic = av.VideoFrame.from_ndarray(img, format="bgr24")
            pic.pts, pic.time_base = i, Fraction(1, FPS)
            dst.mux(stream.encode(pic))
        dst.mux(stream.encode(None))
    tmp.replace(out)
    return out


async def run_mode(clip: Path, ocr: bool, warmup_s: float, seconds: float, tmp: Path,
                   extra: dict[str, object] | None = None, processes: int = 0,
                   ) -> dict[str, float]:  # fmt: skip
    snaps = tmp / f"snaps-{time.monotonic_ns()}"
    config = EdgeConfig.model_validate({
        "cameras": [{"id": c, "url": str(clip), "realtime": True, "loop": True} for c in CAMERAS],
        "detector": {"prepared_dir": str(tmp / "models")},
        "ocr": {"enabled": ocr, "snapshots": {"dir": str(snaps), "max_mb": 5}, **(extra or {})},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "ingest": {"processes": processes},
        "metrics": {"gpu": False},
    })  # fmt: skip
    metrics = EdgeMetrics()
    service = EdgeService(config, metrics)
    started = asyncio.Event()
    task = asyncio.create_task(service.run(started))
    await asyncio.wait_for(started.wait(), 180)
    await asyncio.sleep(warmup_s)

    def counts() -> dict[str, float]:
        out = {f"inferred_{c}": metric_value(metrics, "edge_frames_inferred_total", camera=c)
               for c in CAMERAS}  # fmt: skip
        for name in ("attempts", "reads", "skipped"):
            out[name] = metric_value(metrics, f"edge_ocr_{name}_total")
        out["snapshots"] = metric_value(metrics, "edge_snapshots_written_total")
        return out

    children = multiprocessing.active_children()
    workers = [p.pid for p in children if p.pid and p.name.startswith("edge-worker")]
    kids = [p.pid for p in children if p.pid and not p.name.startswith("edge-worker")]
    a, t0, cpu0 = counts(), time.monotonic(), time.process_time()
    kids0, workers0 = sum(proc_cpu_s(p) for p in kids), sum(proc_cpu_s(p) for p in workers)
    await asyncio.sleep(seconds)
    b, wall = counts(), time.monotonic() - t0
    main_cores = (time.process_time() - cpu0) / wall
    ocr_cores = (sum(proc_cpu_s(p) for p in kids) - kids0) / wall
    worker_cores = (sum(proc_cpu_s(p) for p in workers) - workers0) / wall
    snap_bytes = metric_value(metrics, "edge_snapshots_bytes")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    result = {k: (b[k] - a[k]) / wall if k.startswith("inferred") else b[k] - a[k] for k in a}
    result["snapshot_mb"] = snap_bytes / 1e6
    result["main_cores"], result["ocr_cores"] = main_cores, ocr_cores
    result["worker_cores"] = worker_cores
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--processes", type=int, default=0, help="ingest.processes (camera workers)")
    ap.add_argument("--ocr", action="append", default=[], metavar="KEY=VALUE",
                    help="ocr setting of the OCR-on runs (YAML value), e.g. min_box_width=5000")
    args = ap.parse_args()
    extra = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.ocr)}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f} at start; commit {rev.stdout.strip()}; "
          f"ingest.processes {args.processes}")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cache = Path(os.environ.get("EDGE_BENCH_CACHE", tmp))
        cache.mkdir(parents=True, exist_ok=True)
        clip = plate_clip(cache / "plate-pass-960x540-25.mp4")
        rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(args.rounds):
            for ocr in (False, True):
                res = asyncio.run(
                    run_mode(clip, ocr, args.warmup, args.seconds, tmp, extra, args.processes)
                )
                rows[ocr].append(res)
                print(f"round {r + 1} OCR {'on ' if ocr else 'off'}: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in res.items()), flush=True)  # fmt: skip
    print("\n| OCR | " + " | ".join(f"{c} inferred fps" for c in CAMERAS)
          + " | OCR attempts | reads | skipped frames | snapshots | snapshot MB | service cores |"
          " camera worker cores | OCR process cores |")  # fmt: skip
    print("|---|" + "---|" * (len(CAMERAS) + 8))
    for ocr, res in rows.items():
        mean = {k: sum(x[k] for x in res) / len(res) for k in res[0]}
        cells = [f"{mean[f'inferred_{c}']:.2f}" for c in CAMERAS]
        cells += [f"{mean[k]:.1f}" for k in ("attempts", "reads", "skipped", "snapshots")]
        cells.append(f"{mean['snapshot_mb']:.2f}")
        cells += [f"{mean[k]:.2f}" for k in ("main_cores", "worker_cores", "ocr_cores")]
        print(f"| {'on' if ocr else 'off'} | " + " | ".join(cells) + " |")
    for c in CAMERAS:
        off = sum(x[f"inferred_{c}"] for x in rows[False]) / len(rows[False])
        on = sum(x[f"inferred_{c}"] for x in rows[True]) / len(rows[True])
        print(f"{c}: OCR on / off = {on / off:.3f}")


if __name__ == "__main__":
    main()
