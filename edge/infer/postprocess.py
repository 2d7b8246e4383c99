"""From a model's raw output to the vehicles of each picture: score, filter, decode, NMS.

Everything is whole-array numpy over the whole batch, and NMS is one OpenCV call for the batch; the
only per-picture Python is the final split into one `Detections` per picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from edge.infer.letterbox import Letterbox
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


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate((b[:, :2] - half, b[:, :2] + half), axis=1)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes` (for comparing detection sets)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return iou


def nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS within each group (one group per picture and class) in one call: indices of the
    kept boxes, best first. A box goes when its IoU with a better box kept in its group is above
    `iou`; equal scores keep their input order. Scores must be positive (postprocess keeps only
    scores above `conf`).

    The groups are moved apart on the x axis so that no two can overlap, then OpenCV's C++ NMS
    runs once over the whole batch instead of a Python loop per kept box and picture."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = boxes.astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    span = float(boxes[:, 2].max() - min(float(boxes[:, 0].min()), 0.0)) + 1.0
    xywh[:, 0] += groups.astype(np.float64) * span
    kept = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, iou)  # type: ignore[arg-type]
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def postprocess_batch(
    raw: np.ndarray,
    family: str,
    input_size: int,
    letterboxes: Sequence[Letterbox],
    params: PostprocessParams,
) -> list[Detections]:
    """The raw output of a batch of pictures of one input size (`B×A×(5+C)`, or `B×(4+C)×A` for
    YOLOv8) → Detections in source pixels, one per picture.

    The whole batch goes through each step at once: the conf filter first (on objectness where the
    family has one), then the best class over *all* classes (as YOLOv5 does) with the conf and
    class filters, box decoding of the survivors only, one NMS per picture and class, and the
    mapping back to each picture's source pixels."""
    if raw.ndim != 3 or raw.shape[0] != len(letterboxes):
        raise ValueError(
            f"expected a batch of {len(letterboxes)} pictures' outputs, got shape {raw.shape}"
        )
    rows = raw.transpose(0, 2, 1) if family == "yolov8" else raw
    first = 4 if family == "yolov8" else 5
    if family == "yolov8":
        pic, anchor = np.nonzero(rows[:, :, first:].max(axis=2) > params.conf)
        cand = rows[pic, anchor]  # the candidates' rows, gathered once
        scores = cand[:, first:]
    else:
        pic, anchor = np.nonzero(rows[:, :, 4] > params.conf)  # score <= obj: filter on obj first
        cand = rows[pic, anchor]
        scores = cand[:, first:] * cand[:, 4:5]
    cls = scores.argmax(axis=1)
    best = scores.max(axis=1)
    keep = best > params.conf
    if params.allowed is not None:
        keep &= _allowed_mask(params.allowed, scores.shape[1])[cls]
    pic, anchor, cls, best = pic[keep], anchor[keep], cls[keep], best[keep].astype(np.float32)
    cxcywh = np.asarray(cand[keep, :4], dtype=np.float32)
    if family == "yolox":
        lb = letterboxes[0] if letterboxes else None
        h = (lb.in_h if lb else None) or input_size
        w = (lb.in_w if lb else None) or input_size
        grid, stride = yolox_grid(h, w)
        if rows.shape[1] != grid.shape[0]:
            raise ValueError(
                f"YOLOX output has {rows.shape[1]} anchor points, a {h}×{w} px input gives "
                f"{grid.shape[0]}"
            )
        cxcywh[:, :2] = (cxcywh[:, :2] + grid[anchor]) * stride[anchor]
        cxcywh[:, 2:] = np.exp(cxcywh[:, 2:]) * stride[anchor]
    boxes = cxcywh_to_xyxy(cxcywh)
    kept = nms(boxes, best, pic * (int(cls.max(initial=0)) + 1) + cls, params.iou)
    kept = kept[np.argsort(pic[kept], kind="stable")]  # by picture, each best first
    starts = np.searchsorted(pic[kept], np.arange(len(letterboxes) + 1))
    # At most max_det per picture: a box's rank in its picture is its place after its start.
    rank = np.arange(len(kept)) - starts[pic[kept]]
    kept = kept[rank < params.max_det]
    starts = np.searchsorted(pic[kept], np.arange(len(letterboxes) + 1))
    xyxy = _to_sources(boxes[kept], pic[kept], letterboxes)
    score, class_id = best[kept], cls[kept].astype(np.int64)
    return [
        Detections(xyxy=xyxy[a:b], score=score[a:b], class_id=class_id[a:b])
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)
    ]


@lru_cache(maxsize=16)
def _allowed_mask_cached(allowed: tuple[int, ...], classes: int) -> np.ndarray:
    mask = np.zeros(classes, dtype=bool)
    ids = np.array([c for c in allowed if 0 <= c < classes], dtype=np.int64)
    mask[ids] = True
    return mask


def _allowed_mask(allowed: np.ndarray, classes: int) -> np.ndarray:
    """`mask[class_id]`: whether the class is kept (`np.isin` costs more than the rest of a
    batch's filtering)."""
    return _allowed_mask_cached(tuple(allowed.tolist()), classes)


def _to_sources(boxes: np.ndarray, pic: np.ndarray, letterboxes: Sequence[Letterbox]) -> np.ndarray:
    """`to_source` of each box with its picture's letterbox, for the whole batch at once (the
    same float32 arithmetic, so the same numbers)."""
    geo = np.array(
        [(lb.pad_x, lb.pad_y, lb.scale, lb.src_w, lb.src_h) for lb in letterboxes], np.float32
    ).reshape(-1, 5)[pic]
    out = np.empty((len(boxes), 4), dtype=np.float32)
    xs, ys = out[:, 0::2], out[:, 1::2]
    np.subtract(boxes[:, 0::2], geo[:, 0:1], out=xs)
    np.subtract(boxes[:, 1::2], geo[:, 1:2], out=ys)
    out /= geo[:, 2:3]
    np.clip(xs, 0, geo[:, 3:4], out=xs)
    np.clip(ys, 0, geo[:, 4:5], out=ys)
    return out


def postprocess(
    raw: np.ndarray, family: str, input_size: int, letterbox: Letterbox, params: PostprocessParams
) -> Detections:
    """One picture's raw output (`A×(5+C)`, or `(4+C)×A` for YOLOv8; with or without its batch
    axis) → Detections in source px."""
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[0] != 1:
        raise ValueError(f"expected one picture's 2-D output, got shape {raw.shape}")
    return postprocess_batch(raw, family, input_size, [letterbox], params)[0]
