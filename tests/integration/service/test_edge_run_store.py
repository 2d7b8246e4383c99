"""`edge run` keeps its counts: the store's interval counts equal the crossings it emitted, and
after a SIGTERM and a restart they continue (no reset, nothing counted twice); the API serves
them; MQTT gets every event. A real subprocess on a simulated RTSP camera and a real mosquitto."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from edge.ingest.camsim import CameraSimulator
from edge.intervals import interval_start
from edge.testing import ServiceProcess, free_port, wait_for

from .conftest import write_config

LINES = [{"name": "north", "points": [[120, 140], [300, 140]], "directions": ["toward", "away"]}]


def crossings(events_file: Path) -> list[dict[str, Any]]:
    if not events_file.exists():
        return []
    return [e for e in map(json.loads, events_file.read_text().splitlines())
            if e["kind"] == "crossing"]  # fmt: skip


def by_interval(events: list[dict[str, Any]]) -> Counter:
    return Counter(interval_start(e["epoch"], 900) for e in events)


def run_until(config: Path, port: int, log: Path, events_file: Path, n: int) -> None:
    svc = ServiceProcess(config, port, log)
    try:
        svc.wait_ready()
        wait_for(lambda: len(crossings(events_file)) >= n, 120, interval=0.5)
        page = svc.get_json("/api/events?camera=highway&kind=crossing&limit=1000")
        assert len(page["events"]) >= n - 1  # the store keeps up with the JSONL file
    finally:
        assert svc.stop() == 0


def test_counts_survive_a_restart_and_equal_the_emitted_crossings(
    camsim: CameraSimulator, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, [{"id": "highway", "url": camsim.url("highway"),
                                      "lines": LINES}], port)  # fmt: skip
    events_file = tmp_path / "events" / "events.jsonl"
    db = tmp_path / "events" / "edge.db"
    run_until(config, port, tmp_path / "run1.log", events_file, 4)
    first = crossings(events_file)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT sum(n) FROM counts").fetchone()[0] == len(first)
    finally:
        conn.close()
    run_until(config, port, tmp_path / "run2.log", events_file, len(first) + 4)
    both = crossings(events_file)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = dict(conn.execute("SELECT start_s, sum(n) FROM counts GROUP BY start_s"))
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(
            events_file.read_text().splitlines()
        )
    finally:
        conn.close()
    # counts of both runs, per interval, are the crossings of both runs: the interval in progress
    # at the restart went on from its stored count
    assert stored == dict(by_interval(both))
    assert sum(stored.values()) == len(both) > len(first)


NORTH_HAND, WEST_HAND = 22, 21
"""Vehicles counted by hand on the CCTV clip's two lines (tests/integration/track/
test_counting_clips.py, CCTV_HAND and CCTV_WEST_HAND; the detector misses one on each)."""
HAND_LINES = LINES + [{"name": "west", "points": [[100, 40], [100, 150]],
                       "directions": ["toward", "away"]}]  # fmt: skip


def test_api_csv_of_a_recorded_camera_matches_the_hand_counts(
    assets: Path, tmp_path: Path
) -> None:
    """The clip played once as a camera (`realtime: true`, as a live one) through `edge run`:
    once it has ended, /api/counts?format=csv holds the hand counts, and exactly the crossings
    the service emitted."""
    port = free_port()
    clip = assets / "video" / "traffic_highway_cctv.mp4"
    config = write_config(tmp_path, [{"id": "highway", "url": str(clip), "lines": HAND_LINES}],
                          port)  # fmt: skip
    data = yaml.safe_load(config.read_text())
    data["server"]["auth_token"] = "store-token-1"
    config.write_text(yaml.safe_dump(data))
    svc = ServiceProcess(config, port, tmp_path / "edge-run.log")
    try:
        svc.wait_ready()
        auth = "token=store-token-1"
        wait_for(lambda: svc.get_json(f"/api/cameras?{auth}")["cameras"][0]["state"] == "stopped",
                 120, interval=0.5)  # fmt: skip
        assert svc.status("/api/counts") == 401
        wait_for(lambda: len(svc.get_json(f"/api/events?limit=1000&{auth}")["events"])
                 == len(events_lines(tmp_path)), 10)  # fmt: skip
        text = svc.text(f"/api/counts?camera=highway&format=csv&{auth}")
    finally:
        assert svc.stop() == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2 * 96  # the last 24 h of both lines, every interval
    totals = Counter()
    for r in rows:
        totals[r["line"]] += int(r["total"])
    emitted = Counter(e["line"] for e in crossings(tmp_path / "events" / "events.jsonl"))
    assert totals == emitted
    assert abs(totals["north"] - NORTH_HAND) <= 1 and abs(totals["west"] - WEST_HAND) <= 1, totals


def events_lines(tmp: Path) -> list[str]:
    path = tmp / "events" / "events.jsonl"
    return path.read_text().splitlines() if path.exists() else []
