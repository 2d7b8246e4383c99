"""`detector.letterbox: rect` (and `auto`, the default) on the real model: smaller inputs, the
reference's detections; square where the graph cannot take other sizes.

The reference (conftest) letterboxes onto its own rect canvas and runs the untouched YOLOX file
with its input declared free; edge's rect detector must agree with it as closely as the square
detector agrees with the square reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.model_check import ModelError
from edge.infer.postprocess import iou_one_to_many
from edge.metrics import EdgeMetrics
from edge.testing import free_port, run_edge
from edge.types import Frame


def rect_detector(model: Path, **config: object) -> Detector:
    return Detector(DetectorConfig(model=model, letterbox="rect", **config), EdgeMetrics())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cctv_frames(clip_frames) -> list[Frame]:
    return clip_frames("traffic_highway_cctv.mp4", 3, step=90)


@pytest.fixture(scope="module")
def mixed(clip_frames) -> list[Frame]:
    """4:3 and 16:9 frames interleaved, so that batches hold two input sizes."""
    four_three = clip_frames("traffic_highway_cctv.mp4", 4, step=90)
    wide = clip_frames("traffic_highway_overpass.mp4", 2, step=150)
    wide += clip_frames("car-detection.mp4", 2, step=120)
    return [f for pair in zip(four_three, wide, strict=True) for f in pair]


def test_rect_inputs_are_smaller_and_detections_match_the_reference(
    dynamic_model: Path, mixed: list[Frame], reference, assert_agree
) -> None:
    det = rect_detector(dynamic_model, max_batch=8, workers=1)
    shapes = [det.preprocess(f)[0].shape for f in mixed]
    assert shapes[0::2] == [(3, 320, 416)] * 4  # 320×240 → 416×312, padded to 320
    assert shapes[1::2] == [(3, 256, 416)] * 4  # 16:9 → 416×234, padded to 256
    results = det.detect(mixed)  # one chunk of 8 pictures of two sizes
    assert sum(len(r) for r in results) > 20
    for frame, dets in zip(mixed, results, strict=True):
        assert_agree(dets, reference(frame, rect=True), f"{frame.camera_id}#{frame.seq}")


def test_rect_finds_what_square_finds(dynamic_model: Path, clip_frames) -> None:
    """Rect only drops padding the square input had: nearly every box stays (bench_letterbox: 98.7 %
    of 1374 over three clips, median IoU 0.998)."""
    frames = [
        f
        for clip in (
            "traffic_highway_cctv.mp4",
            "traffic_highway_overpass.mp4",
            "car-detection.mp4",
        )
        for f in clip_frames(clip, 16, step=30)
    ]
    square = Detector(
        DetectorConfig(model=dynamic_model, letterbox="square"), EdgeMetrics()
    ).detect(frames)
    rect = rect_detector(dynamic_model).detect(frames)
    total = kept = 0
    for s, r in zip(square, rect, strict=True):
        total += len(s)
        for box, cls in zip(s.xyxy, s.class_id, strict=True):
            same = r.xyxy[r.class_id == cls]
            kept += bool(len(same)) and float(iou_one_to_many(box, same).max()) >= 0.9
    assert total > 40 and kept >= 0.93 * total, (kept, total)


def test_rect_is_refused_for_a_model_fixed_to_its_size(baked_model) -> None:
    """A decode grid baked into the graph for 416² cannot serve other sizes: a clear error."""
    with pytest.raises(ModelError, match=r"rect needs a model .* use square"):
        rect_detector(baked_model("yolov5"))


def test_edge_run_refuses_rect_for_such_a_model_in_one_line(baked_model, tmp_path: Path) -> None:
    config = tmp_path / "cameras.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"id": "c1", "url": f"rtsp://127.0.0.1:{free_port()}/x"}],
                "detector": {"model": str(baked_model("yolov5")), "letterbox": "rect",
                             "family": "yolov5", "auto_prepare": False},
                "server": {"port": free_port()},
            }
        )
    )  # fmt: skip
    run = run_edge("run", "--config", config)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith("edge: detector.letterbox: "), run.stderr
    assert run.stderr.splitlines()[-1].endswith("; use square"), run.stderr


def test_auto_is_rect_where_the_graph_allows_it(dynamic_model: Path, mixed: list[Frame]) -> None:
    """On the CPU (on a GPU auto is square: test_detector_real's CUDA test)."""
    auto = Detector(
        DetectorConfig(model=dynamic_model, max_batch=8, workers=1, providers=["cpu"]),
        EdgeMetrics(),
    )
    assert auto.rect
    assert auto.preprocess(mixed[1])[0].shape == (3, 256, 416)
    rect = rect_detector(dynamic_model, max_batch=8, workers=1)
    for a, r in zip(auto.detect(mixed), rect.detect(mixed), strict=True):
        np.testing.assert_array_equal(a.xyxy, r.xyxy)


def test_auto_is_square_for_a_model_fixed_to_its_size(
    baked_model, cctv_frames: list[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    """The decode baked for 416² keeps the square input, says why, and detects as square does."""
    model = baked_model("yolov5")
    with caplog.at_level("INFO", logger="edge.infer.detector"):
        auto = Detector(DetectorConfig(model=model, providers=["cpu"]), EdgeMetrics())
    assert not auto.rect
    assert auto.preprocess(cctv_frames[0])[0].shape == (3, 416, 416)
    assert "detector.letterbox auto: square for" in caplog.text
    square = Detector(DetectorConfig(model=model, letterbox="square"), EdgeMetrics())
    for a, s in zip(auto.detect(cctv_frames), square.detect(cctv_frames), strict=True):
        np.testing.assert_array_equal(a.xyxy, s.xyxy)
        np.testing.assert_array_equal(a.score, s.score)


def test_rect_batches_reject_wrong_sizes(dynamic_model: Path) -> None:
    det = rect_detector(dynamic_model)
    det.infer(np.zeros((2, 3, 256, 416), np.float32))
    with pytest.raises(ValueError, match="multiples of 32"):
        det.infer(np.zeros((1, 3, 250, 416), np.float32))
    with pytest.raises(ValueError, match="multiples of 32"):
        det.infer(np.zeros((1, 3, 448, 416), np.float32))
