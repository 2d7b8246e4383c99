"""Postprocess cost per frame: one picture at a time vs. a whole batch in one pass.

The raw outputs of the shared YOLOX-nano on 64 frames of the overpass clip (every 3rd frame,
square 416 letterbox) are computed once; then the CPU time per frame of `postprocess` called per
picture is compared with `postprocess_batch` over batches of 2, 8 and 32, in one run. The detections
of both ways are checked to be the same.

With `--after-run`, it also measures what the batch threads pay: a batch of 2 postprocessed right
after the ONNX Runtime run that made it (one ORT thread, as on a CPU) against the same outputs
postprocessed again, and the alternative of scoring inside the graph: a head appended to the
prepared model (best class by ArgMax, its score × objectness, boxes: 6 columns instead of 85),
its extra cost inside ORT against what it saves outside.

Run: `python -m bench.bench_postprocess [--repeat 20] [--after-run]` (about 20 s on 2 cores,
another 40 s with `--after-run`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

if __package__ in (None, ""):  # `python bench/bench_postprocess.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.postprocess import postprocess, postprocess_batch
from edge.infer.prepare import ensure_dynamic
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--after-run", action="store_true")
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
    if args.after_run:
        after_run(frames[:2], args.repeat * 4)


def score_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with a second output `edge_scores`, B×A×6: the box columns, the best class's score
    × objectness and that class's index (YOLOX layout: B×A×(5+C))."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g, raw = out.graph, out.graph.output[0].name
    for name, value in (("h0", 0), ("h4", 4), ("h5", 5), ("hend", 2**62), ("hax", 2)):
        g.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    node = helper.make_node
    g.node.extend([
        node("Slice", [raw, "h0", "h4", "hax"], ["h_box"]),
        node("Slice", [raw, "h4", "h5", "hax"], ["h_obj"]),
        node("Slice", [raw, "h5", "hend", "hax"], ["h_cls"]),
        node("ArgMax", ["h_cls"], ["h_idx"], axis=2, keepdims=1),
        node("GatherElements", ["h_cls", "h_idx"], ["h_top"], axis=2),
        node("Mul", ["h_top", "h_obj"], ["h_best"]),
        node("Cast", ["h_idx"], ["h_idf"], to=TensorProto.FLOAT),
        node("Concat", ["h_box", "h_best", "h_idf"], ["edge_scores"], axis=2),
    ])  # fmt: skip
    g.output.append(helper.make_tensor_value_info("edge_scores", TensorProto.FLOAT, None))
    return out


def after_run(frames: list, repeat: int) -> None:
    """CPU ms per batch of 2 (see module doc), each way alternated with the others."""
    path = ensure_dynamic(asset("models", "yolox_nano.onnx"), Path(tempfile.gettempdir()))
    det = Detector(
        DetectorConfig(model=path, letterbox="square", workers=1, threads=1), EdgeMetrics()
    )
    pictures = [det.preprocess(f) for f in frames]
    batch = np.stack([t for t, _ in pictures])
    boxes = [lb for _, lb in pictures]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    head = ort.InferenceSession(
        score_head(onnx.load(str(path))).SerializeToString(), options,
        providers=["CPUExecutionProvider"],
    )  # fmt: skip
    feed = {det.layout.input_name: batch}
    took = dict.fromkeys(("ORT run", "postprocess after it", "postprocess again",
                          "ORT run with score head", "score filter after it"), 0.0)  # fmt: skip
    for _ in range(repeat):
        t0 = time.thread_time()
        raw = det.session.run([det.layout.output_name], feed)[0]
        t1 = time.thread_time()
        det.postprocess_batch(raw, boxes)
        t2 = time.thread_time()
        det.postprocess_batch(raw, boxes)
        t3 = time.thread_time()
        scores = head.run(["edge_scores"], feed)[0]
        t4 = time.thread_time()
        pic, anchor = np.nonzero(scores[:, :, 4] > det.params.conf)
        scores[pic, anchor]
        t5 = time.thread_time()
        for key, dt in zip(took, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            took[key] += dt
    print(f"\nA batch of 2, right after its ORT run (one thread), {repeat} rounds:\n")
    print("| step | CPU ms per batch of 2 |")
    print("|---|---:|")
    for key, total in took.items():
        print(f"| {key} | {1e3 * total / repeat:.3f} |")


if __name__ == "__main__":
    main()
