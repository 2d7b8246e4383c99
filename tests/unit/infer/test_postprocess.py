from __future__ import annotations

import numpy as np
import pytest

from edge.infer.letterbox import Letterbox
from edge.infer.postprocess import (
    PostprocessParams,
    batched_nms,
    best_class,
    decode_yolox,
    nms,
    postprocess,
    yolox_grid,
)

IDENTITY = Letterbox(scale=1.0, pad_x=0, pad_y=0, src_w=1000, src_h=1000)


def params(conf=0.25, iou=0.5, max_det=30, allowed=None) -> PostprocessParams:
    return PostprocessParams(conf, iou, max_det, None if allowed is None else np.array(allowed))


def test_nms_suppresses_overlaps_and_keeps_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.8], np.float32)
    # box 1 wins; box 0 overlaps it (IoU 0.68) and goes; box 3 overlaps box 1 at IoU 0.31: kept.
    assert nms(boxes, scores, 0.5, 30).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.2, 30).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, 2).tolist() == [1, 3]


def test_nms_keeps_box_at_exactly_the_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8]), 0.5, 30).tolist() == [0, 1]


def test_nms_empty() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5, 30).tolist() == []
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5, 30).tolist() == []


def test_batched_nms_is_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    keep = batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([2, 7, 2]), 0.5, 30)
    assert keep.tolist() == [0, 1]


def test_best_class_filters_after_argmax() -> None:
    cls = np.array([[0.9, 0.6, 0.0], [0.1, 0.8, 0.0], [0.0, 0.3, 0.2], [0.0, 0.0, 0.95]])
    obj = np.array([1.0, 0.5, 0.9, 0.2])
    rows, score, cid = best_class(cls, obj, params(conf=0.25, allowed=[1, 2]))
    # row 0's best is class 0 (not allowed): dropped even though class 1 is 0.6;
    # row 1: 0.4; row 2: 0.27; row 3: obj 0.2 below conf before any product.
    assert rows.tolist() == [1, 2] and cid.tolist() == [1, 1]
    np.testing.assert_allclose(score, [0.4, 0.27], rtol=1e-6)
    rows, _, _ = best_class(cls, None, params(conf=0.5))
    assert rows.tolist() == [0, 1, 3]
    empty = best_class(np.zeros((0, 3)), np.zeros(0), params())
    assert [a.shape for a in empty] == [(0,), (0,), (0,)]


def test_yolox_grid_order_and_decode() -> None:
    grid, stride = yolox_grid(64)
    assert grid.shape == (64 + 16 + 4, 2) and stride[0, 0] == 8 and stride[-1, 0] == 32
    assert grid[:3].tolist() == [[0, 0], [1, 0], [2, 0]] and grid[8].tolist() == [0, 1]
    raw = np.zeros((84, 7), np.float32)
    raw[9, :4] = [0.5, 0.25, 0.0, np.log(2)]
    out = decode_yolox(raw, 64)
    np.testing.assert_allclose(out[9, :4], [(1 + 0.5) * 8, (1 + 0.25) * 8, 8, 16], rtol=1e-6)
    with pytest.raises(ValueError, match="anchor points"):
        decode_yolox(raw[:10], 64)


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
