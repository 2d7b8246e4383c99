"""Opening the detector's model: its letterbox (rect or square), session, run plan and layout.

Apart from `edge.infer.detector` because these choices are made once, before the first frame, and
each needs probe runs of the model: whether its graph takes rect pictures (`detector.letterbox:
rect` or `auto` on a CPU), and the output shape of a graph whose output dims are only known when
it runs. A file that cannot serve raises `ModelError`, one line naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnxruntime import InferenceSession

from edge.config import DetectorConfig
from edge.infer.layout import (
    INPUT_SCALE_KEY,
    LayoutError,
    ModelLayout,
    SymbolicOutputError,
    recognise,
)
from edge.infer.letterbox import STRIDE
from edge.infer.model_check import (
    ModelError,
    first_line,
    layout_error,
    probe_output_shape,
    read_model,
    session_error,
)
from edge.infer.prepare import free_input_size
from edge.infer.providers import RunPlan, create_session, usable_providers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedModel:
    """A model ready to run: the session the detector keeps and what was learnt opening it."""

    session: InferenceSession
    provider: str
    plan: RunPlan
    layout: ModelLayout
    rect: bool
    """The session takes rect pictures (multiples of the stride up to the input size)."""
    input_scale: str | None
    """How a uint8 graph scales its input itself ("unit" or "raw"), as `edge model prepare`
    recorded it in the model's metadata; None when not recorded."""


def open_model(config: DetectorConfig) -> OpenedModel:
    """Open `config.model` with the letterbox `config.letterbox` asks for (see module doc)."""
    want_rect = config.letterbox == "rect"
    if config.letterbox == "auto":
        # On a GPU one input shape runs fastest (`Detector.pad_to`); on a CPU the model's cost
        # follows the picture's area, so rect pays.
        first = usable_providers(config)[0]
        want_rect = first == "cpu"
        if not want_rect:
            log.info("detector.letterbox auto: square on %s (one input shape)", first)
    # Read once: the layout needs the graph; a rect session the weights too.
    model = read_model(config.model, load_external_data=want_rect)
    scale = {p.key: p.value for p in model.metadata_props}.get(INPUT_SCALE_KEY)
    if want_rect:
        opened = _open_rect(config, model, scale)
        if opened is not None:
            return opened
    try:
        session, provider, plan = create_session(config.model, config, label=config.model.name)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a bad graph
        raise session_error(config.model, exc) from None
    layout = _recognise(config, model, session)
    return OpenedModel(session, provider, plan, layout, rect=False, input_scale=scale)


def _recognise(
    config: DetectorConfig, model: onnx.ModelProto, session: InferenceSession
) -> ModelLayout:
    path = config.model
    try:
        return recognise(model, config.family)
    except SymbolicOutputError:
        pass
    except LayoutError as exc:
        raise layout_error(path, exc) from None
    # Output dims unknown until run: one probe picture tells them.
    try:
        shape = probe_output_shape(session, config.input_size)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types
        raise ModelError(path, f"a probe run failed: {first_line(exc)}") from None
    try:
        return recognise(model, config.family, output_shape=shape)
    except LayoutError as exc:
        raise layout_error(path, exc) from None


def _open_rect(
    config: DetectorConfig, model: onnx.ModelProto, scale: str | None
) -> OpenedModel | None:
    """A session on a copy of the model whose input takes pictures of other sizes than the
    export's, if its graph computes them; None (auto) or a refusal (rect) if not."""
    name = config.model.name
    try:
        session, provider, plan = create_session(
            free_input_size(model).SerializeToString(), config, label=name
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a bad graph
        problem: str | None = f"not with a free input size: {first_line(exc, 160)}"
    else:
        layout = _recognise(config, model, session)
        problem = _rect_problem(config, session, layout)
        if problem is None:
            return OpenedModel(session, provider, plan, layout, rect=True, input_scale=scale)
    if config.letterbox == "rect":
        raise ModelError(
            config.model,
            f"rect needs a model whose graph takes other input sizes than its "
            f"export's, and this one does not ({problem}); use square",
            field="letterbox",
        )
    log.info("detector.letterbox auto: square for %s (%s)", name, problem)
    return None


def _rect_problem(
    config: DetectorConfig, session: InferenceSession, layout: ModelLayout
) -> str | None:
    """Why this graph cannot take rect pictures, or None: its anchors must scale with the
    picture's area (a decode grid baked for one size fails, or keeps the square's count)."""
    s = layout.input_size or config.input_size
    h = max(STRIDE, -(-s // 2 // STRIDE) * STRIDE)
    counts = []
    for shape in ((s, s), (h, s)):
        dtype = np.uint8 if layout.uint8_input else np.float32
        probe = np.full((1, 3, *shape), 114, dtype=dtype)
        try:
            out = session.run(None, {layout.input_name: probe})[0]
        except Exception as exc:
            return f"it fails at {h}×{s}: {first_line(exc, 160)}"
        counts.append(out.shape[2] if layout.family == "yolov8" else out.shape[1])
    if counts[1] * s != counts[0] * h:
        return f"{counts[1]} anchors at {h}×{s}, {counts[0]} at {s}²"
    return None
