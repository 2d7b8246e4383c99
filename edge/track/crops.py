"""Vehicle crops worth reading: cut cheaply from a decoded frame, scored by size and sharpness.

A crop is cut in the decoder's own format (YUV 4:2:0 planes, a few tens of KB) on the event loop
without converting the frame: a full-frame BGR conversion costs ten times the decode, and the
OCR worker converts only the crops it reads. Its quality is the box's area weighted by the
sharpness of its luma (variance of the Laplacian, the usual focus measure, on the crop scaled to
a fixed width so that near and far views compare), and only boxes fully inside the picture
count: a vehicle cut by the frame's edge often has its plate outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.types import Frame

SHARPNESS_WIDTH = 128
"""Width the luma is scaled to before measuring sharpness, so that crop size does not bias it."""
SHARPNESS_HALF = 100.0
"""Laplacian variance at which a crop's weight is one half (motion-blurred crops score tens,
crisp ones hundreds)."""
EDGE_MARGIN_PX = 2
"""A box this close to the picture's border counts as cut by it."""

_I420 = frozenset({"yuv420p", "yuvj420p"})


def _plane(frame: Frame, index: int) -> np.ndarray:
    p = frame.image.planes[index]
    buf: np.ndarray = np.frombuffer(memoryview(p), dtype=np.uint8)
    return buf.reshape(p.height, p.line_size)


@dataclass(frozen=True, slots=True)
class VehicleCrop:
    """A vehicle's box cut out of one frame; `box` in frame pixels (x1, y1, x2, y2).

    `kind` says how `planes` hold the picture: `i420` (Y, U, V), `nv12` (Y, interleaved UV) or
    `bgr` (one H×W×3 array, for the decoder formats cut after a conversion)."""

    seq: int
    box: tuple[int, int, int, int]
    kind: str
    planes: tuple[np.ndarray, ...]

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes)

    def gray(self) -> np.ndarray:
        if self.kind == "bgr":
            return cv2.cvtColor(self.planes[0], cv2.COLOR_BGR2GRAY)
        return self.planes[0]

    def to_bgr(self) -> np.ndarray:
        """The crop as an H×W×3 uint8 BGR array (OCR worker: the colour conversion is here)."""
        if self.kind == "bgr":
            return self.planes[0]
        h, w = self.height, self.width
        if self.kind == "nv12":
            y, uv = self.planes
            stacked = np.concatenate([y.reshape(-1), uv.reshape(-1)]).reshape(h * 3 // 2, w)
            return cv2.cvtColor(stacked, cv2.COLOR_YUV2BGR_NV12)
        y, u, v = self.planes
        stacked = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
        return cv2.cvtColor(stacked.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)


def clip_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int] | None:
    """`box` rounded to even pixels (4:2:0 chroma) and clipped to the picture; None if empty."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = max(0, x1) // 2 * 2, max(0, y1) // 2 * 2
    x2, y2 = min(width, x2) // 2 * 2, min(height, y2) // 2 * 2
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return x1, y1, x2, y2


def fully_inside(box: tuple[float, float, float, float], width: int, height: int) -> bool:
    """True when no side of `box` touches the picture's border."""
    x1, y1, x2, y2 = box
    m = EDGE_MARGIN_PX
    return x1 >= m and y1 >= m and x2 <= width - m and y2 <= height - m


def cut(frame: Frame, box: tuple[float, float, float, float]) -> VehicleCrop | None:
    """The crop of `box` (frame pixels), copied out of the frame; None when the box is empty."""
    clipped = clip_box(box, frame.width, frame.height)
    if clipped is None:
        return None
    x1, y1, x2, y2 = clipped
    fmt = frame.image.format.name
    if fmt in _I420:
        y = _plane(frame, 0)[y1:y2, x1:x2].copy()
        u = _plane(frame, 1)[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2].copy()
        v = _plane(frame, 2)[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2].copy()
        return VehicleCrop(frame.seq, clipped, "i420", (y, u, v))
    if fmt == "nv12":
        y = _plane(frame, 0)[y1:y2, x1:x2].copy()
        uv = _plane(frame, 1)[y1 // 2 : y2 // 2, x1:x2].copy()
        return VehicleCrop(frame.seq, clipped, "nv12", (y, uv))
    bgr = frame.to_bgr()[y1:y2, x1:x2].copy()
    return VehicleCrop(frame.seq, clipped, "bgr", (bgr,))


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of `gray`, scaled to `SHARPNESS_WIDTH` wide first."""
    h, w = gray.shape[:2]
    if w < 4 or h < 4:
        return 0.0
    scale = SHARPNESS_WIDTH / w
    size = (SHARPNESS_WIDTH, max(4, round(h * scale)))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


def quality(crop: VehicleCrop) -> float:
    """Area × sharpness weight (0–1): what ranks a track's crops for reading and snapshots."""
    s = sharpness(crop.gray())
    return crop.width * crop.height * s / (s + SHARPNESS_HALF)
