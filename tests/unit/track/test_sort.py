"""SORT: the Kalman step, IoU association and the track life cycle, on synthetic boxes."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import TrackerConfig
from edge.track.kalman import box_to_z, make_kalman, x_to_box
from edge.track.sort import SortTracker, associate, iou_matrix, suppress_duplicates
from edge.types import Detections

CAR, TRUCK = 2, 7


def dets(*boxes: tuple[float, float, float, float], classes: list[int] | None = None,
         scores: list[float] | None = None) -> Detections:  # fmt: skip
    n = len(boxes)
    return Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(n, 4),
        score=np.array(scores or [0.9] * n, dtype=np.float32),
        class_id=np.array(classes or [CAR] * n, dtype=np.int64),
    )


def shifted(box: tuple[float, float, float, float], dx: float, dy: float = 0.0):
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


# -- Kalman step ------------------------------------------------------------------------------


def test_measurement_round_trip() -> None:
    box = np.array([10.0, 20.0, 50.0, 40.0])
    z = box_to_z(box)
    assert z[:, 0].tolist() == pytest.approx([30.0, 30.0, 800.0, 2.0])
    x = np.zeros((7, 1))
    x[:4] = z
    assert x_to_box(x).tolist() == pytest.approx(box.tolist())


def test_kalman_learns_constant_velocity_and_extrapolates() -> None:
    box = np.array([100.0, 100.0, 140.0, 130.0])
    kf = make_kalman(box)
    for k in range(1, 15):
        kf.predict()
        kf.update(box_to_z(box + [5.0 * k, 0, 5.0 * k, 0]))
    assert kf.x[4, 0] == pytest.approx(5.0, abs=0.3)  # vx learned
    assert kf.x[5, 0] == pytest.approx(0.0, abs=0.3)
    kf.predict()
    predicted = x_to_box(kf.x)
    assert predicted.tolist() == pytest.approx((box + [75.0, 0, 75.0, 0]).tolist(), abs=1.0)


def test_kalman_first_prediction_stays_put() -> None:
    """At birth the velocity is unknown (zero mean): the first prediction is the box itself."""
    box = np.array([0.0, 0.0, 20.0, 10.0])
    kf = make_kalman(box)
    assert kf.P[4, 4] == 1000 * kf.P[0, 0]  # velocity far less certain than position
    kf.predict()
    assert x_to_box(kf.x).tolist() == pytest.approx(box.tolist())


def test_shrinking_track_never_gets_negative_area() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=1, max_age=30))
    for k in range(6):  # shrinks quickly, then disappears: prediction must stay finite
        s = 40 - 6 * k
        tracker.update(dets((100, 100, 100 + s, 100 + s)))
    for _ in range(20):
        tracker.update(Detections.empty())
        assert all(t.kf.x[2, 0] >= 0 for t in tracker._tracks)


# -- association -----------------------------------------------------------------------------


def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_hungarian_maximises_total_iou_where_greedy_would_not() -> None:
    """Det 0 overlaps both tracks; the best for det 0 alone (track 0) would leave det 1 out."""
    trks = np.array([[0, 0, 10, 10], [3, 0, 13, 10]], dtype=float)
    det_a = [2, 0, 12, 10]  # IoU 0.667 with trk 0, 0.818 with trk 1
    det_b = [5, 0, 15, 10]  # IoU 0.333 with trk 0, 0.818 with trk 1
    matches, un_d, un_t = associate(np.array([det_b, det_a], dtype=float), trks, 0.3)
    assert sorted(matches) == [(0, 1), (1, 0)]
    assert un_d == [] and un_t == []


def test_iou_gate_rejects_weak_pairs() -> None:
    trks = np.array([[0, 0, 10, 10]], dtype=float)
    far = np.array([[8, 0, 18, 10]], dtype=float)  # IoU 2/18 = 0.11
    matches, un_d, un_t = associate(far, trks, 0.3)
    assert matches == [] and un_d == [0] and un_t == [0]
    matches, _, _ = associate(far, trks, 0.1)
    assert matches == [(0, 0)]


def test_suppress_duplicates_is_class_agnostic() -> None:
    d = dets((0, 0, 40, 30), (1, 0, 41, 30), (100, 0, 140, 30),
             classes=[TRUCK, CAR, CAR], scores=[0.4, 0.8, 0.5])  # fmt: skip
    assert suppress_duplicates(d, 0.7).tolist() == [1, 2]


# -- life cycle ------------------------------------------------------------------------------


def test_tracks_are_reported_only_once_confirmed() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=3))
    box = (10, 10, 50, 40)
    out = [tracker.update(dets(shifted(box, 2 * k))) for k in range(5)]
    assert [len(o) for o in out] == [0, 0, 1, 1, 1]  # not even during the first frames
    assert [int(o.track_id[0]) for o in out[2:]] == [1, 1, 1]
    assert tracker.last_assignment.tolist() == [1]
    assert tracker.confirmed_count == 1


def test_single_false_detections_never_become_tracks() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=3))
    for k in range(20):  # a blip at a new place every frame
        out = tracker.update(dets((20 * k, 0, 20 * k + 10, 10)))
        assert len(out) == 0
    assert tracker.flush() == []


def test_id_survives_missed_frames_within_max_age_then_ends_once() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=2, max_age=3))
    box = (100, 100, 140, 130)
    for k in range(4):
        tracker.update(dets(shifted(box, 3 * k)))
    for _ in range(3):  # missed: coasting, not reported
        assert len(tracker.update(Detections.empty())) == 0
    back = tracker.update(dets(shifted(box, 3 * 7)))  # where constant velocity puts it
    assert back.track_id.tolist() == [1]
    assert tracker.ended() == []
    for _ in range(4):
        tracker.update(Detections.empty())
    ended = tracker.ended()
    assert [(s.track_id, s.hits, s.first_frame, s.last_frame) for s in ended] == [(1, 5, 1, 8)]
    assert tracker.ended() == []  # reported once


def test_class_is_majority_of_its_detections() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=1))
    box = (0, 0, 40, 30)
    classes = [TRUCK, CAR, CAR, TRUCK, CAR]
    reported = [tracker.update(dets(shifted(box, k), classes=[c])) for k, c in enumerate(classes)]
    # a tie (2 trucks, 2 cars at the 4th frame) goes to the class seen first
    assert [int(r.class_id[0]) for r in reported] == [TRUCK, TRUCK, CAR, TRUCK, CAR]
    assert [s.class_id for s in tracker.flush()] == [CAR]


def test_two_vehicles_in_parallel_lanes_keep_their_ids() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=2))
    a, b = (0, 0, 30, 20), (0, 40, 30, 60)
    seen: dict[int, set[float]] = {}
    for k in range(30):
        out = tracker.update(dets(shifted(b, 4 * k), shifted(a, 5 * k)))
        for box, tid in zip(out.xyxy, out.track_id, strict=True):
            seen.setdefault(int(tid), set()).add(round(float(box[1]) / 40))
    assert sorted(seen) == [1, 2]
    assert all(len(lanes) == 1 for lanes in seen.values())


def test_duplicate_detection_of_one_vehicle_makes_one_track() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=2))
    box = (50, 50, 90, 80)
    for k in range(10):
        d = dets(shifted(box, 2 * k), shifted(box, 2 * k + 1), classes=[CAR, TRUCK],
                 scores=[0.6, 0.4])  # fmt: skip
        out = tracker.update(d)
    assert out.track_id.tolist() == [1]
    assert tracker.last_assignment.tolist() == [1, -1]
    assert tracker.confirmed_count == 1


def test_flush_ends_live_confirmed_tracks_only() -> None:
    tracker = SortTracker(TrackerConfig(min_hits=3))
    for k in range(3):
        tracker.update(dets((0, 0, 10, 10), (100 + 30 * k, 0, 110 + 30 * k, 10)))
    ended = tracker.flush()
    assert [s.track_id for s in ended] == [1]
    assert len(tracker.update(Detections.empty())) == 0


@pytest.mark.parametrize("confirmed_first", [True, False])
def test_a_track_born_on_a_duplicate_cannot_steal_an_established_vehicle(
    confirmed_first: bool,
) -> None:
    """A duplicate box (IoU 0.6 with the real one, so not suppressed) starts a tentative track;
    the next detection overlaps that newborn more (0.86) than the confirmed track (0.70)."""
    tracker = SortTracker(TrackerConfig(min_hits=3), confirmed_first=confirmed_first)
    real, dup, next_det = (100, 100, 140, 130), (110, 100, 150, 130), (107, 100, 147, 130)
    for _ in range(5):
        tracker.update(dets(real))
    tracker.update(dets(real, dup, scores=[0.9, 0.5]))
    out = tracker.update(dets(next_det))
    if confirmed_first:
        assert out.track_id.tolist() == [1]
    else:  # the published single-stage assignment gives it to the newborn: track 1 is lost
        assert out.track_id.tolist() == []
