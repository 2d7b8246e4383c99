"""From a model's raw output to the vehicles of one picture: decode, score, filter, NMS.

Everything is whole-array numpy. The only Python loop is greedy NMS, which runs once per *kept*
box (at most `max_det`), never once per anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge.infer.letterbox import Letterbox, to_source
from edge.types import Detections

YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True, slots=True)
class PostprocessParams:
    conf: float
    iou: float
    max_det: int
    allowed: np.ndarray | None
    """Class ids to keep (an int array), None for every class."""


@lru_cache(maxsize=16)
def yolox_grid(
    height: int, width: int | None = None, strides: tuple[int, ...] = YOLOX_STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-point centres (A×2, x then y) and strides (A×1) in YOLOX's output order, for a
    height×width input (square when `width` is None)."""
    width = height if width is None else width
    grids, steps = [], []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(height // s), np.arange(width // s), indexing="ij")
        grids.append(np.stack((xs, ys), axis=-1).reshape(-1, 2))
        steps.append(np.full((xs.size, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode_yolox(raw: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Raw YOLOX `A×(5+C)` → the YOLOv5 layout (cx, cy, w, h in input pixels, obj, classes)."""
    grid, stride = yolox_grid(height, width)
    if raw.shape[0] != grid.shape[0]:
        raise ValueError(
            f"YOLOX output has {raw.shape[0]} anchor points, a {height}×{width or height} px "
            f"input gives {grid.shape[0]}"
        )
    out = raw.astype(np.float32, copy=True)
    out[:, :2] = (raw[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(raw[:, 2:4]) * stride
    return out


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate((b[:, :2] - half, b[:, :2] + half), axis=1)


def best_class(
    class_scores: np.ndarray, obj: np.ndarray | None, params: PostprocessParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row the best class over *all* classes (as YOLOv5 does), then the conf and class filters.

    Returns (row indices kept, their score = obj × class or class, their class id).
    """
    rows = np.arange(len(class_scores))
    if obj is not None:  # score <= obj, so rows with a low objectness can go before the product
        rows = rows[obj > params.conf]
        scores = class_scores[rows] * obj[rows, None]
    else:
        scores = class_scores
    cls = scores.argmax(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    best = scores[np.arange(len(rows)), cls]
    keep = best > params.conf
    if params.allowed is not None:
        keep &= np.isin(cls, params.allowed)
    return rows[keep], best[keep].astype(np.float32), cls[keep].astype(np.int64)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, best first; a box goes when IoU > `iou` with a kept one.

    Stopping at `max_det` gives the same first `max_det` boxes as running to the end, because a
    box's fate depends only on the better-scored boxes kept before it.
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, max_det: int
) -> np.ndarray:
    """Per-class NMS in one pass: each class's boxes are shifted so that classes never overlap."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    shifted = boxes + (class_id.astype(np.float32) * span)[:, None]
    return nms(shifted, scores, iou, max_det)


def postprocess(
    raw: np.ndarray, family: str, input_size: int, letterbox: Letterbox, params: PostprocessParams
) -> Detections:
    """One picture's raw output (`A×(5+C)`, or `(4+C)×A` for YOLOv8) → Detections in source px."""
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 2:
        raise ValueError(f"expected one picture's 2-D output, got shape {raw.shape}")
    if family == "yolov8":
        rows = raw.T
        boxes_cxcywh, obj, class_scores = rows[:, :4], None, rows[:, 4:]
    else:
        h, w = letterbox.in_h or input_size, letterbox.in_w or input_size
        rows = decode_yolox(raw, h, w) if family == "yolox" else raw
        boxes_cxcywh, obj, class_scores = rows[:, :4], rows[:, 4], rows[:, 5:]
    idx, score, cls = best_class(class_scores, obj, params)
    boxes = cxcywh_to_xyxy(np.asarray(boxes_cxcywh[idx], dtype=np.float32))
    keep = batched_nms(boxes, score, cls, params.iou, params.max_det)
    return Detections(
        xyxy=to_source(boxes[keep], letterbox).reshape(-1, 4),
        score=score[keep],
        class_id=cls[keep],
    )
