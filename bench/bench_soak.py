"""Memory over time: `edge run` on three simulated cameras, RSS sampled from its own /metrics.

Why: the service runs for months unattended, so every queue must stay bounded and nothing may
accumulate per frame, per track or per reconnect. A slow leak shows as a slope of RSS over time
once the warm-up (model load, first allocations, ORT arenas) is over. The run also restarts the
camera simulator once in the middle, so reconnect paths are part of what is measured.

Run: `python -m bench.bench_soak [--minutes 10] [--warmup 60] [--interval 5]`.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from edge.assets import asset
from edge.ingest.camsim import CameraSimulator
from edge.testing import ServiceProcess, free_port

CLIPS = {
    "highway": "traffic_highway_cctv.mp4",
    "overpass": "traffic_highway_overpass.mp4",
    "parking": "car-detection.mp4",
}
_RSS = re.compile(r"^process_resident_memory_bytes (\S+)$", re.M)
_FRAMES = re.compile(r'^edge_frames_published_total\{camera="[^"]+"\} (\S+)$', re.M)


def sample(svc: ServiceProcess) -> tuple[float, float]:
    """(RSS bytes, frames published so far) from the service's own metrics."""
    text = svc.text("/metrics")
    rss = _RSS.search(text)
    assert rss is not None, "process collector missing from /metrics"
    return float(rss.group(1)), sum(float(v) for v in _FRAMES.findall(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds left out of the fit")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    with CameraSimulator({n: asset("video", c) for n, c in CLIPS.items()}) as sim:
        port = free_port()
        config = {
            "cameras": [{"id": n, "url": sim.url(n)} for n in CLIPS],
            "detector": {"prepared_dir": str(tmp / "models")},
            "events": {"jsonl": str(tmp / "events.jsonl")},
            "server": {"port": port},
        }
        (tmp / "cameras.yaml").write_text(yaml.safe_dump(config))
        svc = ServiceProcess(tmp / "cameras.yaml", port, tmp / "edge.log")
        try:
            svc.wait_ready()
            rows = run_samples(svc, sim, args)
        finally:
            svc.stop()
    report(rows, args)


def run_samples(
    svc: ServiceProcess, sim: CameraSimulator, args: argparse.Namespace
) -> list[tuple[float, float, float]]:
    start = time.monotonic()
    end = start + args.minutes * 60
    restarted = False
    rows = []
    while time.monotonic() < end:
        now = time.monotonic() - start
        rss, frames = sample(svc)
        rows.append((now, rss, frames))
        print(f"{now:7.0f} s  RSS {rss / 2**20:7.1f} MiB  frames {frames:9.0f}", flush=True)
        if not restarted and now > args.minutes * 30:
            sim.restart()  # every camera reconnects once, mid-run
            restarted = True
        time.sleep(args.interval)
    return rows


def report(rows: list[tuple[float, float, float]], args: argparse.Namespace) -> None:
    data = np.array([r for r in rows if r[0] >= args.warmup])
    if len(data) < 6:
        raise SystemExit("run longer than the warm-up to fit a slope")
    t_h, rss_mb = data[:, 0] / 3600, data[:, 1] / 1e6
    half = len(data) // 2
    slope = float(np.polyfit(t_h, rss_mb, 1)[0])
    slope_late = float(np.polyfit(t_h[half:], rss_mb[half:], 1)[0])
    fps = (data[-1, 2] - data[0, 2]) / (data[-1, 0] - data[0, 0])
    print(
        f"\nmachine: {os.cpu_count()} CPUs; {args.minutes:.0f} min, fit after {args.warmup:.0f} s\n"
        f"RSS after warm-up {rss_mb[0]:.1f} MB, at end {rss_mb[-1]:.1f} MB, "
        f"max {rss_mb.max():.1f} MB; {fps:.1f} frames/s published\n"
        f"slope after warm-up {slope:+.1f} MB/h; over the second half {slope_late:+.1f} MB/h"
    )


if __name__ == "__main__":
    main()
