"""Square vs rect letterbox: what the model costs per input size, and what rect changes.

(a) CPU time per picture of the dynamic YOLOX-nano on one ORT thread, batch 2, at 416×416,
    416×320 (a 4:3 camera under rect) and 416×256 (16:9);
(b) the detections of the three shared clips (every 5th frame of the first 600), square against
    rect: square boxes found again with the same class at IoU ≥ 0.5, their IoU and score changes.

Run: `python -m bench.bench_letterbox [--seconds 3]` (about 1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python bench/bench_letterbox.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.postprocess import iou_one_to_many
from edge.infer.prepare import prepare_model
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics

CLIPS = ["traffic_highway_overpass.mp4", "car-detection.mp4", "traffic_highway_cctv.mp4"]


def cpu_ms_per_picture(det: Detector, height: int, seconds: float) -> float:
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, height, 416)).astype(np.float32)
    det.infer(batch)
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        det.infer(batch)
        n += 1
    return 1000 * (time.process_time() - start) / (2 * n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per input size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "dyn.onnx"
        prepare_model(asset("models", "yolox_nano.onnx"), model)
        one = {"providers": ["cpu"], "workers": 1, "threads": 1, "max_batch": 2}
        square = Detector(DetectorConfig(model=model, letterbox="square", **one), EdgeMetrics())  # type: ignore[arg-type]
        rect = Detector(DetectorConfig(model=model, letterbox="rect", **one), EdgeMetrics())  # type: ignore[arg-type]
        print("(a) CPU ms per picture, one ORT thread, batch 2")
        for h in (416, 320, 256):
            print(f"  416×{h}: {cpu_ms_per_picture(rect, h, args.seconds):.2f}")
        total = found = extra = 0
        ious, dscore = [], []
        for clip in CLIPS:
            frames = list(islice(read_frames(str(asset("video", clip)), clip), 0, 600, 5))
            for s, r in zip(square.detect(frames), rect.detect(frames), strict=True):
                total += len(s)
                extra += max(0, len(r) - len(s))
                for k in range(len(s)):
                    same = np.flatnonzero(r.class_id == s.class_id[k])
                    if not len(same):
                        continue
                    iou = iou_one_to_many(s.xyxy[k], r.xyxy[same])
                    if iou.max() >= 0.5:
                        found += 1
                        ious.append(float(iou.max()))
                        dscore.append(abs(float(s.score[k] - r.score[same[iou.argmax()]])))
    iou_a, ds = np.array(ious), np.array(dscore)
    print(
        f"(b) square boxes {total}; found again in rect {found} ({found / total:.1%}); "
        f"rect has {extra} more over all frames\n"
        f"    IoU median {np.median(iou_a):.3f}, 5th percentile {np.percentile(iou_a, 5):.3f}; "
        f"|score change| median {np.median(ds):.4f}, 95th percentile {np.percentile(ds, 95):.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
