"""Tracking and counting on real footage with the real detector, against hand counts.

The hand counts were made by looking at the frames: every 5th frame (CCTV, 25 fps) or every 3rd
(overpass, 29.97 fps) was extracted with PyAV, cropped around the line with the line drawn in,
and read tile by tile. The frame given is where the bottom edge of the vehicle's body reaches the
line, by eye, interpolated between tiles, so it is good to a few frames; the tracker's box bottom
(Kalman-smoothed, a shadow sometimes included) crosses a few frames later. A crossing found by
the pipeline matches a hand entry when it is within `SLACK` frames of it.

Detector: yolox-nano at its defaults (conf 0.25, 416 px, `letterbox: auto`, which is rect for this
model), the shipped model. The measurements quoted below are with rect, and square where it differs.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.assets import asset
from edge.config import DetectorConfig, LineConfig, TrackerConfig
from edge.infer.detector import Detector
from edge.ingest.video_file import read_frames
from edge.metrics import EdgeMetrics
from edge.track.lines import LineCounter
from edge.track.sort import SortTracker, iou_matrix
from edge.types import Detections

SLACK = 8
COCO_NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]

# traffic_highway_cctv.mp4 (320×240, 25 fps, 748 frames). Line across the right-hand carriageway
# (traffic there drives away from the camera, up the image) at y=140, from the median's edge
# (x=120) to the shoulder (x=300); the left carriageway at that height lies at x<100, outside the
# segment. Direction names: ("toward", "away"): moving up is right→left of p1→p2, i.e. "away".
CCTV_LINE = LineConfig(name="north", points=((120, 140), (300, 140)), directions=("toward", "away"))
CCTV_HAND = [  # (frame, direction, vehicle)
    (37, "away", "light grey hatchback, centre lane"),
    (80, "away", "dark teal MPV, right lane"),
    (89, "away", "black saloon, left lane"),
    (116, "away", "dark SUV with spare wheel"),
    (172, "away", "white hatchback, left lane"),
    (197, "away", "silver saloon, right lane"),
    (272, "away", "blue hatchback"),
    (312, "away", "silver hatchback"),
    (362, "away", "silver saloon, left lane"),
    (399, "away", "red hatchback"),
    (430, "away", "white van (Kangoo-like), left lane"),
    (467, "away", "dark teal saloon, left lane"),
    (478, "away", "small silver car, left lane"),
    (480, "away", "white box lorry, right lane (yolox-nano barely detects it)"),
    (502, "away", "grey car, left lane"),
    (526, "away", "silver car, left lane"),
    (532, "away", "white car with yellow logo, centre"),
    (550, "away", "red hatchback"),
    (570, "away", "silver hatchback"),
    (662, "away", "silver estate, left lane"),
    (693, "away", "black SUV"),
    (720, "away", "white van"),
]
# Not counted by hand: a cyclist on the right shoulder crossing around frame 215 (not a vehicle
# class); the vehicles already above the line at frame 0.

# Same clip, left-hand carriageway (traffic comes toward the camera, moving left and down): a
# vertical segment at x=100 from y=40 to y=150 (below 150 lies the median, then the right-hand
# carriageway, whose vehicles must not count here). Moving left is left→right of p1→p2 (p2
# below p1), i.e. "toward". Hand count read on crops x 20-180, y 30-160, every 5th frame.
# (A first try at x=60 was dropped: from frame 505 a burned-in "PEDESTRIAN ALARM" overlay at
# x 5-85, y 65-90 is detected as a static bus and swallows the vehicles that pass under it.)
CCTV_WEST = LineConfig(name="west", points=((100, 40), (100, 150)), directions=("toward", "away"))
CCTV_WEST_HAND = [
    (43, "toward", "white minibus"),
    (74, "toward", "silver hatchback"),
    (98, "toward", "dark teal van"),
    (174, "toward", "white van"),
    (218, "toward", "dark saloon"),
    (245, "toward", "big white van"),
    (258, "toward", "smaller white van behind it"),
    (284, "toward", "white car, lower lane"),
    (286, "toward", "white car, upper lane"),
    (313, "toward", "grey car, upper lane"),
    (319, "toward", "dark saloon, lower lane"),
    (346, "toward", "white pickup"),
    (378, "toward", "white hatchback"),
    (459, "toward", "white hatchback"),
    (477, "toward", "dark saloon"),
    (592, "toward", "white car"),
    (640, "toward", "white car"),
    (689, "toward", "grey car"),
    (708, "toward", "dark teal van, upper lane (beside the next one)"),
    (708, "toward", "dark saloon, lower lane"),
    (740, "toward", "white car"),
]

# traffic_highway_overpass.mp4 (960×540, 29.97 fps, 335 frames): motorway from an overpass,
# traffic comes toward the camera (down the image). Line at y=300 from x=150 to x=820 spans the
# carriageway (the opposite carriageway, top right, never reaches that height inside the segment).
OVERPASS_LINE = "south:150,300,820,300:toward,away"
OVERPASS_HAND = [
    (54, "toward", "dark saloon, left of pair"),
    (55, "toward", "white saloon, right of pair"),
    (91, "toward", "dark saloon"),
    (125, "toward", "red hatchback, right"),
    (127, "toward", "dark saloon, left"),
    (231, "toward", "green estate"),
    (240, "toward", "dark car, right lane"),
    (248, "toward", "red hatchback"),
    (276, "toward", "dark small car, left lanes"),
    (297, "toward", "white SUV (detections drop out while it crosses)"),
    (309, "toward", "dark saloon, far left lane"),
]


def match(found: list[tuple[int, str]], hand: list[tuple[int, str, str]]) -> tuple[int, int]:
    """Greedy in time: (hand entries matched, found crossings left unmatched).

    Each hand entry is used once, so a vehicle counted twice leaves one crossing unmatched.
    """
    free = list(hand)
    unmatched = 0
    for frame, direction in sorted(found):
        near = [h for h in free if h[1] == direction and abs(h[0] - frame) <= SLACK]
        if near:
            free.remove(min(near, key=lambda h: abs(h[0] - frame)))
        else:
            unmatched += 1
    return len(hand) - len(free), unmatched


@pytest.fixture(scope="session")
def cctv_detections() -> list[Detections]:
    detector = Detector(DetectorConfig(), EdgeMetrics())
    assert detector.class_names[: len(COCO_NAMES)] == COCO_NAMES
    frames = read_frames(str(asset("video", "traffic_highway_cctv.mp4")), "cctv")
    return [detector.detect([f])[0] for f in frames]


def track_clip(dets: list[Detections]) -> list[Detections]:
    tracker = SortTracker(TrackerConfig())
    return [tracker.update(d) for d in dets]


def id_switches(tracks: list[Detections], gap: int = 10) -> int:
    """ID switches without ground truth, two kinds:

    - a box that overlaps (IoU ≥ 0.5) the previous frame's box of another id, that id being
      gone now: the identity jumped from one track to another;
    - a new id whose first box overlaps (IoU ≥ 0.3) the last box of an id that vanished at most
      `gap` frames ago: the same vehicle was lost and re-found under a new id.
    """
    switches = 0
    last: dict[int, tuple[int, np.ndarray]] = {}
    prev = Detections(track_id=np.zeros(0, dtype=np.int64))
    for i, cur in enumerate(tracks):
        ids = set(cur.track_id.tolist())
        iou = iou_matrix(cur.xyxy, prev.xyxy)
        for k, tid in enumerate(cur.track_id.tolist()):
            if iou.shape[1]:
                j = int(np.argmax(iou[k]))
                old = int(prev.track_id[j])
                if iou[k, j] >= 0.5 and old != tid and old not in ids:
                    switches += 1
                    continue
            if tid not in last:
                for old, (seen, box) in last.items():
                    overlap = iou_matrix(cur.xyxy[k : k + 1], box[None])[0, 0]
                    if old not in ids and i - seen <= gap and overlap >= 0.3:
                        switches += 1
                        break
        for k, tid in enumerate(cur.track_id.tolist()):
            last[tid] = (i, cur.xyxy[k])
        prev = cur
    return switches


def test_cctv_id_switches_are_rare(cctv_detections: list[Detections], record_property) -> None:
    """Measured 0.034 per 100 track-frames (2 in 5 929; with the square letterbox 0.067, 4 in
    5 945). Ablations on the square detections: the published single-stage association 0.42,
    without cross-class duplicate suppression 0.84, neither 1.62. The bound 0.25 leaves room (up
    to 14 switches) for detector numerics on other CPUs or ORT versions, and still fails if either
    of the two measures regresses."""
    tracks = track_clip(cctv_detections)
    track_frames = sum(len(t) for t in tracks)
    switches = id_switches(tracks)
    rate = 100 * switches / track_frames
    record_property("id_switches_per_100_track_frames", round(rate, 3))
    print(f"cctv: {switches} ID switches in {track_frames} track-frames = {rate:.2f}/100")
    assert track_frames > 4000  # ~8 vehicles per frame are tracked, not just a few
    assert rate < 0.25


@pytest.mark.parametrize(
    ("line", "hand"), [(CCTV_LINE, CCTV_HAND), (CCTV_WEST, CCTV_WEST_HAND)], ids=["north", "west"]
)
def test_cctv_line_counts_match_hand_counts(
    cctv_detections: list[Detections], line: LineConfig, hand: list[tuple[int, str, str]]
) -> None:
    """Measured: north 21 (22 by hand; the box lorry at 480 is the one yolox-nano does not
    see), west 20 (21 by hand; the teal van at 708 is merged with the car beside it)."""
    counter = LineCounter([line])
    crossings = []
    for i, tracks in enumerate(track_clip(cctv_detections)):
        crossings += [(i, c) for c in counter.update(tracks, COCO_NAMES)]
    found = [(i, c.direction) for i, c in crossings]
    print(f"cctv {line.name} crossings:", [(i, c.track_id, c.class_name) for i, c in crossings])
    assert abs(len(found) - len(hand)) <= 1, found
    matched, extra = match(found, hand)
    # every crossing found is a hand-counted vehicle: none counted twice, nothing invented
    assert extra == 0 and matched >= len(hand) - 1, (matched, extra)
    assert counter.total(line.name) == len(crossings)
    assert {d for per_class in counter.counts[line.name].values() for d in per_class} == {
        hand[0][1]
    }


@pytest.fixture(scope="session")
def overpass_analysis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out clip through the real command line, as a user runs it."""
    out = tmp_path_factory.mktemp("analyze")
    clip = asset("video", "traffic_highway_overpass.mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "analyze", str(clip), "--line", OVERPASS_LINE,
         "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_overpass_counts_match_hand_count(overpass_analysis: Path) -> None:
    events = [json.loads(x) for x in (overpass_analysis / "events.jsonl").read_text().splitlines()]
    crossings = [e for e in events if e["kind"] == "crossing"]
    found = [(e["frame"], e["direction"]) for e in crossings]
    assert abs(len(found) - len(OVERPASS_HAND)) <= 1, found
    matched, extra = match(found, OVERPASS_HAND)
    # no vehicle counted twice (an extra crossing would match no hand entry). Measured 10 of 11
    # (square letterbox: 11): the dark saloon at 91 drops below conf 0.25 for frames 90-97; square
    # keeps one 0.267 box at 95 that holds its track, rect scores it under 0.25 and loses it.
    assert extra == 0 and matched >= len(OVERPASS_HAND) - 1, (matched, extra)
    assert len({e["track_id"] for e in crossings}) == len(crossings)
    summary = json.loads((overpass_analysis / "summary.json").read_text())
    assert summary["totals"] == {"south": len(crossings)}
    assert sum(n for d in summary["counts"]["south"].values() for n in d.values()) == len(found)
    assert set(summary["counts"]["south"]) <= {"car", "truck", "bus", "motorcycle"}


def test_analyze_outputs_are_consistent(overpass_analysis: Path) -> None:
    summary = json.loads((overpass_analysis / "summary.json").read_text())
    frames = [json.loads(x) for x in (overpass_analysis / "frames.jsonl").read_text().splitlines()]
    events = [json.loads(x) for x in (overpass_analysis / "events.jsonl").read_text().splitlines()]
    assert summary["frames"] == len(frames) == 335
    assert [f["frame"] for f in frames] == list(range(335))
    assert frames[-1]["pts"] == pytest.approx(334 / 29.97, abs=0.01)
    ids = {d["track_id"] for f in frames for d in f["detections"] if d["track_id"] is not None}
    assert ids == set(range(1, summary["confirmed_tracks"] + 1))
    ends = [e for e in events if e["kind"] == "track_end"]
    assert sorted(e["track_id"] for e in ends) == sorted(ids)  # every confirmed track ends once
    for f in frames:
        tids = [d["track_id"] for d in f["detections"] if d["track_id"] is not None]
        assert len(tids) == len(set(tids)), f  # one detection per track and frame
        for d in f["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= 960 and 0 <= y1 < y2 <= 540
    for e in events:
        assert e["camera"] == "file" and e["time"].endswith("Z") and e["plate"] is None


def csv_totals(study: Path) -> dict[str, int]:
    """Vehicles per line over every interval of the study's counts.csv."""
    totals: dict[str, int] = {}
    with open(study / "counts.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            totals[row["line"]] = totals.get(row["line"], 0) + int(row["total"])
    return totals


def test_overpass_csv_interval_totals_equal_the_counted_crossings(overpass_analysis: Path) -> None:
    """The study's database and CSV hold what the events say: the hand-counted 11 (10 found)."""
    events = [json.loads(x) for x in (overpass_analysis / "events.jsonl").read_text().splitlines()]
    crossings = [e for e in events if e["kind"] == "crossing"]
    totals = csv_totals(overpass_analysis)
    assert totals == {"south": len(crossings)}
    assert abs(totals["south"] - len(OVERPASS_HAND)) <= 1
    conn = sqlite3.connect(overpass_analysis / "edge.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)
    finally:
        conn.close()


def test_cctv_csv_through_edge_analyze_matches_hand_counts(tmp_path: Path) -> None:
    """Both hand-counted lines of the CCTV clip through `edge analyze`: the CSV's interval totals
    are the hand counts less the one vehicle each the detector misses (measured 21 and 20)."""
    clip = asset("video", "traffic_highway_cctv.mp4")
    north = "north:120,140,300,140:toward,away"
    west = "west:100,40,100,150:toward,away"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "analyze", str(clip), "--line", north, "--line", west,
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    totals = csv_totals(tmp_path)
    assert abs(totals["north"] - len(CCTV_HAND)) <= 1, totals
    assert abs(totals["west"] - len(CCTV_WEST_HAND)) <= 1, totals
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert totals == summary["totals"]
    header = (tmp_path / "counts.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["camera", "line", "interval_start", "interval_end"]
    assert header[-1] == "total" and "car_away" in header and "truck_toward" in header
