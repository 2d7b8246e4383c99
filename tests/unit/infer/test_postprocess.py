from __future__ import annotations

import numpy as np
import pytest

from edge.infer.letterbox import Letterbox
from edge.infer.postprocess import (
    PostprocessParams,
    iou_one_to_many,
    nms,
    postprocess,
    postprocess_batch,
    yolox_grid,
)

IDENTITY = Letterbox(scale=1.0, pad_x=0, pad_y=0, src_w=1000, src_h=1000)


def params(conf=0.25, iou=0.5, max_det=30, allowed=None) -> PostprocessParams:
    return PostprocessParams(conf, iou, max_det, None if allowed is None else np.array(allowed))


def test_nms_suppresses_overlaps_and_keeps_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.8], np.float32)
    one = np.zeros(4, np.int64)
    # box 1 wins; box 0 overlaps it (IoU 0.68) and goes; box 3 overlaps box 1 at IoU 0.31: kept.
    assert nms(boxes, scores, one, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, one, 0.2).tolist() == [1, 2]


def test_nms_keeps_box_at_exactly_the_threshold_and_ties_in_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8]), np.zeros(2, int), 0.5).tolist() == [0, 1]
    far = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], np.float32)
    assert nms(far, np.full(3, 0.5), np.zeros(3, int), 0.5).tolist() == [0, 1, 2]


def test_nms_empty() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).tolist() == []


def test_nms_is_per_group_even_with_negative_coordinates() -> None:
    boxes = np.array([[-50, 0, 10, 10], [-50, 0, 10, 10], [-50, 0, 10, 10]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([2, 7, 2]), 0.5)
    assert keep.tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2]), 0.5).tolist() == [0, 1, 2]


def test_best_class_is_taken_over_all_classes_before_the_class_filter() -> None:
    cls = np.array([[0.9, 0.6, 0.0], [0.1, 0.8, 0.0], [0.0, 0.3, 0.2], [0.0, 0.0, 0.95]])
    obj = np.array([1.0, 0.5, 0.9, 0.2])
    rows = np.zeros((4, 5 + 3), np.float32)
    rows[:, :4] = [[10 + 40 * i, 10, 8, 8] for i in range(4)]  # apart: NMS keeps them all
    rows[:, 4], rows[:, 5:] = obj, cls
    dets = postprocess(rows, "yolov5", 256, IDENTITY, params(conf=0.25, allowed=[1, 2]))
    # row 0's best is class 0 (not allowed): dropped even though class 1 is 0.6;
    # row 1: 0.4; row 2: 0.27; row 3: obj 0.2 below conf before any product.
    assert dets.class_id.tolist() == [1, 1]
    np.testing.assert_allclose(dets.score, [0.4, 0.27], rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy[:, 0], [46, 86])
    every = postprocess(rows, "yolov5", 256, IDENTITY, params(conf=0.5))
    assert every.class_id.tolist() == [0]  # only row 0 (0.9) is above 0.5 once multiplied by obj


def test_yolox_grid_order_and_decode() -> None:
    grid, stride = yolox_grid(64)
    assert grid.shape == (64 + 16 + 4, 2) and stride[0, 0] == 8 and stride[-1, 0] == 32
    assert grid[:3].tolist() == [[0, 0], [1, 0], [2, 0]] and grid[8].tolist() == [0, 1]
    raw = np.zeros((84, 7), np.float32)
    raw[9, :6] = [0.5, 0.25, 0.0, np.log(2), 1.0, 0.9]  # cell (1, 1) of stride 8
    dets = postprocess(raw, "yolox", 64, IDENTITY, params())
    np.testing.assert_allclose(dets.xyxy, [[12 - 4, 10 - 8, 12 + 4, 10 + 8]], rtol=1e-6)
    with pytest.raises(ValueError, match="anchor points"):
        postprocess(raw[:10], "yolox", 64, IDENTITY, params())


