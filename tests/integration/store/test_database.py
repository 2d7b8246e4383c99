"""The SQLite store for real: events and interval counts through the event bus, restarts, a
process killed with SIGKILL while writing, retention and the size cap, bad files."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.intervals import interval_start
from edge.metrics import EdgeMetrics
from edge.store.database import EventStore, StoreError
from edge.store.query import StoreQueries
from edge.store.report import CountLayout
from edge.store.sink import StoreSink
from edge.testing import synthetic_traffic
from edge.track.events import EventBus, VehicleEvent

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
CLASSES = ("car", "motorcycle", "bus", "truck")


def traffic(n: int, every_s: float, start: datetime = T0, camera: str = "cam1",
            first_track: int = 1) -> list[VehicleEvent]:  # fmt: skip
    return synthetic_traffic(n, every_s, start, camera, first_track)

LAYOUT = CountLayout(CLASSES, {"cam1": {"north": ("toward", "away"), "west": ("toward", "away")}})
DAY_S = 86400


async def store_events(path: Path, events: list[VehicleEvent], **cfg: object) -> EdgeMetrics:
    """One run of the service as far as the store sees it: bus + sink, start, emit, stop."""
    metrics = EdgeMetrics()
    bus = EventBus([StoreSink(StoreConfig(path=path, **cfg), metrics)], metrics)
    await bus.start()
    for e in events:
        bus.emit(e)
    await bus.stop()
    return metrics


def hand_tally(events: list[VehicleEvent], interval_s: int = 900) -> Counter:
    return Counter(
        ("cam1", e.line, interval_start(e.time.timestamp(), interval_s), e.class_name,
         e.direction)
        for e in events if e.kind == "crossing"
    )  # fmt: skip


def table(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_counts_per_interval_equal_the_crossings(tmp_path: Path) -> None:
    events = traffic(200, 17.0)  # 57 minutes: four 15-minute intervals
    metrics = await store_events(tmp_path / "edge.db", events)
    assert metrics.registry.get_sample_value("edge_events_emitted_total", {"sink": "store"}) == 400
    q = StoreQueries(tmp_path / "edge.db", 900, LAYOUT)
    start = int(T0.timestamp())
    report = q.counts(start, start + 3600, 900)
    got = {k: n for k, n in report.counts.items() if n}
    assert got == dict(hand_tally(events))
    rows = report.rows()
    assert len(rows) == 2 * 4  # two lines × four intervals, in order
    assert [r["start"] for r in rows[:4]] == [
        "2026-12-03T10:00:00Z", "2026-12-03T10:15:00Z", "2026-12-03T10:30:00Z",
        "2026-12-03T10:45:00Z",
    ]  # fmt: skip
    assert sum(r["total"] for r in rows) == 200
    hourly = q.counts(start, start + 3600, 3600, camera="cam1", line="north").rows()
    assert [r["total"] for r in hourly] == [100]


async def test_restart_continues_the_current_interval(tmp_path: Path) -> None:
    """Counts of a run stopped in the middle of an interval and started again equal those of
    one uninterrupted run: the interval continues from the stored count, nothing counted twice."""
    events = traffic(120, 13.0)
    cut = next(i for i, e in enumerate(events) if e.time >= T0 + timedelta(minutes=22))
    await store_events(tmp_path / "restarted.db", events[:cut])
    await store_events(tmp_path / "restarted.db", events[cut:])
    await store_events(tmp_path / "once.db", events)
    counts = "SELECT * FROM counts ORDER BY 1, 2, 3, 4, 5"
    assert table(tmp_path / "restarted.db", counts) == table(tmp_path / "once.db", counts)
    rows = "SELECT camera, kind, time_ms, track_id, class, line, direction, plate FROM events"
    assert table(tmp_path / "restarted.db", rows) == table(tmp_path / "once.db", rows)
    assert sum(n for *_, n in table(tmp_path / "once.db", counts)) == 120


def test_sigkill_while_writing_loses_at_most_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    child = Path(__file__).with_name("writer_child.py")
    proc = subprocess.Popen([sys.executable, str(child), str(path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    handed: list[tuple[int, float]] = []
    assert proc.stdout is not None
    try:
        while len(handed) < 1500:  # a few seconds of events, written in many transactions
            line = proc.stdout.readline()
            assert line, "writer exited early"
            seq, epoch = line.split()
            handed.append((int(seq), float(epoch)))
    finally:
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert table(path, "PRAGMA integrity_check") == [("ok",)]
    stored = {f for (f,) in table(path, "SELECT frame FROM events")}
    must_have = {seq for seq, epoch in handed if epoch < killed_at - 1.0}
    assert len(must_have) > 500
    assert must_have <= stored, sorted(must_have - stored)[:10]
    # the counts always agree with the events, even for the transaction the kill interrupted
    crossings = table(path, "SELECT count(*) FROM events WHERE kind = 'crossing'")[0][0]
    assert table(path, "SELECT sum(n) FROM counts")[0][0] == crossings
    # and the killed database opens for writing again
    store = EventStore(path, 900, 90, 2 * 1024**3)
    store.close()


async def test_retention_deletes_old_events_and_counts(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = traffic(10, 60.0, start=now - timedelta(days=3))
    recent = traffic(10, 60.0, start=now - timedelta(hours=2), first_track=100)
    path = tmp_path / "edge.db"
    await store_events(path, old + recent, retention_days=30)
    assert table(path, "SELECT count(*) FROM events")[0][0] == 40
    metrics = await store_events(path, [], retention_days=2)  # enforced when the store opens
    kept = table(path, "SELECT DISTINCT track_id FROM events ORDER BY 1")
    assert kept == [(t,) for t in range(100, 110)]
    assert table(path, "SELECT sum(n) FROM counts")[0][0] == 10
    deleted = metrics.registry.get_sample_value(
        "edge_store_events_deleted_total", {"reason": "retention"}
    )
    assert deleted == 20


def test_size_cap_deletes_the_oldest_events_and_keeps_counts(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    cap = 1024**2
    store = EventStore(path, 900, 36500, cap)
    start = datetime.now(UTC) - timedelta(days=1)
    events = traffic(6000, 10.0, start=start)  # 12 000 events, well over 1 MiB with indexes
    for i in range(0, len(events), 500):
        store.write(events[i : i + 500])
    assert store.used_bytes() > cap
    pruned = store.maintain()
    assert pruned.size_cap > 0 and pruned.retention == 0
    assert store.used_bytes() <= cap
    remaining = table(path, "SELECT min(track_id), max(track_id), count(*) FROM events")[0]
    assert remaining[1] == 6000  # the newest are kept, the oldest went
    assert remaining[0] > 1 and remaining[2] == 12000 - pruned.size_cap
    assert table(path, "SELECT sum(n) FROM counts")[0][0] == 6000  # counts all kept
    store.close()
    size = path.stat().st_size
    assert size < 3 * cap  # the freed pages went back to the file system


def test_a_database_keeps_its_interval(tmp_path: Path) -> None:
    EventStore(tmp_path / "edge.db", 900, 90, 1024**3).close()
    with pytest.raises(StoreError) as err:
        EventStore(tmp_path / "edge.db", 600, 90, 1024**3)
    assert str(err.value).startswith("store.interval_minutes: 10, but")
    assert "15-minute" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("what", ["junk", "directory"])
def test_a_file_that_is_no_database_is_one_line(tmp_path: Path, what: str) -> None:
    path = tmp_path / "edge.db"
    if what == "junk":
        path.write_bytes(b"this is not a database, just some text\n" * 100)
    else:
        path.mkdir()
    with pytest.raises(StoreError) as err:
        EventStore(path, 900, 90, 1024**3)
    assert str(err.value).startswith(f"store.path: {path}: ")
    assert "\n" not in str(err.value)


async def test_events_pages_newest_first_with_filters(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    events = traffic(50, 30.0) + traffic(20, 45.0, camera="cam2", first_track=500)
    await store_events(path, events)
    q = StoreQueries(path, 900, LAYOUT)
    seen: list[dict] = []
    before = None
    while page := q.events(7, before=before):
        seen += page
        before = (round(page[-1]["epoch"] * 1000), page[-1]["id"])
    assert len(seen) == 140 and len({e["id"] for e in seen}) == 140
    assert [e["epoch"] for e in seen] == sorted((e["epoch"] for e in seen), reverse=True)
    cam2 = q.events(1000, camera="cam2", kind="crossing")
    assert len(cam2) == 20 and {e["camera"] for e in cam2} == {"cam2"}
    since = int((T0 + timedelta(minutes=10)).timestamp() * 1000)
    until = int((T0 + timedelta(minutes=20)).timestamp() * 1000)
    window = q.events(1000, camera="cam1", since_ms=since, until_ms=until)
    assert window and all(since <= e["epoch"] * 1000 < until for e in window)
    expected = [e for e in events if e.camera == "cam1"
                and since <= e.time.timestamp() * 1000 < until]  # fmt: skip
    assert len(window) == len(expected)
    plates = {e["plate"] for e in q.events(1000, kind="track_end") if e["plate"]}
    assert "AB001CD" in plates
    assert q.cameras() == {"cam1": ["north", "west"], "cam2": ["north", "west"]}




async def test_current_counts_seed_the_interval_in_progress(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    start = interval_start(now.timestamp(), 900)
    events = traffic(10, 1.0, start=datetime.fromtimestamp(start + 1, UTC))
    events += traffic(4, 1.0, start=datetime.fromtimestamp(start - 600, UTC), first_track=50)
    await store_events(tmp_path / "edge.db", events)
    current = StoreQueries(tmp_path / "edge.db", 900, LAYOUT).current_counts(start + 30)
    assert current == {
        ("cam1", "west"): (start, {"car": {"toward": 2}, "bus": {"toward": 2},
                                   "motorcycle": {"toward": 1}}),
        ("cam1", "north"): (start, {"motorcycle": {"away": 2}, "car": {"away": 2},
                                    "bus": {"away": 1}}),
    }  # fmt: skip
