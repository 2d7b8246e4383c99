"""Which YOLO family an ONNX file is, read from its graph rather than from its file name.

Three output layouts exist in the wild:

* YOLOv5 export: `N×A×(5+C)`, boxes already decoded to input pixels (cx, cy, w, h), objectness,
  class scores. Input RGB 0–1, centred letterbox.
* YOLOX export: the same shape but *raw*: box offsets still need the grid/stride decode.
  Input BGR 0–255, letterbox top-left.
* YOLOv8/YOLO11 export: `N×(4+C)×A`, decoded boxes and class scores, no objectness. Input RGB 0–1.

The anchors-first vs channels-first question is answered by the output shape (there are always far
more anchors than channels). YOLOv5 and YOLOX are told apart by whether the decode is baked in:
walking back from the output through pure data-movement nodes (Reshape, Concat, Transpose, Slice,
Split, ...) a raw head reaches only the head's Conv and Sigmoid nodes, while a decoded head reaches
the decode's arithmetic (Mul/Add/Pow/Exp with the grid and stride constants).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import onnx
from onnx import numpy_helper

Family = Literal["yolov5", "yolox", "yolov8"]

Color = Literal["rgb", "bgr"]

FAMILY_PREPROCESS: dict[str, tuple[Color, bool, bool]] = {
    "yolov5": ("rgb", True, True),
    "yolox": ("bgr", False, False),
    "yolov8": ("rgb", True, True),
}
"""Colour order, 0-1 scaling and centred padding that each family was trained with."""

INPUT_SCALE_KEY = "edge.input_scale"
"""Metadata of a model whose uint8 input is scaled inside its graph: "unit" (÷255) or "raw"."""

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# Nodes that only move or select data: walking through them never changes what a value means.
_DATA_MOVEMENT = {
    "Reshape", "Concat", "Transpose", "Slice", "Split", "Squeeze", "Unsqueeze", "Flatten",
    "Identity", "Cast", "Gather", "Expand",
}  # fmt: skip
# What a raw head ends in: the prediction convolutions, maybe with their sigmoids.
_RAW_HEAD = {"Conv", "Sigmoid"}


class LayoutError(ValueError):
    """The model's input or output is not one of the YOLO layouts edge understands."""


class SymbolicOutputError(LayoutError):
    """The output's dims are only known after a run: probe and call `recognise` again."""


@dataclass(frozen=True, slots=True)
class ModelLayout:
    family: Family
    num_classes: int
    class_names: tuple[str, ...]
    input_name: str
    output_name: str
    input_size: int | None
    """Square input side when the graph fixes it, None when height/width are symbolic."""
    frozen_batch: bool
    """True when the graph pins the batch to 1 (input dim or constant Reshape shapes)."""
    uint8_input: bool = False
    """The graph takes uint8 pictures (0-255) and casts and scales them itself."""

    @property
    def channels_first(self) -> bool:
        return self.family == "yolov8"


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def decode_is_baked(graph: onnx.GraphProto, output_name: str) -> bool:
    """True when arithmetic (a decode) sits between the head's convolutions and the output."""
    producers = _producers(graph)
    stack, seen = [output_name], set()
    found_compute = False
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type == "Concat":
            stack.extend(node.input)
        elif node.op_type in _DATA_MOVEMENT:
            stack.append(node.input[0])
        elif node.op_type not in _RAW_HEAD:
            found_compute = True
    return found_compute


