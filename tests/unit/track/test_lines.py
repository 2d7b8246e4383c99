"""Line-crossing rules on synthetic tracks: segment, direction, hysteresis, once per track."""

from __future__ import annotations

import numpy as np

from edge.config import LineConfig
from edge.track.lines import LineCounter
from edge.types import Detections

NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
CAR, TRUCK = 2, 7
# Horizontal line from x=100 to x=300 at y=200: moving down the image is "in" (left→right of p1→p2).
LINE = LineConfig(name="gate", points=((100, 200), (300, 200)), directions=("in", "out"))


def track(tid: int, cx: float, bottom: float, cls: int = CAR, w: float = 40, h: float = 30):
    return (tid, cls, (cx - w / 2, bottom - h, cx + w / 2, bottom))


def frame(*tracks) -> Detections:
    n = len(tracks)
    return Detections(
        xyxy=np.array([t[2] for t in tracks], dtype=np.float32).reshape(n, 4),
        score=np.full(n, 0.9, dtype=np.float32),
        class_id=np.array([t[1] for t in tracks], dtype=np.int64),
        track_id=np.array([t[0] for t in tracks], dtype=np.int64),
    )


def run(counter: LineCounter, frames: list[Detections]) -> list:
    out = []
    for f in frames:
        out += counter.update(f, NAMES)
    return out


def test_crossing_down_counts_once_in_its_direction() -> None:
    counter = LineCounter([LINE])
    crossings = run(counter, [frame(track(1, 200, y)) for y in range(150, 260, 5)])
    assert [(c.line, c.track_id, c.class_name, c.direction) for c in crossings] == [
        ("gate", 1, "car", "in")
    ]
    assert abs(crossings[0].point[1] - 200) < 1e-6 and 195 <= crossings[0].point[0] <= 205
    assert counter.counts == {"gate": {"car": {"in": 1}}}


def test_crossing_up_is_the_other_direction() -> None:
    counter = LineCounter([LINE])
    run(counter, [frame(track(1, 150, y, TRUCK)) for y in range(260, 150, -6)])
    assert counter.counts == {"gate": {"truck": {"out": 1}}}


def test_jitter_on_the_line_counts_nothing() -> None:
    """A queue stopped on the line: the bottom edge trembles ±2 px around it for 100 frames."""
    counter = LineCounter([LINE])
    rng = np.random.default_rng(0)
    frames = [frame(track(1, 200, 185 + k)) for k in range(10)]  # arrives, stops on the line
    frames += [frame(track(1, 200, 200 + float(rng.uniform(-2.5, 2.5)))) for _ in range(100)]
    assert run(counter, frames) == []
    assert counter.total() == 0


def test_jitter_then_real_crossing_counts_once_in_the_right_direction() -> None:
    counter = LineCounter([LINE])
    path = [185, 190, 195, 199, 202, 198, 203, 197, 201, 199, 204, 210, 220, 230]
    crossings = run(counter, [frame(track(1, 200, y)) for y in path])
    assert [c.direction for c in crossings] == ["in"]


def test_large_jitter_after_crossing_never_counts_again_nor_backwards() -> None:
    counter = LineCounter([LINE])
    path = [170, 185, 215, 186, 214, 185, 216, 230]  # swings well beyond the band both ways
    crossings = run(counter, [frame(track(1, 200, y)) for y in path])
    assert [c.direction for c in crossings] == ["in"]
    assert counter.counts == {"gate": {"car": {"in": 1}}}


def test_a_new_track_first_seen_on_the_line_is_not_counted_from_the_band() -> None:
    counter = LineCounter([LINE])
    crossings = run(counter, [frame(track(1, 200, y)) for y in (199, 201, 199, 240, 250)])
    assert crossings == []  # its first clear side is beyond the line: no evidence it crossed


def test_crossing_the_infinite_line_outside_the_segment_is_not_counted() -> None:
    counter = LineCounter([LINE])
    left = [frame(track(1, 60, y)) for y in range(150, 260, 5)]  # x=60 < 100
    right = [frame(track(2, 340, y)) for y in range(150, 260, 5)]  # x=340 > 300
    assert run(counter, left + right) == []


def test_diagonal_segment_uses_where_the_path_meets_it() -> None:
    diag = LineConfig(name="d", points=((100, 100), (300, 300)))  # y = x between 100 and 300
    counter = LineCounter([diag])
    # moves right at y=150: meets y=x at x=150, inside the segment
    inside = run(counter, [frame(track(1, x, 150)) for x in range(100, 200, 10)])
    # moves right at y=350: meets y=x at x=350, beyond p2
    outside = run(counter, [frame(track(2, x, 350)) for x in range(300, 400, 10)])
    assert len(inside) == 1 and outside == []
    # at y=150 and x<150 the point is right of p1→p2 (seen with y down); moving right it goes left
    assert inside[0].direction == "out"


