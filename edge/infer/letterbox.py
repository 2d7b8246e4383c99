"""Letterboxing: fit a picture into the model's input without distorting it.

The resize happens while PyAV converts the decoded frame's colours (`reformat`), so a full-size BGR
copy is never made; only the model-sized picture is padded and turned into a CHW float tensor.

Square (the default) pads to the model's S×S input, as the model was exported. Rect pads only to
the next multiple of the model's largest stride (32), as Ultralytics' `auto` letterbox does: a
16:9 camera at S = 416 becomes 416×256, 62 % of the square's pixels and of the model's work
(BENCHMARKS.md); detections differ from the square's only where the padding touched them.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np

from edge.infer.layout import Color
from edge.types import convert

STRIDE = 32
"""A rect input's sides are multiples of this: the largest stride of P5 YOLO models."""


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a source picture was placed in the model input: `model = source * scale + pad`."""

    scale: float
    pad_x: int
    pad_y: int
    src_w: int
    src_h: int
    in_w: int | None = None
    """The padded model input's width; None: the model's square size."""
    in_h: int | None = None

    @property
    def new_w(self) -> int:
        return max(1, round(self.src_w * self.scale))

    @property
    def new_h(self) -> int:
        return max(1, round(self.src_h * self.scale))


@dataclass(frozen=True, slots=True)
class LetterboxSpec:
    """What a model wants of its input picture: the one value every letterbox call takes."""

    size: int
    """The model's square input side (S)."""
    color: Color = "bgr"
    unit_scale: bool = False
    """Scale 0-255 to 0-1 (float input only)."""
    pad_value: int = 114
    center: bool = False
    """Pad equally on both sides (YOLOv5/v8) instead of only right and bottom (YOLOX)."""
    rect: bool = False
    """Pad only to the next multiple of `STRIDE` on each side instead of to S×S."""
    uint8: bool = False
    """Leave the picture uint8 (a model that casts and scales inside its graph)."""

    def fit(self, src_w: int, src_h: int) -> Letterbox:
        return fit(src_w, src_h, self.size, self.center, self.rect)


def fit(src_w: int, src_h: int, size: int, center: bool, rect: bool = False) -> Letterbox:
    """The geometry: scale by the tighter side, pad the rest (top-left like YOLOX, or centred) to
    S×S, or with `rect` only to the next multiple of `STRIDE` on each side."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"picture must have a positive size, got {src_w}×{src_h}")
    scale = min(size / src_w, size / src_h)
    new_w = max(1, round(src_w * scale))
    new_h = max(1, round(src_h * scale))
    in_w, in_h = size, size
    if rect:
        in_w, in_h = (min(size, -(-n // STRIDE) * STRIDE) for n in (new_w, new_h))
    pad_x = (in_w - new_w) // 2 if center else 0
    pad_y = (in_h - new_h) // 2 if center else 0
    return Letterbox(scale, pad_x, pad_y, src_w, src_h, in_w, in_h)


def _to_tensor(
    picture: np.ndarray, lb: Letterbox, spec: LetterboxSpec, out: np.ndarray | None = None
) -> np.ndarray:
    """Place an H×W×3 uint8 picture on its padded 3×H×W canvas: float32 scaled to 0–1 if asked,
    or with `uint8` as is (for a model that casts and scales inside its graph; a quarter of the
    bytes). `out`: a preallocated uint8 canvas of the right shape to fill (a shared slot)."""
    shape = (3, lb.in_h or spec.size, lb.in_w or spec.size)
    h, w = picture.shape[:2]
    pad_value = spec.pad_value
    if spec.uint8:
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        out.fill(pad_value)
        out[:, lb.pad_y : lb.pad_y + h, lb.pad_x : lb.pad_x + w] = picture.transpose(2, 0, 1)
        return out
    factor = 1.0 / 255.0 if spec.unit_scale else 1.0
    canvas = np.full(shape, pad_value * factor, dtype=np.float32)
    region = canvas[:, lb.pad_y : lb.pad_y + h, lb.pad_x : lb.pad_x + w]
    np.multiply(picture.transpose(2, 0, 1), factor, out=region, casting="unsafe")
    return canvas


def letterbox_frame(
    image: av.VideoFrame, spec: LetterboxSpec, out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """A decoded frame as a model input tensor, resized during the colour conversion. `out`: a
    preallocated uint8 canvas of the right shape to fill (a shared slot; `spec.uint8` only)."""
    lb = spec.fit(int(image.width), int(image.height))
    fmt = "rgb24" if spec.color == "rgb" else "bgr24"
    small = convert(image, lb.new_w, lb.new_h, fmt)
    return _to_tensor(small, lb, spec, out), lb


def letterbox_bgr(img: np.ndarray, spec: LetterboxSpec) -> tuple[np.ndarray, Letterbox]:
    """An H×W×3 BGR uint8 array as a model input tensor (for callers that already hold BGR)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 BGR image, got {img.shape} {img.dtype}")
    lb = spec.fit(img.shape[1], img.shape[0])
    small = cv2.resize(img, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    if spec.color == "rgb":
        small = small[:, :, ::-1]
    return _to_tensor(small, lb, spec), lb


def to_source(boxes_xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Model-input boxes back to source pixels, clipped to the picture."""
    out = np.empty_like(boxes_xyxy, dtype=np.float32)
    xs, ys = out[:, 0::2], out[:, 1::2]  # views on (x1, x2) and (y1, y2)
    np.subtract(boxes_xyxy[:, 0::2], lb.pad_x, out=xs)
    np.subtract(boxes_xyxy[:, 1::2], lb.pad_y, out=ys)
    out /= lb.scale
    np.clip(xs, 0, lb.src_w, out=xs)
    np.clip(ys, 0, lb.src_h, out=ys)
    return out
