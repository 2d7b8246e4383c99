"""Plate details in the store: the voted plate's confidence, its agreeing reads and the snapshot
names go in and come back through `/api/events`' query; a database made before they existed
gets the columns when opened."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from edge.store.database import EventStore
from edge.store.query import StoreQueries
from edge.store.report import CountLayout
from edge.track.events import VehicleEvent

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
LAYOUT = CountLayout(("car",), {"cam1": {}})

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, kind TEXT NOT NULL,
    time_ms INTEGER NOT NULL, track_id INTEGER NOT NULL, class TEXT NOT NULL, line TEXT,
    direction TEXT, plate TEXT, frame INTEGER);
INSERT INTO events (camera, kind, time_ms, track_id, class, plate)
    VALUES ('cam1', 'track_end', 1796292000000, 1, 'car', 'OLD123');
"""


def test_plate_details_are_stored_and_listed(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = EventStore(db, 900, 30, 10**9)
    store.write([
        VehicleEvent("cam1", 7, "car", "track_end", T0, plate="4XXF538", plate_confidence=0.93,
                     plate_reads=3, snapshot="cam1-7-x.jpg", plate_snapshot="cam1-7-x-plate.jpg"),
        VehicleEvent("cam1", 8, "car", "track_end", T0),
    ])  # fmt: skip
    store.close()
    listed = StoreQueries(db, 900, LAYOUT).events(10)
    by_track = {e["track_id"]: e for e in listed}
    assert {k: by_track[7][k] for k in ("plate", "plate_confidence", "plate_reads", "snapshot",
                                        "plate_snapshot")} == {  # fmt: skip
        "plate": "4XXF538", "plate_confidence": 0.93, "plate_reads": 3,
        "snapshot": "cam1-7-x.jpg", "plate_snapshot": "cam1-7-x-plate.jpg"}  # fmt: skip
    assert by_track[8]["snapshot"] is None and by_track[8]["plate_reads"] is None


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = EventStore(db, 900, 3650, 10**9)
    store.write([VehicleEvent("cam1", 2, "car", "track_end", T0, plate="NEW456", plate_reads=2)])
    store.close()
    listed = {e["plate"]: e for e in StoreQueries(db, 900, LAYOUT).events(10)}
    assert listed["OLD123"]["plate_reads"] is None
    assert listed["NEW456"]["plate_reads"] == 2