def test_yolox_grid_of_a_rect_input_runs_row_by_row() -> None:
    grid, stride = yolox_grid(32, 64)  # 32 high, 64 wide: stride 8 is 4 rows of 8 cells
    assert grid.shape == (32 + 8 + 2, 2) and stride[31, 0] == 8 and stride[32, 0] == 16
    assert grid[7].tolist() == [7, 0] and grid[8].tolist() == [0, 1]
    assert grid[-2:].tolist() == [[0, 0], [1, 0]]  # stride 32: one row of two
    raw = np.zeros((42, 7), np.float32)
    lb = Letterbox(scale=1.0, pad_x=0, pad_y=0, src_w=64, src_h=30, in_w=64, in_h=32)
    raw[8, [0, 1, 4, 5]] = [0.5, 0.5, 1.0, 0.9]  # an 8 px object centred in cell (0, 1)
    dets = postprocess(raw, "yolox", 999, lb, params())  # the letterbox's size wins
    np.testing.assert_allclose(dets.xyxy, [[0, 8, 8, 16]], atol=1e-5)


def _v5_rows(rows: list[tuple[float, ...]], classes: int = 3) -> np.ndarray:
    out = np.zeros((len(rows), 5 + classes), np.float32)
    for i, (cx, cy, w, h, obj, c, s) in enumerate(rows):
        out[i, :5] = cx, cy, w, h, obj
        out[i, 5 + int(c)] = s
    return out


def test_postprocess_v5_maps_back_and_clips() -> None:
    raw = _v5_rows(
        [(50, 50, 20, 20, 0.9, 1, 0.9), (52, 50, 20, 20, 0.9, 1, 0.8), (5, 5, 20, 20, 0.9, 2, 0.9)]
    )
    lb = Letterbox(scale=0.5, pad_x=0, pad_y=10, src_w=200, src_h=100)
    dets = postprocess(raw[None], "yolov5", 64, lb, params())
    assert dets.class_id.tolist() == [1, 2]
    np.testing.assert_allclose(dets.xyxy, [[80, 60, 120, 100], [0, 0, 30, 10]])
    np.testing.assert_allclose(dets.score, [0.81, 0.81], rtol=1e-6)


def test_postprocess_v8_layout_has_no_objectness() -> None:
    rows = np.zeros((2, 4 + 3), np.float32)
    rows[0, :4], rows[0, 4 + 2] = (10, 10, 4, 4), 0.7
    rows[1, :4], rows[1, 4 + 0] = (30, 30, 4, 4), 0.2
    dets = postprocess(rows.T, "yolov8", 64, IDENTITY, params())
    assert dets.class_id.tolist() == [2] and dets.score.tolist() == pytest.approx([0.7])
    np.testing.assert_allclose(dets.xyxy, [[8, 8, 12, 12]])


def test_postprocess_empty_and_max_det() -> None:
    nothing = postprocess(np.zeros((84, 7), np.float32), "yolox", 64, IDENTITY, params())
    assert len(nothing) == 0 and nothing.xyxy.shape == (0, 4)
    many = _v5_rows([(20 * i + 10, 10, 8, 8, 0.9, 0, 0.5 + i / 100) for i in range(40)])
    dets = postprocess(many, "yolov5", 64, IDENTITY, params(max_det=5))
    assert len(dets) == 5 and dets.score[0] == dets.score.max()
    with pytest.raises(ValueError, match="2-D"):
        postprocess(np.zeros((2, 84, 7)), "yolox", 64, IDENTITY, params())


def test_a_batch_gives_each_picture_its_own_detections() -> None:
    same = _v5_rows([(50, 50, 20, 20, 0.9, 1, 0.9)])
    raw = np.stack([same, same, np.zeros_like(same)])
    near = Letterbox(scale=1.0, pad_x=0, pad_y=0, src_w=100, src_h=100)
    half = Letterbox(scale=0.5, pad_x=0, pad_y=0, src_w=200, src_h=200)
    a, b, c = postprocess_batch(raw, "yolov5", 64, [near, half, near], params())
    assert len(a) == len(b) == 1 and len(c) == 0  # the same box in two pictures: both kept
    np.testing.assert_allclose(a.xyxy, [[40, 40, 60, 60]])
    np.testing.assert_allclose(b.xyxy, [[80, 80, 120, 120]])
    with pytest.raises(ValueError, match="batch of 2"):
        postprocess_batch(raw, "yolov5", 64, [near, near], params())


