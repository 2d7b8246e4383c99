"""The detector on real clips and the real YOLOX model against the independent reference."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector, FrozenBatchError
from edge.infer.model_check import ModelError
from edge.metrics import EdgeMetrics

YOLOX = asset("models", "yolox_nano.onnx")


def detector(model: Path = YOLOX, **kw) -> Detector:
    """Square letterbox, as the (square) reference; rect has its own tests."""
    config = {"letterbox": "square", **kw.pop("config", {})}
    metrics = kw.pop("metrics", None) or EdgeMetrics()
    return Detector(DetectorConfig(model=model, **config), metrics, **kw)


@pytest.fixture(scope="module")
def cctv(clip_frames) -> list:
    return clip_frames("traffic_highway_cctv.mp4", 8, step=90)


def test_yolox_agrees_with_reference_on_real_clips(
    cctv: list, reference, clip_frames, assert_agree
) -> None:
    det = detector()
    assert (det.family, det.input_size, det.class_names[2]) == ("yolox", 416, "car")
    frames = cctv + clip_frames("car-detection.mp4", 3, step=120)
    results = det.detect(frames)
    assert sum(len(r) for r in results) > 40  # the clips really have vehicles
    for frame, dets in zip(frames, results, strict=True):
        assert_agree(dets, reference(frame), f"{frame.camera_id}#{frame.seq}")
        assert set(dets.class_id.tolist()) <= {2, 3, 5, 7}


def test_preprocess_is_letterboxed_model_sized_bgr(cctv: list) -> None:
    det = detector()
    tensor, lb = det.preprocess(cctv[0])
    assert tensor.shape == (3, 416, 416) and tensor.dtype == np.float32
    assert (lb.scale, lb.pad_x, lb.pad_y, lb.src_w, lb.src_h) == (1.3, 0, 0, 320, 240)
    expected = cctv[0].to_bgr(416, 312).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(tensor[:, :312], expected)
    assert (tensor[:, 312:] == 114).all()


def test_batch_of_8_equals_8_single_runs(dynamic_model: Path, cctv: list) -> None:
    det = detector(dynamic_model, config={"max_batch": 8})
    assert det.is_dynamic_batch and det.max_batch == 8
    batch = np.stack([det.preprocess(f)[0] for f in cctv])
    together = det.infer(batch)
    alone = np.concatenate([det.infer(b[None]) for b in batch])
    assert together.shape == (8, 3549, 85)
    np.testing.assert_allclose(together, alone, atol=1e-4, rtol=0)
    batched = det.detect(cctv)
    for frame, dets in zip(cctv, batched, strict=True):
        single = det.detect([frame])[0]
        np.testing.assert_allclose(dets.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_array_equal(dets.class_id, single.class_id)
        np.testing.assert_allclose(dets.score, single.score, atol=1e-5)


def test_frozen_model_refuses_batches_but_runs_one_by_one(cctv: list) -> None:
    det = detector()
    assert not det.is_dynamic_batch and det.max_batch == 1
    batch = np.stack([det.preprocess(f)[0] for f in cctv[:2]])
    with pytest.raises(FrozenBatchError, match="edge model prepare"):
        det.infer(batch)
    assert len(det.detect(cctv[:3])) == 3


def test_workers_run_batches_side_by_side_with_the_same_results(
    cctv: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the frozen model (batch 1) and 2 workers, `detect_stream` runs its batches through
    `detect_batch` on two threads at once (they meet at a barrier: one batch run alone would
    break it), and returns every frame in order with one worker's results."""
    two, one = detector(config={"workers": 2}), detector(config={"workers": 1})
    threads: set[str] = set()
    run = two.detect_batch
    barrier = threading.Barrier(2, timeout=20)

    calls = itertools.count()

    def spy(frames: list, **kw: Any) -> list:
        threads.add(threading.current_thread().name)
        if next(calls) < 2:
            barrier.wait()  # the first two batches run at once, or this breaks
        return run(frames, **kw)

    monkeypatch.setattr(two, "detect_batch", spy)
    streamed = list(two.detect_stream(iter(cctv)))
    assert [f for f, _ in streamed] == cctv
    assert len(threads) == 2 and all(t.startswith("edge-detect") for t in threads), threads
    for (_, a), b in zip(streamed, one.detect(cctv), strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_array_equal(a.class_id, b.class_id)


def test_stream_reads_ahead_while_a_batch_runs_and_records_each_frame_once(
    cctv: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`detect_stream` (what `edge detect` and `edge analyze` run) reads the next frame while a
    batch runs (each batch but the last waits here for that read: a reader that waited for the
    batch would time out), gives every frame back in order, and the one path records each
    frame's stages and detections exactly once."""
    metrics = EdgeMetrics()
    det = detector(config={"workers": 1}, metrics=metrics)  # frozen model: batches of 1
    read: list[int] = []

    def frames():
        for i, frame in enumerate(cctv):
            read.append(i)
            yield frame

    run = det.detect_batch

    def spy(batch: list, **kw: Any) -> list:
        i = next(k for k, f in enumerate(cctv) if f is batch[0])
        deadline = time.monotonic() + 10
        while i + 1 < len(cctv) and len(read) <= i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert i + 1 == len(cctv) or len(read) > i + 1, f"frame {i + 1} not read during batch {i}"
        return run(batch, **kw)

    monkeypatch.setattr(det, "detect_batch", spy)
    streamed = list(det.detect_stream(frames()))
    assert [f for f, _ in streamed] == cctv
    cam = cctv[0].camera_id
    for stage in ("preprocess", "inference", "postprocess"):
        count = metrics.registry.get_sample_value(
            "edge_stage_seconds_count", {"camera": cam, "stage": stage}
        )
        assert count == len(cctv), stage
    counted = sum(
        metrics.registry.get_sample_value(
            "edge_detections_total", {"camera": cam, "class": name}
        ) or 0
        for name in ("car", "motorcycle", "bus", "truck")
    )
    assert counted == sum(len(d) for _, d in streamed) > 0
    runs = metrics.registry.get_sample_value("edge_batch_inference_seconds_count")
    assert runs == len(cctv)


def test_io_binding_path_gives_the_plain_results(dynamic_model: Path, cctv: list) -> None:
    """Also where a GPU is: both on one provider; batch sizes new and repeated; the caller's
    array is left as it was."""
    bound = detector(dynamic_model, io_binding=True)
    plain = detector(dynamic_model, io_binding=False, config={"providers": [bound.provider]})
    assert bound.io_binding and not plain.io_binding
    tensors = np.stack([plain.preprocess(f)[0] for f in cctv])
    first = tensors[:4].copy()
    for batch in (first, tensors[4:8], tensors[:2], tensors[2:6]):  # shapes new and reused
        np.testing.assert_allclose(bound.infer(batch), plain.infer(batch), atol=1e-5)
    np.testing.assert_array_equal(first, tensors[:4])  # the caller's array is never written


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu and an NVIDIA GPU (the 'gpu' extra)",
)
def test_cuda_runs_padded_batches_and_agrees(dynamic_model: Path, cctv: list, assert_agree) -> None:
    gpu = detector(dynamic_model, config={"providers": ["cuda", "cpu"]})
    assert gpu.provider == "cuda" and gpu.pad_to == gpu.max_batch == 8 and not gpu.io_binding
    cpu = detector(dynamic_model, config={"providers": ["cpu"]})
    for g, c in zip(gpu.detect(cctv[:5]), cpu.detect(cctv[:5]), strict=True):
        assert_agree(g, c, "cuda vs cpu")
    auto = Detector(DetectorConfig(model=dynamic_model, providers=["cuda", "cpu"]), EdgeMetrics())
    assert not auto.rect  # one input shape on a GPU


def test_padded_batches_give_each_frame_its_own_result(dynamic_model: Path, cctv: list) -> None:
    """What a GPU does (pad every batch to max_batch rows with blank pictures), checked here on
    the CPU: the padding rows are run and dropped, the real rows keep their results."""
    plain = detector(dynamic_model)
    padded = detector(dynamic_model)
    padded.pad_to = 8
    tensors = [plain.preprocess(f)[0] for f in cctv[:3]]
    want = plain.infer(np.stack(tensors))
    got = padded.infer(np.stack(tensors))
    assert got.shape == want.shape == (3, *want.shape[1:])
    np.testing.assert_allclose(got, want, atol=1e-4)
    for g, w in zip(padded.infer_each(tensors), want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_one_log_line_names_the_provider(caplog: pytest.LogCaptureFixture) -> None:
    metrics = EdgeMetrics()
    with caplog.at_level(logging.INFO):
        det = detector(config={"providers": ["cuda", "cpu"]}, metrics=metrics)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.infer.providers"]
    assert len(lines) == 1 and f"provider {det.provider}" in lines[0]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert det.provider == ("cuda" if has_cuda else "cpu")
    if not has_cuda:
        assert "fallback" in lines[0] and "cuda" in lines[0]
    labels = {"provider": det.provider, "family": "yolox", "workers": str(det.workers)}
    labels["threads"] = str(det.plan.threads)
    info = metrics.registry.get_sample_value("edge_onnx_info", labels)
    assert info == 1.0


def test_class_filter_and_metrics(cctv: list) -> None:
    metrics = EdgeMetrics()
    trucks_only = detector(config={"classes": ["truck"], "conf": 0.1}, metrics=metrics)
    results = trucks_only.detect(cctv)
    assert all(set(r.class_id.tolist()) <= {7} for r in results)
    n = sum(len(r) for r in results)
    counted = metrics.registry.get_sample_value(
        "edge_detections_total", {"camera": cctv[0].camera_id, "class": "truck"}
    )
    assert n > 0 and counted == n
    with pytest.raises(ModelError) as unknown:
        detector(config={"classes": ["car", "lorry"]})
    assert str(unknown.value).startswith(f"{YOLOX}: has no class 'lorry' (its 80 classes: person,")
    assert unknown.value.field == "classes"


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_decoded_layouts_with_real_weights(
    layout: str, baked_model, cctv: list, reference, assert_agree
) -> None:
    """YOLOX with its decode baked in is a real YOLOv5 (or, transposed, YOLOv8) model."""
    det = detector(baked_model(layout))
    assert det.family == layout
    assert (det.color, det.unit_scale, det.center_pad) == ("rgb", True, True)
    for frame, dets in zip(cctv[:4], det.detect(cctv[:4]), strict=True):
        assert_agree(dets, reference(frame, rgb_model=True), f"{layout} #{frame.seq}")


def test_preprocess_override_changes_colour_and_scale(baked_model, cctv: list) -> None:
    det = detector(baked_model("yolov5"), config={"preprocess": {"color": "bgr", "scale": "raw"}})
    tensor, _ = det.preprocess(cctv[0])
    assert (det.color, det.unit_scale) == ("bgr", False) and tensor.max() > 1.5
