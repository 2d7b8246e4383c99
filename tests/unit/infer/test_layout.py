"""Layout recognition and batch repair on small hand-built graphs (real ONNX Runtime runs)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.infer.layout import (
    COCO80,
    LayoutError,
    SymbolicOutputError,
    decode_is_baked,
    recognise,
)
from edge.infer.prepare import make_batch_dynamic


def head(
    channels: int, *, decoded: bool, channels_first: bool, batch: int | str = 1
) -> onnx.ModelProto:
    """1×3×128×128 → stride-8 Conv head (256 anchor points) → Reshape → (Transpose) → output."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(
            rng.normal(size=(channels, 3, 8, 8)).astype(np.float32) * 0.01, "w"
        ),
        numpy_helper.from_array(np.array([1, channels, -1], dtype=np.int64), "shape"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["conv"], strides=[8, 8]),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Reshape", ["sig", "shape"], ["flat"]),
    ]
    last = "flat"
    if decoded:
        nodes.append(helper.make_node("Mul", [last, "two"], ["scaled"]))
        last = "scaled"
    if not channels_first:
        nodes.append(helper.make_node("Transpose", [last], ["anchors"], perm=[0, 2, 1]))
        last = "anchors"
    nodes.append(helper.make_node("Identity", [last], ["output"]))
    out_shape = [batch, channels, 256] if channels_first else [batch, 256, channels]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 128, 128])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_raw_anchors_first_head_is_yolox() -> None:
    layout = recognise(head(85, decoded=False, channels_first=False))
    assert (layout.family, layout.num_classes, layout.input_size) == ("yolox", 80, 128)
    assert layout.class_names == COCO80 and layout.frozen_batch
    assert (layout.input_name, layout.output_name) == ("images", "output")


def test_decoded_anchors_first_head_is_yolov5() -> None:
    model = head(7, decoded=True, channels_first=False)
    assert decode_is_baked(model.graph, "output")
    layout = recognise(model)
    assert (layout.family, layout.num_classes) == ("yolov5", 2)
    assert layout.class_names == ("class0", "class1")


def test_channels_first_head_is_yolov8_with_metadata_names() -> None:
    model = head(6, decoded=True, channels_first=True)
    helper.set_model_props(model, {"names": "{0: 'car', 1: 'truck'}"})
    layout = recognise(model)
    assert (layout.family, layout.num_classes, layout.class_names) == (
        "yolov8",
        2,
        ("car", "truck"),
    )
    assert layout.channels_first


def test_family_override_and_bad_layouts() -> None:
    assert recognise(head(85, decoded=False, channels_first=False), "yolov5").family == "yolov5"
    with pytest.raises(LayoutError, match="no class scores"):
        recognise(head(5, decoded=False, channels_first=False))
    symbolic = head(85, decoded=False, channels_first=False)
    symbolic.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "anchors"
    with pytest.raises(LayoutError, match="symbolic"):
        recognise(symbolic)
    assert recognise(symbolic, output_shape=(1, 256, 85)).family == "yolox"


def test_make_batch_dynamic_runs_any_batch_and_matches_singles() -> None:
    frozen = head(85, decoded=False, channels_first=False)
    dynamic, rewritten = make_batch_dynamic(frozen)
    assert rewritten == 1 and not recognise(dynamic).frozen_batch
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert numpy_helper.to_array(dynamic.graph.initializer[1]).tolist() == [0, 85, -1]
    session = ort.InferenceSession(dynamic.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(0, 255, (3, 3, 128, 128)).astype(np.float32)
    together = session.run(None, {"images": x})[0]
    alone = np.concatenate([session.run(None, {"images": x[i : i + 1]})[0] for i in range(3)])
    assert together.shape == (3, 256, 85)
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_frozen_reshape_alone_counts_as_frozen() -> None:
    model = head(85, decoded=False, channels_first=False, batch="n")
    assert recognise(model).frozen_batch  # symbolic input, but the Reshape still says 1


def _set_input(
    model: onnx.ModelProto, dims: list[int | str], elem: int = TensorProto.FLOAT
) -> None:
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("images", elem, dims))


@pytest.mark.parametrize(
    ("dims", "elem", "message"),
    [
        ([1, 1, 128, 128], TensorProto.FLOAT, r"takes 1 channel\(s\) \(1×1×128×128\)"),
        ([1, 3, 128, 128], TensorProto.INT32, "is INT32; edge feeds float32 or uint8"),
        ([4, 3, 128, 128], TensorProto.FLOAT, "fixes its batch at 4"),
        ([1, 3, 96, 128], TensorProto.FLOAT, "is 1×3×96×128; edge needs a square input"),
        ([1, 3, "h", 128], TensorProto.FLOAT, r"is 1×3×\?×128; edge needs a square input"),
        ([1, 3, 128], TensorProto.FLOAT, "is 1×3×128; edge feeds N×3×H×W"),
    ],
    ids=["one-channel", "int32", "batch-4", "not-square", "half-free", "rank-3"],
)
def test_inputs_edge_cannot_feed_are_refused(dims: list, elem: int, message: str) -> None:
    model = head(85, decoded=False, channels_first=False)
    _set_input(model, dims, elem)
    with pytest.raises(LayoutError, match=message):
        recognise(model)


@pytest.mark.parametrize(
    "dims",
    [["n", 3, 128, 128], [1, "c", "h", "w"], [1, 3, 128, 128]],
    ids=["free-batch", "free", "fixed"],
)
def test_inputs_edge_can_feed_are_accepted(dims: list) -> None:
    model = head(85, decoded=False, channels_first=False)
    _set_input(model, dims)
    assert recognise(model).family == "yolox"


def test_symbolic_output_is_its_own_error_and_wrong_rank_is_explained() -> None:
    symbolic = head(85, decoded=False, channels_first=False)
    symbolic.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "channels"
    with pytest.raises(SymbolicOutputError):
        recognise(symbolic)
    flat = head(85, decoded=False, channels_first=False)
    del flat.graph.output[0].type.tensor_type.shape.dim[2]
    with pytest.raises(LayoutError, match=r"'output' is 1×256; a YOLO output is N×anchors") as e:
        recognise(flat)
    assert not isinstance(e.value, SymbolicOutputError)
