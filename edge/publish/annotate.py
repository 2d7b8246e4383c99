"""Drawing what the pipeline knows onto the picture viewers see.

Drawing happens on a fresh BGR image at the *output* resolution (the stream's width cap), never on
the detector's input: boxes arrive in source pixels and are scaled here, so text stays sharp and
the model never sees our ink. Every function draws into the canvas it is given (which the caller
owns and just created) and returns nothing else; nothing here keeps state between frames.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.config import LineConfig
from edge.types import Detections

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR; COCO vehicle classes get fixed, distinguishable colours, anything else a stable hash colour.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "car": (255, 160, 0),
    "truck": (0, 140, 255),
    "bus": (60, 220, 60),
    "motorcycle": (220, 60, 220),
    "person": (0, 230, 255),
    "bicycle": (255, 255, 0),
}
_LINE_COLOUR = (0, 255, 255)
_TEXT_COLOUR = (255, 255, 255)
_PANEL_COLOUR = (0, 0, 0)


@dataclass(frozen=True, slots=True)
class LineOverlay:
    """A counting line in source pixels with its running totals per direction."""

    name: str
    p1: tuple[float, float]
    p2: tuple[float, float]
    counts: Mapping[str, int] = field(default_factory=dict)
    """direction name → vehicles counted so far (all classes)."""


@dataclass(frozen=True, slots=True)
class Overlay:
    """Everything besides boxes that a frame's annotation shows."""

    camera_name: str
    class_names: Sequence[str] = ()
    """Model class names; `Detections.class_id` indexes into it."""
    lines: tuple[LineOverlay, ...] = ()
    plates: Mapping[int, str] = field(default_factory=dict)
    """track id → plate text, for tracks whose plate has been read."""
    fps: float | None = None
    """Measured FPS to print; the publisher fills in its own rendered FPS when None."""
    clock: float | None = None
    """Wall-clock time (time.time()) to print; the moment of drawing when None."""


def line_overlays(
    lines: Sequence[LineConfig], counts: Mapping[str, Mapping[str, Mapping[str, int]]]
) -> tuple[LineOverlay, ...]:
    """Build overlays from config lines and `LineCounter.counts` (line → class → direction → n)."""
    result = []
    for line in lines:
        per_class = counts.get(line.name, {})
        totals = {d: sum(int(c.get(d, 0)) for c in per_class.values()) for d in line.directions}
        result.append(LineOverlay(line.name, line.points[0], line.points[1], totals))
    return tuple(result)


def output_size(src_w: int, src_h: int, max_width: int) -> tuple[int, int]:
    """Output size for a source: never upscaled, capped at `max_width`, even dimensions (4:2:0)."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"bad source size {src_w}x{src_h}")
    w = min(src_w, max_width)
    h = round(src_h * w / src_w)
    return max(2, w - w % 2), max(2, h - h % 2)


def class_colour(name: str) -> tuple[int, int, int]:
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name))
    return (64 + seed * 37 % 192, 64 + seed * 91 % 192, 64 + seed * 53 % 192)


def _ui_scale(width: int) -> float:
    return max(0.4, width / 1280 * 0.8)


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Text on a filled box whose bottom-left is (x, y), kept inside the canvas."""
    scale = _ui_scale(canvas.shape[1])
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    x = int(min(max(0, x), max(0, canvas.shape[1] - tw - 4)))
    y = int(min(max(th + base + 2, y), canvas.shape[0] - 1))
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(canvas, text, (x + 2, y - base), _FONT, scale, _TEXT_COLOUR, thick, cv2.LINE_AA)


def draw_detections(
    canvas: np.ndarray,
    detections: Detections,
    class_names: Sequence[str],
    scale_xy: tuple[float, float],
    plates: Mapping[int, str] | None = None,
) -> None:
    """Boxes coloured by class, labelled `#id class plate` (source boxes scaled by `scale_xy`)."""
    if len(detections) == 0:
        return
    sx, sy = scale_xy
    thick = max(1, round(canvas.shape[1] / 640))
    boxes = detections.xyxy.astype(np.float64) * np.array([sx, sy, sx, sy])
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().astype(int)):
        cid = int(detections.class_id[i])
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        colour = class_colour(name)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick)
        parts = [name]
        if detections.track_id is not None:
            tid = int(detections.track_id[i])
            parts.insert(0, f"#{tid}")
            if plates and tid in plates:
                parts.append(plates[tid])
        _label(canvas, " ".join(parts), x1, y1, colour)


def draw_lines(
    canvas: np.ndarray, lines: Sequence[LineOverlay], scale_xy: tuple[float, float]
) -> None:
    """Counting segments with `name: dir n / dir n` next to their first point."""
    sx, sy = scale_xy
    thick = max(2, round(canvas.shape[1] / 480))
    for line in lines:
        p1 = (round(line.p1[0] * sx), round(line.p1[1] * sy))
        p2 = (round(line.p2[0] * sx), round(line.p2[1] * sy))
        cv2.line(canvas, p1, p2, _LINE_COLOUR, thick, cv2.LINE_AA)
        counts = " / ".join(f"{d} {n}" for d, n in line.counts.items())
        text = f"{line.name}: {counts}" if counts else line.name
        _label(canvas, text, min(p1[0], p2[0]), max(p1[1], p2[1]) + 24, (0, 120, 160))


def draw_header(canvas: np.ndarray, camera_name: str, clock: float, fps: float | None) -> None:
    """Camera name, local clock and measured FPS in a bar across the top."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock))
    text = f"{camera_name}  {stamp}"
    if fps is not None:
        text += f"  {fps:.1f} fps"
    _label(canvas, text, 0, 0, _PANEL_COLOUR)


def annotate(
    canvas: np.ndarray,
    detections: Detections,
    overlay: Overlay,
    source_wh: tuple[int, int],
) -> None:
    """Draw lines, boxes and the header on `canvas` (output size) for a `source_wh` frame."""
    out_h, out_w = canvas.shape[:2]
    scale_xy = (out_w / source_wh[0], out_h / source_wh[1])
    draw_lines(canvas, overlay.lines, scale_xy)
    draw_detections(canvas, detections, overlay.class_names, scale_xy, overlay.plates)
    clock = overlay.clock if overlay.clock is not None else time.time()
    draw_header(canvas, overlay.camera_name, clock, overlay.fps)
