"""A prepared model takes uint8 pictures and casts and scales them in its graph: the same
detections as the float32 path, a quarter of the bytes per picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.assets import asset
from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.infer.layout import INPUT_SCALE_KEY
from edge.infer.model_check import ModelError, check_model
from edge.infer.prepare import ensure_dynamic, prepare_model
from edge.metrics import EdgeMetrics
from edge.testing import run_edge

YOLOX = asset("models", "yolox_nano.onnx")


def detector(model: Path, **config: object) -> Detector:
    return Detector(
        DetectorConfig(model=model, letterbox="square", max_batch=4, **config), EdgeMetrics()
    )


@pytest.fixture(scope="module")
def cctv(clip_frames) -> list:
    return clip_frames("traffic_highway_cctv.mp4", 4, step=90)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("f32") / "yolox_f32.onnx"
    _, check = prepare_model(YOLOX, out, uint8=False)
    assert check.ok, check.describe()
    return out


def _graph_input(path: Path) -> onnx.ValueInfoProto:
    return onnx.load(str(path)).graph.input[0]


def test_prepared_model_takes_uint8_and_matches_the_float_path(
    dynamic_model: Path, float_model: Path, cctv: list, assert_agree
) -> None:
    assert _graph_input(dynamic_model).type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert _graph_input(float_model).type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    u8, f32 = detector(dynamic_model), detector(float_model)
    assert (u8.uint8, f32.uint8) == (True, False)
    tensor, _ = u8.preprocess(cctv[0])
    assert tensor.dtype == np.uint8 and tensor.shape == (3, 416, 416)
    reference, _ = f32.preprocess(cctv[0])  # YOLOX: BGR 0-255, so the same values as float
    np.testing.assert_array_equal(tensor.astype(np.float32), reference)
    got, want = u8.detect(cctv), f32.detect(cctv)
    assert sum(len(d) for d in want) > 10
    for frame, a, b in zip(cctv, got, want, strict=True):
        assert_agree(a, b, f"#{frame.seq}")


def test_unit_scaled_family_divides_in_the_graph(
    baked_model, tmp_path: Path, cctv: list, assert_agree
) -> None:
    """YOLOv5 is trained on RGB 0-1: the graph divides by 255, the host feeds 0-255."""
    out = tmp_path / "v5_u8.onnx"
    _, check = prepare_model(baked_model("yolov5"), out)
    assert check.ok, check.describe()
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta[INPUT_SCALE_KEY] == "unit"
    u8, f32 = detector(out), detector(baked_model("yolov5"))
    assert u8.uint8 and u8.preprocess(cctv[0])[0].max() > 1.5
    for frame, a, b in zip(cctv, u8.detect(cctv), f32.detect(cctv), strict=True):
        assert_agree(a, b, f"v5 #{frame.seq}")


def test_a_scale_override_against_the_graph_is_one_line(dynamic_model: Path) -> None:
    with pytest.raises(ModelError) as caught:
        detector(dynamic_model, preprocess={"scale": "unit"})
    assert caught.value.field == "preprocess.scale"
    assert "takes uint8 pictures scaled raw in its graph" in str(caught.value)


def test_automatic_copy_is_uint8_per_scale_and_reused(tmp_path: Path) -> None:
    raw = ensure_dynamic(YOLOX, tmp_path)
    assert raw.name.endswith(".u8-raw.onnx") and check_model(raw).uint8_input
    assert ensure_dynamic(YOLOX, tmp_path) == raw
    unit = ensure_dynamic(YOLOX, tmp_path, unit_scale=True)
    assert unit != raw and unit.name.endswith(".u8-unit.onnx")
    assert ensure_dynamic(raw, tmp_path / "other") == raw  # already dynamic and uint8


def test_cli_prepare_says_uint8_or_keeps_float(tmp_path: Path) -> None:
    done = run_edge("model", "prepare", YOLOX, tmp_path / "u8.onnx")
    assert done.returncode == 0, done.stderr
    assert "uint8 input scaled in the graph" in done.stdout and "verified: batch of 4 equals" in (
        done.stdout
    )
    done = run_edge("model", "prepare", YOLOX, tmp_path / "f.onnx", "--float-input")
    assert done.returncode == 0 and "float32 input" in done.stdout, done.stderr