def _reference(raw: np.ndarray, family: str, size: int, lb: Letterbox, p: PostprocessParams):
    """One picture the plain way: decode every anchor, best class, greedy NMS per class in a
    Python loop (the textbook algorithm), top `max_det`."""
    if family == "yolov8":
        rows, obj = raw.T.astype(np.float64), None
        cls_scores = rows[:, 4:]
    else:
        rows = raw.astype(np.float64).copy()
        if family == "yolox":
            grid, stride = yolox_grid(lb.in_h or size, lb.in_w or size)
            rows[:, :2] = (rows[:, :2] + grid) * stride
            rows[:, 2:4] = np.exp(rows[:, 2:4]) * stride
        obj, cls_scores = rows[:, 4], rows[:, 5:]
    scores = cls_scores * (obj[:, None] if obj is not None else 1.0)
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    ok = (best > p.conf) & ((obj > p.conf) if obj is not None else True)
    if p.allowed is not None:
        ok &= np.isin(cls, p.allowed)
    idx = np.nonzero(ok)[0]
    xyxy = np.concatenate(
        [rows[idx, :2] - rows[idx, 2:4] / 2, rows[idx, :2] + rows[idx, 2:4] / 2], 1
    )
    order = sorted(range(len(idx)), key=lambda k: -best[idx[k]])
    kept: list[int] = []
    for k in order:
        same = [j for j in kept if cls[idx[j]] == cls[idx[k]]]
        if all(iou_one_to_many(xyxy[k], xyxy[[j]])[0] <= p.iou for j in same):
            kept.append(k)
    kept = kept[: p.max_det]
    return [(int(cls[idx[k]]), float(best[idx[k]])) for k in kept], xyxy[kept]


@pytest.mark.parametrize("family", ["yolox", "yolov5", "yolov8"])
def test_batch_postprocess_matches_the_plain_algorithm_picture_by_picture(family: str) -> None:
    rng = np.random.default_rng(7)
    h, w, classes = 64, 96, 6
    anchors = len(yolox_grid(h, w)[0])
    raw = np.zeros((5, anchors, 5 + classes), np.float32)
    raw[..., :2] = (
        rng.uniform(0, 1, (5, anchors, 2))
        if family == "yolox"
        else rng.uniform(0, 96, (5, anchors, 2))
    )
    raw[..., 2:4] = (
        rng.uniform(-1, 1.5, (5, anchors, 2))
        if family == "yolox"
        else rng.uniform(4, 40, (5, anchors, 2))
    )
    raw[..., 4] = rng.uniform(0, 1, (5, anchors)) ** 3
    raw[..., 5:] = rng.uniform(0, 1, (5, anchors, classes)) ** 2
    if family == "yolov8":
        raw = np.ascontiguousarray(np.delete(raw, 4, axis=2).transpose(0, 2, 1))
    lbs = [
        Letterbox(scale=0.2 + 0.1 * i, pad_x=i, pad_y=2 * i, src_w=480, src_h=300, in_w=w, in_h=h)
        for i in range(5)
    ]
    p = params(conf=0.2, iou=0.45, max_det=12, allowed=[0, 2, 3, 5])
    got = postprocess_batch(raw, family, 999, lbs, p)
    for i, lb in enumerate(lbs):
        want, want_xyxy = _reference(raw[i], family, 999, lb, p)
        assert len(want) > 3
        assert [(int(c), pytest.approx(s, abs=1e-5)) for c, s in want] == list(
            zip(got[i].class_id.tolist(), got[i].score.tolist(), strict=True)
        )
        back = np.clip((want_xyxy - [lb.pad_x, lb.pad_y] * 2) / lb.scale, 0, [480, 300] * 2)
        np.testing.assert_allclose(got[i].xyxy, back, atol=1e-2)