def test_unconfirmed_tracks_are_ignored() -> None:
    counter = LineCounter([LINE])
    for y in range(150, 260, 5):
        d = Detections(
            xyxy=np.array([[180, y - 30, 220, y]], dtype=np.float32),
            score=np.array([0.9], dtype=np.float32),
            class_id=np.array([CAR]),
        )
        assert counter.update(d, NAMES) == []


def test_id_switch_near_the_line_does_not_count_twice() -> None:
    """Track 1 crosses and is counted, then the tracker loses it and calls it track 2."""
    counter = LineCounter([LINE])
    frames = [frame(track(1, 200, y)) for y in range(170, 215, 5)]
    frames += [frame(track(2, 200, y)) for y in range(215, 260, 5)]
    assert [c.track_id for c in run(counter, frames)] == [1]


def test_id_switch_just_before_the_line_does_not_invent_a_crossing() -> None:
    counter = LineCounter([LINE])
    frames = [frame(track(1, 200, y)) for y in range(170, 196, 5)]
    frames += [frame(track(2, 200, y)) for y in range(205, 260, 5)]  # new id already beyond
    assert run(counter, frames) == []


def test_ids_swapped_between_two_vehicles_at_the_line_still_count_two() -> None:
    """Vehicles A (ahead) and B (behind) swap ids right after A crossed: each is counted once."""
    counter = LineCounter([LINE])
    frames = []
    for k in range(12):
        a, b = 180 + 5 * k, 150 + 5 * k
        ids = (1, 2) if k < 6 else (2, 1)  # at k=6 A is at 210 (counted), B at 180
        frames.append(frame(track(ids[0], 180, a), track(ids[1], 230, b)))
    for k in range(12, 20):
        frames.append(frame(track(2, 180, 180 + 5 * k), track(1, 230, 150 + 5 * k)))
    crossings = run(counter, frames)
    assert sorted(c.track_id for c in crossings) == [1, 2]
    assert counter.counts == {"gate": {"car": {"in": 2}}}


def test_counts_per_line_class_and_direction() -> None:
    other = LineConfig(name="exit", points=((0, 400), (400, 400)), directions=("south", "north"))
    counter = LineCounter([LINE, other])
    frames = [frame(track(1, 200, y), track(2, 250, 560 - y, TRUCK)) for y in range(150, 460, 10)]
    run(counter, frames)
    assert counter.counts == {
        "gate": {"car": {"in": 1}, "truck": {"out": 1}},
        "exit": {"car": {"south": 1}, "truck": {"north": 1}},
    }
    assert counter.total("gate") == 2 and counter.total() == 4


def test_memory_of_ended_tracks_is_bounded() -> None:
    counter = LineCounter([LINE], forget_after=10)
    for tid in range(1, 500):
        counter.update(frame(track(tid, 200, 100)), NAMES)
    assert len(counter._tracks) <= 10 + 64
    counter.forget(499)
    assert 499 not in counter._tracks


def test_set_lines_keeps_unchanged_lines_counts_and_resets_moved_ones() -> None:
    """A config reload swaps the lines: a line kept as it was keeps its counts and its tracks'
    sides (no double count); a moved line starts from zero; a new line counts from now on."""
    other = LineConfig(name="side", points=((100, 400), (300, 400)))
    counter = LineCounter([LINE, other])
    run(counter, [frame(track(1, 200, y)) for y in range(150, 260, 5)])  # crosses "gate"
    assert counter.counts == {"gate": {"car": {"in": 1}}, "side": {}}
    moved = LineConfig(name="side", points=((100, 300), (300, 300)))
    fresh = LineConfig(name="new", points=((100, 350), (300, 350)))
    counter.set_lines([LINE, moved, fresh])
    assert counter.counts == {"gate": {"car": {"in": 1}}, "side": {}, "new": {}}
    # the same track goes on down: "gate" must not count it again; "side" and "new" count it
    run(counter, [frame(track(1, 200, y)) for y in range(260, 420, 5)])
    assert counter.counts == {
        "gate": {"car": {"in": 1}}, "side": {"car": {"in": 1}}, "new": {"car": {"in": 1}},
    }  # fmt: skip
    counter.set_lines([])
    assert counter.counts == {}
    assert run(counter, [frame(track(2, 200, y)) for y in range(150, 260, 5)]) == []
