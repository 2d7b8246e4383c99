"""The batched Kalman step equals filterpy's own predict/update, filter by filter."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edge.track.kalman import (
    box_to_z,
    boxes_to_z,
    make_kalman,
    predict_many,
    update_many,
    x_to_box,
    xs_to_boxes,
)


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 500, size=(n, 2))
    wh = rng.uniform(5, 120, size=(n, 2))
    return np.hstack([xy, xy + wh])


def test_vectorised_conversions_match_the_scalar_ones() -> None:
    boxes = random_boxes(np.random.default_rng(1), 20)
    zs = boxes_to_z(boxes)
    assert zs.shape == (20, 4, 1)
    for box, z in zip(boxes, zs, strict=True):
        assert z == pytest.approx(box_to_z(box))
    xs = np.concatenate([zs, np.zeros((20, 3, 1))], axis=1)
    assert xs_to_boxes(xs) == pytest.approx(np.array([x_to_box(x) for x in xs]))
    assert xs_to_boxes(xs) == pytest.approx(boxes)


def test_batched_steps_equal_filterpy_methods_over_a_sequence() -> None:
    rng = np.random.default_rng(7)
    starts = random_boxes(rng, 6)
    ours = [make_kalman(b) for b in starts]
    reference = copy.deepcopy(ours)
    velocity = rng.uniform(-6, 6, size=(6, 4))
    for step in range(1, 12):
        predicted = predict_many(ours)
        for kf in reference:  # SORT's guard, then filterpy's own predict
            if kf.x[6, 0] + kf.x[2, 0] <= 0:
                kf.x[6, 0] = 0.0
            kf.predict()
        assert predicted == pytest.approx(np.array([x_to_box(kf.x) for kf in reference]))
        seen = [i for i in range(6) if (i + step) % 3]  # some filters miss some frames
        boxes = starts[seen] + step * velocity[seen] + rng.normal(0, 1.0, size=(len(seen), 4))
        updated = update_many([ours[i] for i in seen], boxes)
        for i, box in zip(seen, boxes, strict=True):
            reference[i].update(box_to_z(box))
        assert updated == pytest.approx(np.array([x_to_box(reference[i].x) for i in seen]))
        for a, b in zip(ours, reference, strict=True):
            np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(a.P, b.P, rtol=1e-9, atol=1e-9)


def test_negative_area_guard_as_in_sort() -> None:
    """SORT zeroes the area velocity when the next area would be negative, then predicts."""
    kf = make_kalman(np.array([0.0, 0.0, 10.0, 10.0]))
    kf.x[6, 0] = -500.0  # area 100, shrinking by 500 per frame
    predict_many([kf])
    assert kf.x[6, 0] == 0.0 and kf.x[2, 0] == pytest.approx(100.0)


def test_empty_batches() -> None:
    assert predict_many([]).shape == (0, 4)
    assert update_many([], np.zeros((0, 4))).shape == (0, 4)
