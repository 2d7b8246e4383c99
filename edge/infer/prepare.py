"""`edge model prepare`: turn a batch-1 export into a dynamic-batch (optionally FP16) model.

Exports traced at batch 1 (the shared YOLOX file among them) carry the batch as a literal in their
`Reshape` shape constants and in `value_info`. Changing only the input/output dims then yields a
model that runs with N but returns the wrong shape, so the constants' first dim becomes `0` (copy
the input's batch), the graph's I/O batch dims become symbolic, and stale shapes are dropped.
The result is then checked: a batch of N must equal N single runs.

The prepared model also takes uint8 pictures: a Cast (and the family's ÷255 where it is trained on
0-1) become its first nodes, so a frame crosses processes and the PCIe bus at a quarter of
float32's size and the host never converts. Metadata `edge.input_scale` says which scaling the
graph does, so the detector knows not to scale again.

Both entry points check the source first (`edge.infer.model_check`), so a file that is no
detector fails with one line naming it before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edge.config import DetectorConfig
from edge.infer.layout import FAMILY_PREPROCESS, INPUT_SCALE_KEY, reshape_frozen_to_one
from edge.infer.model_check import ModelError, check_model, first_line, read_model

log = logging.getLogger(__name__)

BATCH_DIM = "batch"
SOURCE_KEY = "edge.prepared_from"
"""Metadata key of a prepared copy: the sha256 of the file it was made from."""


@dataclass(frozen=True, slots=True)
class BatchCheck:
    batch: int
    max_abs_diff: float
    tolerance: float
    output_shape: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        verdict = "equals" if self.ok else "DIFFERS FROM"
        return (
            f"batch of {self.batch} {verdict} {self.batch} single runs "
            f"(max abs diff {self.max_abs_diff:.3g}, tolerance {self.tolerance:.3g}; "
            f"output {'×'.join(map(str, self.output_shape))})"
        )


def make_batch_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy with a symbolic batch; returns it and how many Reshape constants were rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for node in graph.node:
        if node.op_type == "Reshape" and any(a.name == "allowzero" and a.i for a in node.attribute):
            raise ValueError(f"Reshape {node.name!r} has allowzero=1: a 0 would not copy the batch")
    frozen = reshape_frozen_to_one(graph)
    for tensor in frozen:
        shape = numpy_helper.to_array(tensor).copy()
        shape[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    init_names = {t.name for t in graph.initializer}
    for value in [*graph.input, *graph.output]:
        if value.name in init_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del graph.value_info[:]
    onnx.checker.check_model(out)
    return out, len(frozen)


def uint8_input(model: onnx.ModelProto, unit_scale: bool) -> onnx.ModelProto:
    """A copy whose picture input is uint8, cast to float32 (and ÷255 with `unit_scale`) by its
    first nodes; the input keeps its name and dims. A model already taking uint8 is returned as
    a plain copy."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    init_names = {t.name for t in graph.initializer}
    picture = next(v for v in graph.input if v.name not in init_names)
    if picture.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
        return out
    name = picture.name
    inner = f"{name}_float"
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = inner
    picture.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    first = [onnx.helper.make_node("Cast", [name], [f"{name}_cast" if unit_scale else inner],
                                   to=onnx.TensorProto.FLOAT, name="edge_input_cast")]  # fmt: skip
    if unit_scale:
        scale = numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), f"{name}_scale")
        graph.initializer.append(scale)
        first.append(
            onnx.helper.make_node(
                "Mul", [f"{name}_cast", scale.name], [inner], name="edge_input_scale"
            )
        )
    nodes = [*first, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    props = {p.key: p.value for p in out.metadata_props}
    onnx.helper.set_model_props(out, {**props, INPUT_SCALE_KEY: "unit" if unit_scale else "raw"})
    onnx.checker.check_model(out)
    return out


def free_input_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose input height and width are symbolic, so that rect-letterboxed pictures can
    run; every output dim but the batch becomes symbolic too and stale shapes are dropped. Whether
    the graph really computes other sizes is the caller's to check: one that bakes its decode
    grid for the exported size fails at any other."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    init_names = {t.name for t in graph.initializer}
    picture = next(v for v in graph.input if v.name not in init_names)
    dims = picture.type.tensor_type.shape.dim
    for i, name in ((2, "height"), (3, "width")):
        dims[i].Clear()
        dims[i].dim_param = name
    for value in graph.output:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i > 0:
                dim.Clear()
                dim.dim_param = f"{value.name}_{i}"
    del graph.value_info[:]
    return out


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and activations in FP16, inputs and outputs kept float32 (callers see no change)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted: onnx.ModelProto = float16.convert_float_to_float16(model, keep_io_types=True)
    if caught:
        log.info("fp16: %d weights outside FP16 range were clamped", len(caught))
    return converted


def check_batch(model_path: str | Path, batch: int = 4, seed: int = 0) -> BatchCheck:
    """Run `batch` pictures at once and one by one on the CPU and compare the outputs."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    side = [d if isinstance(d, int) else 416 for d in inp.shape[2:]]
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    pictures = rng.uniform(0, 255, size=(batch, 3, *side)).astype(dtype)
    together = session.run(None, {inp.name: pictures})[0]
    alone = np.concatenate([session.run(None, {inp.name: p[None]})[0] for p in pictures])
    if together.shape != alone.shape:
        return BatchCheck(batch, float("inf"), 0.0, tuple(together.shape))
    weights = onnx.load(str(model_path)).graph.initializer
    fp16 = any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    tolerance = (1e-2 if fp16 else 1e-4) * max(1.0, float(np.abs(alone).max()))
    diff = float(np.abs(together - alone).max())
    return BatchCheck(batch, diff, tolerance, tuple(together.shape))


def prepare_model(
    src: str | Path,
    dst: str | Path,
    fp16: bool = False,
    check: int = 4,
    metadata: dict[str, str] | None = None,
    uint8: bool = True,
    unit_scale: bool | None = None,
) -> tuple[int, BatchCheck]:
    """Write the dynamic-batch (maybe FP16) model, with a uint8 input unless `uint8` is False;
    `unit_scale` None follows the family. Returns (constants rewritten, check). A source that is
    no detector raises `ModelError` before anything is written."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError("output must be a different file than the input")
    family = check_model(src).family
    model, rewritten = make_batch_dynamic(onnx.load(str(src)))
    if fp16:
        model = convert_fp16(model)
    if uint8:
        unit = FAMILY_PREPROCESS[family][1] if unit_scale is None else unit_scale
        model = uint8_input(model, unit)
    if metadata:
        onnx.helper.set_model_props(
            model, {**{p.key: p.value for p in model.metadata_props}, **metadata}
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    log.info("wrote %s (%d Reshape constants rewritten, fp16=%s)", dst, rewritten, fp16)
    return rewritten, check_batch(dst, batch=check)


def with_dynamic_batch(cfg: DetectorConfig) -> DetectorConfig:
    """`cfg` with its model swapped for the verified batch-dynamic copy (`ensure_dynamic`) when
    it may batch (`auto_prepare`, `max_batch` unset or above 1): what the service, `edge detect`
    and `edge analyze` all run."""
    if not cfg.auto_prepare or cfg.max_batch == 1:
        return cfg
    scale = cfg.preprocess.scale
    unit = None if scale == "auto" else scale == "unit"
    model = ensure_dynamic(cfg.model, cfg.prepared_dir, unit_scale=unit)
    return cfg.model_copy(update={"model": model})


def ensure_dynamic(
    model_path: str | Path, cache_dir: str | Path, unit_scale: bool | None = None
) -> Path:
    """The model itself when its batch is already dynamic and it takes uint8 pictures, else a
    verified copy that does (`unit_scale`: None follows the family).

    Why: the shipped YOLOX file is frozen at batch 1, which would silently cost the service its
    cross-camera batching, and takes float32, four times the bytes of a picture. The copy is named
    after the source's content hash and the scaling, so it is made once per model and reused at
    every start; a copy that fails the batch check is deleted and refused. A cached copy that no
    longer opens, or was not made from this source (its metadata says), is made again rather
    than trusted. A source that is no detector raises `ModelError` before the cache is touched.
    """
    src = Path(model_path)
    layout = check_model(src)
    if not layout.frozen_batch and layout.uint8_input:
        return src
    unit = FAMILY_PREPROCESS[layout.family][1] if unit_scale is None else unit_scale
    scale = "unit" if unit else "raw"
    sha256 = hashlib.sha256(src.read_bytes()).hexdigest()
    dst = Path(cache_dir) / f"{src.stem}.dynamic-{sha256[:12]}.u8-{scale}.onnx"
    if dst.is_file():
        problem = _cached_copy_problem(dst, sha256, scale)
        if problem is None:
            log.info("using %s, the batch-dynamic copy of %s", dst, src.name)
            return dst
        log.warning("prepared model %s is unusable (%s); making it again", dst, problem)
    tmp = dst.with_name(f"{dst.stem}.{os.getpid()}.tmp.onnx")  # one per process: no clash
    unbatched = "set detector.max_batch: 1 to run it one frame at a time"
    try:
        _, check = prepare_model(src, tmp, metadata={SOURCE_KEY: sha256}, unit_scale=unit)
        if not check.ok:
            raise ModelError(src, f"automatic batch repair failed: {check.describe()}; {unbatched}")
        tmp.replace(dst)
    except OSError as exc:
        reason = f"cannot write its batch-dynamic copy ({exc.strerror or exc})"
        raise ModelError(dst, reason, field="prepared_dir") from None
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unusual graph that the rewrite cannot handle
        raise ModelError(
            src, f"automatic batch repair failed: {first_line(exc)}; {unbatched}"
        ) from None
    finally:
        with contextlib.suppress(OSError):  # never there, or its folder cannot be made
            tmp.unlink()
    log.info("made %s batch-dynamic as %s (%s)", src.name, dst, check.describe())
    return dst


def _cached_copy_problem(path: Path, source_sha256: str, scale: str) -> str | None:
    """Why a cached copy cannot be used (a crash mid-write, an edited or foreign file), or None."""
    try:
        layout = check_model(path)
    except ModelError as exc:
        return exc.reason
    if layout.frozen_batch:
        return "its batch is still frozen"
    meta = {p.key: p.value for p in read_model(path, load_external_data=False).metadata_props}
    if meta.get(SOURCE_KEY) != source_sha256:
        return "not made from this model"
    if not layout.uint8_input or meta.get(INPUT_SCALE_KEY) != scale:
        return f"its input is not uint8 scaled {scale} in the graph"
    return None
