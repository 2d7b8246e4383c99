"""Annotation draws where the objects are, at output resolution, and nowhere it should not."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import LineConfig
from edge.publish.annotate import (
    LineOverlay,
    Overlay,
    annotate,
    class_colour,
    draw_detections,
    line_overlays,
    output_size,
)
from edge.types import Detections

NAMES = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]


def _dets(
    boxes: list[list[float]], classes: list[int], tracks: list[int] | None = None
) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(n, 4),
        score=np.full(n, 0.9, dtype=np.float32),
        class_id=np.array(classes, dtype=np.int64),
        track_id=None if tracks is None else np.array(tracks, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("src", "cap", "expected"),
    [
        ((1920, 1080), 1280, (1280, 720)),
        ((320, 240), 1280, (320, 240)),  # never upscaled
        ((768, 432), 640, (640, 360)),
        ((961, 541), 2000, (960, 540)),  # even for 4:2:0
        ((1000, 333), 500, (500, 166)),
    ],
)
def test_output_size(src: tuple[int, int], cap: int, expected: tuple[int, int]) -> None:
    assert output_size(*src, cap) == expected


def test_output_size_rejects_empty() -> None:
    with pytest.raises(ValueError):
        output_size(0, 10, 100)


def test_box_drawn_at_scaled_position_in_class_colour() -> None:
    canvas = np.zeros((360, 640, 3), np.uint8)  # output is half the 1280×720 source
    dets = _dets([[400, 300, 800, 600]], [2])
    draw_detections(canvas, dets, NAMES, (0.5, 0.5))
    # the box edges land at x 200..400, y 150..300 on the canvas, in the class colour
    assert tuple(canvas[225, 200]) == class_colour("car")
    assert tuple(canvas[300, 300]) == class_colour("car")
    assert tuple(canvas[299, 400]) == class_colour("car")
    # inside the box and far away stays untouched
    assert canvas[200:290, 210:390].sum() == 0
    assert canvas[320:, 450:].sum() == 0


def test_classes_get_different_colours_and_unknown_ids_do_not_crash() -> None:
    canvas = np.zeros((200, 400, 3), np.uint8)
    dets = _dets([[10, 60, 100, 150], [200, 60, 300, 150], [320, 60, 390, 150]], [2, 5, 77])
    draw_detections(canvas, dets, NAMES, (1.0, 1.0))
    assert tuple(canvas[100, 10]) == class_colour("car")
    assert tuple(canvas[100, 200]) == class_colour("truck")
    assert class_colour("car") != class_colour("truck")
    assert canvas[100, 320].any()  # class 77 has no name: drawn with its id


def test_label_shows_track_and_plate() -> None:
    plain = np.zeros((240, 320, 3), np.uint8)
    with_plate = np.zeros((240, 320, 3), np.uint8)
    dets = _dets([[20, 120, 120, 200]], [2], tracks=[7])
    draw_detections(plain, dets, NAMES, (1.0, 1.0))
    draw_detections(with_plate, dets, NAMES, (1.0, 1.0), plates={7: "AB123CD"})
    label_rows = slice(100, 119)  # the label sits on the box's top edge (y 120)

    def right_end(img: np.ndarray) -> int:
        return int(np.nonzero(img[label_rows].any(axis=(0, 2)))[0].max())

    # the plate text makes the label reach further right than "#7 car" alone
    assert right_end(with_plate) > right_end(plain) + 20
    assert with_plate[label_rows, 20:40].any()


def test_empty_detections_draw_only_header() -> None:
    canvas = np.zeros((240, 320, 3), np.uint8)
    overlay = Overlay(camera_name="gate", fps=12.5, clock=0.0)
    annotate(canvas, Detections.empty(), overlay, (320, 240))
    assert canvas[:30].any()  # header bar
    assert not canvas[60:].any()


def test_lines_drawn_with_counts() -> None:
    lines = [LineConfig(name="north", points=((0, 100), (320, 100)), directions=("in", "out"))]
    counts = {"north": {"car": {"in": 3, "out": 1}, "truck": {"in": 2}}}
    overlays = line_overlays(lines, counts)
    assert overlays == (LineOverlay("north", (0, 100), (320, 100), {"in": 5, "out": 1}),)
    canvas = np.zeros((240, 320, 3), np.uint8)
    annotate(canvas, Detections.empty(), Overlay("gate", lines=overlays, clock=0.0), (320, 240))
    assert canvas[100, 160].any()  # the segment itself
    assert canvas[110:130, 0:100].any()  # its label below it


def test_annotate_scales_source_coordinates_to_canvas() -> None:
    small = np.zeros((120, 160, 3), np.uint8)
    dets = _dets([[100, 100, 200, 180]], [2])
    annotate(small, dets, Overlay("x", class_names=NAMES, clock=0.0), (320, 240))
    assert tuple(small[70, 50]) == class_colour("car")  # x 100→50, y 140→70
