"""CameraTracking (tracker + lines + events + metrics) and `edge analyze`'s --line parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from edge.commands.analyze import parse_line
from edge.config import LineConfig, TrackerConfig
from edge.metrics import EdgeMetrics
from edge.track.camera import PLATE_WAIT_FRAMES, CameraTracking
from edge.track.events import PlateInfo, VehicleEvent
from edge.types import Detections

NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]


def one(box: tuple[float, float, float, float], cls: int = 2) -> Detections:
    return Detections(
        xyxy=np.array([box], dtype=np.float32),
        score=np.array([0.8], dtype=np.float32),
        class_id=np.array([cls], dtype=np.int64),
    )


def test_crossing_and_track_end_become_events_and_metrics() -> None:
    metrics = EdgeMetrics()
    events: list[VehicleEvent] = []
    line = LineConfig(name="gate", points=((0, 100), (400, 100)), directions=("down", "up"))
    cam = CameraTracking("cam7", TrackerConfig(min_hits=2, max_age=2), [line], NAMES,
                         events.append, metrics=metrics)  # fmt: skip
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(20):  # a truck driving down through y=100
        cam.update(one((100, 40 + 6 * k, 140, 70 + 6 * k), cls=7), t0, frame=k)
    for k in range(20, 24):
        cam.update(Detections.empty(), t0, frame=k)
    assert [(e.kind, e.track_id, e.class_name, e.line, e.direction) for e in events] == [
        ("crossing", 1, "truck", "gate", "down"),
        ("track_end", 1, "truck", None, None),
    ]
    assert events[0].frame is not None and 3 <= events[0].frame <= 6
    assert cam.counts == {"gate": {"truck": {"down": 1}}}
    value = metrics.registry.get_sample_value
    labels = {"camera": "cam7", "line": "gate", "class": "truck", "direction": "down"}
    assert value("edge_line_crossings_total", labels) == 1
    assert value("edge_tracks_confirmed_total", {"camera": "cam7"}) == 1
    assert value("edge_stage_seconds_count", {"camera": "cam7", "stage": "tracking"}) == 24
    assert cam.finish() == []


def test_finish_ends_live_tracks_with_an_event_carrying_the_plate() -> None:
    events: list[VehicleEvent] = []
    asked: list[tuple[int, bool]] = []

    def plate_of(track_id: int, ended: bool) -> PlateInfo | None:
        asked.append((track_id, ended))
        return PlateInfo("AB123CD", 0.93, 3, "c-1.jpg", "c-1-plate.jpg") if ended else None

    cam = CameraTracking("c", TrackerConfig(min_hits=1), [], NAMES, events.append,
                         metrics=EdgeMetrics(), plate_of=plate_of)  # fmt: skip
    cam.update(one((0, 0, 10, 10)))
    ended = cam.finish()
    assert [s.track_id for s in ended] == [1]
    assert asked == [(1, True)]
    assert [(e.kind, e.plate, e.plate_confidence, e.plate_reads, e.snapshot, e.plate_snapshot)
            for e in events] == [("track_end", "AB123CD", 0.93, 3, "c-1.jpg", "c-1-plate.jpg")]


def test_a_track_end_waits_for_its_plate_read_in_flight_within_a_bound() -> None:
    events: list[VehicleEvent] = []
    plates: dict[int, str] = {}
    reading = {1, 2}

    def plate_of(track_id: int, ended: bool) -> PlateInfo | None:
        return PlateInfo(plates[track_id], 0.9, 1) if track_id in plates else None

    cam = CameraTracking("c", TrackerConfig(min_hits=1, max_age=1), [], NAMES, events.append,
                         metrics=EdgeMetrics(), plate_of=plate_of,
                         plate_pending=reading.__contains__)  # fmt: skip
    two = Detections(np.array([[0, 0, 10, 10], [100, 100, 120, 120]], dtype=np.float32),
                     np.array([0.8, 0.8], dtype=np.float32), np.array([2, 2]))  # fmt: skip
    cam.update(two)
    ended = [cam.update(Detections.empty()).ended for _ in range(3)]
    assert events == [] and ended == [[], [], []]  # both lost, both reads still out
    plates[1] = "AB123"
    reading.discard(1)  # track 1's read is in: its event goes, with the plate
    assert [s.track_id for s in cam.update(Detections.empty()).ended] == [1]
    assert [(e.track_id, e.plate) for e in events] == [(1, "AB123")]
    waits = [cam.update(Detections.empty()).ended for _ in range(PLATE_WAIT_FRAMES)]
    released = [(n, s.track_id) for n, ended in enumerate(waits) for s in ended]
    # track 2's read never comes: its event goes anyway, after waiting its bound
    assert len(released) == 1 and released[0][1] == 2 and released[0][0] > PLATE_WAIT_FRAMES - 6
    assert events[-1].plate is None
    cam.update(one((0, 0, 10, 10)))
    reading.add(3)
    assert [s.track_id for s in cam.finish()] == [3]  # the end of the stream waits for nothing
    assert [e.track_id for e in events] == [1, 2, 3]


def test_parse_line() -> None:
    line = parse_line("north:120,140,300,140")
    assert line.name == "north" and line.points == ((120, 140), (300, 140))
    assert line.directions == ("in", "out")
    assert parse_line("n:0,1.5,2,3:toward,away").directions == ("toward", "away")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("north", "expected NAME:x1,y1,x2,y2"),
        ("north:1,2,3", "expected NAME:x1,y1,x2,y2"),
        ("north:a,2,3,4", "coordinates must be numbers"),
        ("north:1,2,1,2", "the two points of a line must differ"),
        ("north:-1,2,3,4", "greater than or equal to 0"),
    ],
)
def test_parse_line_errors_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(text)