def reshape_frozen_to_one(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """The constant Reshape shapes whose first dim is a literal 1 (a batch frozen at export)."""
    inits = {t.name: t for t in graph.initializer}
    consts = {
        n.output[0]: a.t
        for n in graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    frozen = []
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        tensor = inits.get(node.input[1]) or consts.get(node.input[1])
        if tensor is not None:
            shape = numpy_helper.to_array(tensor)
            if shape.ndim == 1 and shape.size > 1 and int(shape[0]) == 1:
                frozen.append(tensor)
    return frozen


def is_batch_frozen(graph: onnx.GraphProto) -> bool:
    """Batch literally 1 in the input or in a `Reshape` constant (`edge model prepare` fixes it)."""
    init_names = {t.name for t in graph.initializer}
    image = next(i for i in graph.input if i.name not in init_names)
    return _dims(image)[0] == 1 or bool(reshape_frozen_to_one(graph))


def _shape_text(dims: Sequence[int | None]) -> str:
    return "×".join("?" if d is None else str(d) for d in dims) or "a scalar"


def check_input(value: onnx.ValueInfoProto) -> None:
    """The detector feeds float32 or uint8 N×3×S×S (or N×3×H×W) pictures; anything else cannot
    run."""
    name, dims = value.name, _dims(value)
    kind = value.type.tensor_type.elem_type
    if kind not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8):
        what = onnx.TensorProto.DataType.Name(kind) if kind else "not a tensor"
        raise LayoutError(f"input {name!r} is {what}; edge feeds float32 or uint8 pictures")
    if len(dims) != 4:
        raise LayoutError(f"input {name!r} is {_shape_text(dims)}; edge feeds N×3×H×W pictures")
    n, c, h, w = dims
    if c is not None and c != 3:
        raise LayoutError(
            f"input {name!r} takes {c} channel(s) ({_shape_text(dims)}); edge feeds 3-channel "
            "colour pictures (N×3×H×W)"
        )
    if n is not None and n != 1:
        raise LayoutError(f"input {name!r} fixes its batch at {n}; edge needs 1 or a free batch")
    if (h is None) != (w is None) or (h is not None and h != w):
        raise LayoutError(
            f"input {name!r} is {_shape_text(dims)}; edge needs a square input (S×S) or a free "
            "height and width"
        )


def class_names_for(model: onnx.ModelProto, num_classes: int) -> tuple[str, ...]:
    """Names from the export's metadata (Ultralytics writes `names`), else COCO for 80 classes."""
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" in meta:
        try:
            names = ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, dict) and len(names) == num_classes:
            return tuple(str(names[k]) for k in sorted(names))
        if isinstance(names, list | tuple) and len(names) == num_classes:
            return tuple(str(n) for n in names)
    if num_classes == len(COCO80):
        return COCO80
    return tuple(f"class{i}" for i in range(num_classes))


def recognise(
    model: onnx.ModelProto,
    family: Literal["auto", "yolov5", "yolox", "yolov8"] = "auto",
    output_shape: tuple[int, ...] | None = None,
) -> ModelLayout:
    """Read the layout off the graph; `output_shape` (from a probe run) fills symbolic dims."""
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1 or len(graph.output) < 1:
        raise LayoutError(
            f"expected one image input and an output, got {len(inputs)} input(s) and "
            f"{len(graph.output)} output(s)"
        )
    check_input(inputs[0])
    in_dims, out_value = _dims(inputs[0]), graph.output[0]
    out_dims = list(output_shape) if output_shape is not None else _dims(out_value)
    if len(out_dims) != 3:
        raise LayoutError(
            f"output {out_value.name!r} is {_shape_text(out_dims)}; a YOLO output is "
            "N×anchors×(5+classes) or N×(4+classes)×anchors"
        )
    a, b = out_dims[1], out_dims[2]
    if a is None or b is None:
        raise SymbolicOutputError("output dims are symbolic: pass the shape of a probe run")
    if family == "auto":
        if a < b:
            family = "yolov8"
        else:
            family = "yolov5" if decode_is_baked(graph, out_value.name) else "yolox"
    channels = a if family == "yolov8" else b
    num_classes = channels - (4 if family == "yolov8" else 5)
    if num_classes < 1:
        raise LayoutError(f"{family} output with {channels} channels has no class scores")
    h, w = in_dims[2], in_dims[3]
    return ModelLayout(
        family=family,
        num_classes=num_classes,
        class_names=class_names_for(model, num_classes),
        input_name=inputs[0].name,
        output_name=out_value.name,
        input_size=h if h is not None and h == w else None,
        frozen_batch=is_batch_frozen(graph),
        uint8_input=inputs[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8,
    )
