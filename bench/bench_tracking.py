"""What tracking and line counting add to each batch at 4 cameras.

Same machine, same run, batch by batch: the detector runs a batch of 4 frames (one per camera,
from the real clips, the model made dynamic-batch as the service does), then the 4 cameras'
`SortTracker.update` + `LineCounter.update` run on its detections. Reported per batch: ONNX
Runtime inference of the batch of 4, the whole detector stage (preprocess + inference +
postprocess), and tracking + counting of the 4 cameras; the goal is tracking < 5 % of the batch.
Frames are decoded beforehand so that decoding does not blur the comparison.

Run: `python -m bench.bench_tracking [--frames 150] [--out results.md]` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/bench_tracking.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from edge.assets import asset
from edge.config import DetectorConfig, LineConfig, TrackerConfig
from edge.infer.detector import Detector
from edge.infer.prepare import ensure_dynamic
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics
from edge.track.lines import LineCounter
from edge.track.sort import SortTracker
from edge.types import Detections, Frame

CAMERAS = {  # camera id → (clip, first frame, counting lines)
    "cctv": ("traffic_highway_cctv.mp4", 0, [((120, 140), (300, 140)), ((0, 120), (110, 120))]),
    "overpass": ("traffic_highway_overpass.mp4", 0, [((150, 300), (820, 300))]),
    "parking": ("car-detection.mp4", 0, [((0, 216), (768, 216))]),
    "cctv-late": ("traffic_highway_cctv.mp4", 300, [((120, 140), (300, 140))]),
}


def load(clip: str, skip: int, count: int, camera: str) -> list[Frame]:
    out: list[Frame] = []
    for frame in read_frames(str(asset("video", clip)), camera):
        if frame.seq >= skip:
            out.append(frame)
        if len(out) == count:
            break
    return out


def run(frames_per_camera: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    model = ensure_dynamic(asset("models", "yolox_nano.onnx"), tmp)
    # one batch of the 4 cameras at a time on ORT's threads, as these numbers were first taken
    detector = Detector(DetectorConfig(model=model, max_batch=4, workers=1), EdgeMetrics())
    frames = {cam: load(clip, skip, frames_per_camera, cam) for cam, (clip, skip, _) in
              CAMERAS.items()}  # fmt: skip
    n = min(len(f) for f in frames.values())
    trackers = {cam: SortTracker(TrackerConfig()) for cam in CAMERAS}
    counters = {
        cam: LineCounter([LineConfig(name=f"l{i}", points=p) for i, p in enumerate(lines)])
        for cam, (_, _, lines) in CAMERAS.items()
    }
    infer_s, infer_cpu, batch_s, track_s, track_cpu, tracks_seen = [], [], [], [], [], []
    replay: list[list[Detections]] = []
    for t in range(n):
        batch = [frames[cam][t] for cam in CAMERAS]
        start = time.perf_counter()
        pre = [detector.preprocess(f) for f in batch]
        stacked = np.stack([p[0] for p in pre])
        start_infer, cpu_infer = time.perf_counter(), time.process_time()
        raw = detector.infer(stacked)
        end_infer = time.perf_counter()
        infer_cpu.append(time.process_time() - cpu_infer)
        dets = [detector.postprocess(raw[k], pre[k][1]) for k in range(len(batch))]
        end_batch = time.perf_counter()
        cpu_start = time.thread_time()
        reported = 0
        for cam, d in zip(CAMERAS, dets, strict=True):
            tracks = trackers[cam].update(d)
            counters[cam].update(tracks, detector.class_names)
            reported += len(tracks)
        end_track = time.perf_counter()
        track_cpu.append(time.thread_time() - cpu_start)
        replay.append(dets)
        infer_s.append(end_infer - start_infer)
        batch_s.append(end_batch - start)
        track_s.append(end_track - end_batch)
        tracks_seen.append(reported)
    alone = replay_alone(replay, detector.class_names)
    warm = slice(5, None)  # the first batches pay for ORT's lazy set-up
    return {
        "batches": n - 5,
        "infer": infer_s[warm],
        "infer_cpu": infer_cpu[warm],
        "batch": batch_s[warm],
        "track": track_s[warm],
        "track_cpu": track_cpu[warm],
        "alone": alone[warm],
        "tracks_per_batch": float(np.mean(tracks_seen)),
        "provider": detector.provider,
    }


def replay_alone(batches: list[list[Detections]], class_names: list[str]) -> list[float]:
    """The same detections tracked again with nothing in between: tracking's own cost, without
    the cache misses and core sharing that follow an inference."""
    trackers = {cam: SortTracker(TrackerConfig()) for cam in CAMERAS}
    counters = {
        cam: LineCounter([LineConfig(name=f"l{i}", points=p) for i, p in enumerate(lines)])
        for cam, (_, _, lines) in CAMERAS.items()
    }
    out = []
    for dets in batches:
        start = time.perf_counter()
        for cam, d in zip(CAMERAS, dets, strict=True):
            counters[cam].update(trackers[cam].update(d), class_names)
        out.append(time.perf_counter() - start)
    return out


def report(r: dict[str, object]) -> str:
    ms = {k: (1000 * statistics.mean(r[k]), 1000 * statistics.median(r[k]))  # type: ignore[arg-type]
          for k in ("infer", "infer_cpu", "batch", "track", "track_cpu", "alone")}  # fmt: skip
    # Medians: the machine is shared, and a preempted batch inflates a mean without telling
    # anything about either stage. Means are in the table too.
    ratio_infer = ms["track"][1] / ms["infer"][1]
    ratio_batch = ms["track"][1] / ms["batch"][1]
    ratio_mean = ms["track"][0] / ms["batch"][0]
    lines = [
        "## Tracking overhead at 4 cameras (`bench/bench_tracking.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, ORT provider {r['provider']}; "
        "load average at the end "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        f"{r['batches']} batches of 4 frames (cctv, overpass, parking lot, cctv from frame 300), "
        f"{r['tracks_per_batch']:.1f} confirmed tracks reported per batch on average.",
        "",
        "| per batch of 4 cameras | mean ms | median ms |",
        "|---|---|---|",
        f"| ONNX Runtime inference, batch 4 | {ms['infer'][0]:.2f} | {ms['infer'][1]:.2f} |",
        f"| same, CPU time of all ORT threads | {ms['infer_cpu'][0]:.2f} | "
        f"{ms['infer_cpu'][1]:.2f} |",
        f"| detector stage (preprocess + inference + postprocess) | {ms['batch'][0]:.2f} | "
        f"{ms['batch'][1]:.2f} |",
        f"| SortTracker + LineCounter, 4 cameras | {ms['track'][0]:.3f} | {ms['track'][1]:.3f} |",
        f"| same, CPU time of the thread (immune to preemption) | {ms['track_cpu'][0]:.3f} | "
        f"{ms['track_cpu'][1]:.3f} |",
        f"| same detections tracked again alone (no inference in between) | "
        f"{ms['alone'][0]:.3f} | {ms['alone'][1]:.3f} |",
        "",
        f"Tracking adds **{100 * ratio_infer:.1f} %** to the batch's inference time and "
        f"**{100 * ratio_batch:.1f} %** to the detector stage (medians; goal < 5 %); "
        f"with means {100 * ratio_mean:.1f} % of the detector stage. In CPU time, which other "
        f"processes on the machine disturb far less, tracking is "
        f"{100 * ms['track_cpu'][1] / ms['infer_cpu'][1]:.1f} % of the inference's.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per camera")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    text = report(run(args.frames))
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
