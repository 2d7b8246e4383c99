"""Postprocess cost per frame: one picture at a time vs. a whole batch in one pass.

The raw outputs of the shared YOLOX-nano on 64 frames of the overpass clip (every 3rd frame,
square 416 letterbox) are computed once; then the CPU time per frame of `postprocess` called per
picture is compared with `postprocess_batch` over batches of 2, 8 and 32, in one run. The detections
of both ways are checked to be the same.

Run: `python -m bench.bench_postprocess [--repeat 20]` (about 20 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python bench/bench_postprocess.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.postprocess import postprocess, postprocess_batch
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    det = Detector(
        DetectorConfig(model=asset("models", "yolox_nano.onnx"), letterbox="square"), EdgeMetrics()
    )
    frames = list(
        islice(read_frames(str(asset("video", "traffic_highway_overpass.mp4"))), 0, 192, 3)
    )
    prepared = [det.preprocess(f) for f in frames]
    raw = np.stack([det.infer(t[None])[0] for t, _ in prepared])
    boxes = [lb for _, lb in prepared]
    n = len(frames)
    args_ = (det.family, det.input_size)

    def per_picture() -> list:
        return [postprocess(raw[k], *args_, boxes[k], det.params) for k in range(n)]

    def batched(size: int):
        def run() -> list:
            out = []
            for s in range(0, n, size):
                out += postprocess_batch(raw[s : s + size], *args_, boxes[s : s + size], det.params)
            return out

        return run

    ways = {"per picture": per_picture, **{f"batch {b}": batched(b) for b in (2, 8, 32)}}
    reference = per_picture()
    print(f"{n} frames, {sum(map(len, reference))} detections, {args.repeat} repeats\n")
    print("| way | CPU ms per frame | vs per picture |")
    print("|---|---:|---:|")
    base = None
    for name, way in ways.items():
        got = way()
        assert all(
            a.class_id.tolist() == b.class_id.tolist() and np.allclose(a.xyxy, b.xyxy)
            for a, b in zip(reference, got, strict=True)
        ), f"{name} differs from per-picture postprocess"
        start = time.thread_time()
        for _ in range(args.repeat):
            way()
        ms = (time.thread_time() - start) / (args.repeat * n) * 1e3
        base = base or ms
        print(f"| {name} | {ms:.3f} | {base / ms:.2f}× |")


if __name__ == "__main__":
    main()
