"""The detector on an NVIDIA GPU: agreement with the CPU, IOBinding, FP16, workers, TensorRT.

Only meaningful where onnxruntime-gpu sees a GPU (BENCHMARKS.md, "GPU"); elsewhere it says so and
exits 2. All in one run on one machine:
  (a) agreement on real frames of every shared clip: CUDA FP32 and CUDA FP16 against CPU FP32
      (detections matched by class and IoU; worst box IoU and score difference of the matched);
  (b) `Detector.infer` alone on CUDA at batch 1, 8, 32 of prepared tensors, FP32 and FP16, with
      IOBinding (edge's default on a GPU) and with a plain `session.run`;
  (c) `Detector.detect` (preprocess from the decoded picture + infer + postprocess) over decoded
      frames, 1, 2 and 4 workers: what one process can push through the GPU (FP16 too with
      `--all`);
  (d) TensorRT asked for: which provider runs and the one log line that says why.

Run: `python -m bench.bench_gpu [--seconds 2] [--frames 64] [--all]` (about 1-2 min on an H100/H200;
without `--all`, FP16 and TensorRT, settled in runs G1-G2, are left out).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort

if __package__ in (None, ""):  # `python bench/bench_gpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.postprocess import iou_one_to_many
from edge.infer.prepare import prepare_model
from edge.metrics import EdgeMetrics
from edge.types import Detections, Frame

CLIPS = ["traffic_highway_cctv.mp4", "traffic_highway_overpass.mp4", "car-detection.mp4"]


def read_frames(count: int) -> list[Frame]:
    """`count` decoded frames per clip, every 3rd one (the pictures the detector sees live)."""
    import av

    frames: list[Frame] = []
    for clip in CLIPS:
        with av.open(str(asset("video", clip))) as container:
            decoded = (im for i, im in enumerate(container.decode(video=0)) if i % 3 == 0)
            for _, image in zip(range(count), decoded, strict=False):
                frames.append(Frame(clip, len(frames), float(image.time or 0), 0.0, image))
    return frames


def detector(model: Path, provider: str, **config: object) -> Detector:
    """Square letterbox (auto is rect on a CPU, square on a GPU: compare like with like)."""
    config.setdefault("letterbox", "square")
    cfg = DetectorConfig(model=model, providers=[provider], **config)  # type: ignore[arg-type]
    det = Detector(cfg, EdgeMetrics())
    if det.provider not in (provider, "tensorrt"):
        raise SystemExit(f"{provider} asked for, {det.provider} runs: see the log line above")
    return det


def agreement(a: list[Detections], b: list[Detections]) -> str:
    """Matched boxes (same class, best IoU), worst IoU and score difference among them."""
    total = matched = 0
    worst_iou, worst_score = 1.0, 0.0
    for x, y in zip(a, b, strict=True):
        total += max(len(x), len(y))
        for k in range(len(x)):
            same = np.flatnonzero(y.class_id == x.class_id[k])
            if not len(same):
                continue
            ious = iou_one_to_many(x.xyxy[k], y.xyxy[same])
            j = same[int(np.argmax(ious))]
            if ious.max() < 0.5:
                continue
            matched += 1
            worst_iou = min(worst_iou, float(ious.max()))
            worst_score = max(worst_score, abs(float(x.score[k] - y.score[j])))
    return (
        f"{matched}/{total} boxes matched, worst IoU {worst_iou:.4f}, "
        f"worst score diff {worst_score:.2e}"
    )


def rate(fn: object, seconds: float) -> float:
    """Calls per second of `fn` over `seconds` after two warm-up calls."""
    for _ in range(2):
        fn()  # type: ignore[operator]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()  # type: ignore[operator]
        n += 1
    return n / (time.perf_counter() - start)


class Report(list[str]):
    """Lines printed as they come: a run cut off by its time limit still shows what it measured."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)

    def __iadd__(self, more: Iterable[str]) -> Report:  # type: ignore[override]
        for line in more:
            self.append(line)
        return self


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    parser.add_argument("--frames", type=int, default=64, help="decoded frames per clip")
    parser.add_argument(
        "--provider",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: a dry run of this script where there is no GPU",
    )
    parser.add_argument("--all", action="store_true", help="FP16 and TensorRT too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    gpu = args.provider
    if gpu == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        print("no CUDAExecutionProvider in this onnxruntime build: nothing to measure")
        return 2
    frames = read_frames(args.frames)
    lines = Report()
    lines.append(f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})")
    with tempfile.TemporaryDirectory() as tmp:
        models = {"fp32": Path(tmp) / "dyn.onnx"}
        if args.all:
            models["fp16"] = Path(tmp) / "dyn16.onnx"
        for kind, path in models.items():
            _, check = prepare_model(asset("models", "yolox_nano.onnx"), path, fp16=kind == "fp16")
            lines.append(f"prepare {kind}: {check.describe()}")
        cpu = detector(models["fp32"], "cpu").detect(frames)
        lines += ["", f"(a) agreement with CPU FP32 on {len(frames)} frames of {len(CLIPS)} clips"]
        for kind, path in models.items():
            det = detector(path, gpu)
            lines.append(f"- {gpu.upper()} {kind}: {agreement(det.detect(frames), cpu)}")

        lines += ["", f"(b) Detector.infer on {gpu.upper()}, prepared 416² tensors, img/s"]
        lines.append("| model | batch | IOBinding | plain run | IOBinding / plain |")
        lines.append("|---|---:|---:|---:|---:|")
        probe = detector(models["fp32"], "cpu", letterbox="square")
        tensors = np.stack([probe.preprocess(f)[0] for f in frames[:32]])
        for kind, path in models.items():
            bound, plain = (detector(path, gpu, letterbox="square") for _ in range(2))
            bound.io_binding, plain.io_binding = True, False
            bound.pad_to = plain.pad_to = 0  # the batch sizes as given
            for n in (1, 8, 32):
                batch = np.ascontiguousarray(tensors[np.arange(n) % len(tensors)])
                b = n * rate(lambda d=bound, x=batch: d.infer(x), args.seconds)
                p = n * rate(lambda d=plain, x=batch: d.infer(x), args.seconds)
                lines.append(f"| {kind} | {n} | {b:.0f} | {p:.0f} | {b / p:.2f} |")

        stages = "preprocess + infer + postprocess"
        lines += ["", f"(c) Detector.detect on {gpu.upper()} ({stages}), batch ≤ 8"]
        lines.append("| model | workers | frames/s |")
        lines.append("|---|---:|---:|")
        for kind, path in models.items():
            for workers in (1, 2, 4):
                det = detector(path, gpu, workers=workers, max_batch=8)
                fps = len(frames) * rate(lambda d=det: d.detect(frames), args.seconds)
                lines.append(f"| {kind} | {workers} | {fps:.0f} |")

        if not args.all:
            return 0
        lines += ["", "(d) TensorRT asked for (engine cache in a temporary folder)"]
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
        logging.getLogger("edge.infer.providers").addHandler(handler)
        trt = {"enabled": True, "engine_cache_dir": Path(tmp) / "trt"}
        det = detector(models["fp32"], gpu, tensorrt=trt)
        agree = agreement(det.detect(frames[:16]), cpu[:16])
        lines.append(f"- provider {det.provider}; log: {records[-1] if records else '(none)'}")
        lines.append(f"- agreement with CPU FP32 on 16 frames: {agree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
