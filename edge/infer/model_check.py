"""Whether a file can serve as the detector, said in one line that names the file.

`check_model` is the one check that `edge check`, `edge run` (before it says it serves) and the
prepared-model cache (before it writes anything) share: the file is there and readable, it parses
as ONNX, ONNX Runtime opens it, its graph has one of the YOLO layouts `edge.infer.layout`
recognises, and the configured classes are among the model's. The detector reuses the pieces
(`read_model`, `layout_error`, `session_error`, `check_classes`) so every entry point words a
fault the same way. A failure is a `ModelError` whose text is `<path>: <reason>`: a bad model is
a mistake of the person deploying, so it must read as one line, never as a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from edge.infer.layout import LayoutError, ModelLayout, SymbolicOutputError, recognise

Family = Literal["auto", "yolov5", "yolox", "yolov8"]

# ONNX Runtime prefixes every error with its code and the path, which the message already names.
_ORT_NOISE = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .*? failed:)?")


class ModelError(ValueError):
    """A model file that cannot serve as the detector; `str()` is `<path>: <reason>`."""

    def __init__(self, path: str | Path, reason: str, field: str = "model") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.field = field
        """The `detector.*` setting to blame: `model`, or `classes` when the file is fine."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:limit]


def read_model(path: str | Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """The parsed file, or a `ModelError` that says why it is not a model."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(path, "is a directory, not an ONNX file")
    try:
        with path.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ModelError(path, "file not found") from None
    except OSError as exc:
        raise ModelError(path, f"cannot read it ({exc.strerror or exc})") from None
    if not data:
        raise ModelError(path, "empty file, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as exc:
        detail = str(exc).rpartition(": ")[2] or "does not parse"
        raise ModelError(path, f"not an ONNX model, or a truncated one ({detail})") from None
    if not model.graph.node:
        raise ModelError(path, "not an ONNX model (no graph in it)")
    if load_external_data:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # noqa: BLE001 - missing or short external weight files
            raise ModelError(path, f"its external weights: {first_line(exc)}") from None
    return model


def layout_error(path: str | Path, exc: LayoutError) -> ModelError:
    return ModelError(path, f"not a YOLO detector that edge can run: {exc}")


def session_error(path: str | Path, exc: BaseException) -> ModelError:
    """ONNX Runtime's refusal (unknown operator, invalid graph) as one line."""
    return ModelError(path, f"ONNX Runtime cannot load it: {_ORT_NOISE.sub('', first_line(exc))}")


def check_classes(path: str | Path, names: Sequence[str], wanted: Sequence[str]) -> None:
    """Every configured class must be one the model outputs, or nothing of it would be kept."""
    unknown = [n for n in wanted if n not in names]
    if unknown:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise ModelError(
            path,
            f"has no class {', '.join(map(repr, unknown))} (its {len(names)} classes: {shown})",
            field="classes",
        )


def probe_output_shape(session: ort.InferenceSession, input_size: int) -> tuple[int, ...]:
    """The output's shape for one grey picture (free height/width taken as `input_size`)."""
    inp = session.get_inputs()[0]
    side = [d if isinstance(d, int) else input_size for d in inp.shape[2:]]
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    probe = np.full((1, 3, *side), 114, dtype=dtype)
    return tuple(session.run(None, {inp.name: probe})[0].shape)


def _cpu_session(path: Path) -> ort.InferenceSession:
    """A throwaway CPU session: only whether ONNX Runtime accepts the graph matters here."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # its own warnings would repeat our one line
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise session_error(path, exc) from None


def check_model(
    path: str | Path,
    family: Family = "auto",
    classes: Sequence[str] = (),
    input_size: int = 416,
) -> ModelLayout:
    """The model's layout if `path` can serve as the detector with these settings, else a
    `ModelError`. Costs a parse and a CPU session (no optimisation), well under a second for
    the shipped model; a probe run only when the graph leaves its output dims symbolic."""
    path = Path(os.fspath(path))
    model = read_model(path, load_external_data=False)
    try:
        layout: ModelLayout | None = recognise(model, family)
    except SymbolicOutputError:
        layout = None
    except LayoutError as exc:
        raise layout_error(path, exc) from None
    session = _cpu_session(path)
    if layout is None:
        try:
            shape = probe_output_shape(session, input_size)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(path, f"a probe run failed: {first_line(exc)}") from None
        try:
            layout = recognise(model, family, output_shape=shape)
        except LayoutError as exc:
            raise layout_error(path, exc) from None
    check_classes(path, layout.class_names, classes)
    return layout
