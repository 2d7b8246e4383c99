"""The SQLite database of vehicle events and interval counts, and how it stays bounded.

One `EventStore` is used by one thread at a time (the store sink's writer thread). Each batch of
events is one transaction that inserts the events *and* adds the crossings to their interval
counts, so the counts can never disagree with the events, whatever moment the process dies in:
after a restart the current interval simply continues from the stored count (no reset, and no
double count, since nothing is ever re-added from memory). WAL with `synchronous=NORMAL`: a
committed batch survives the process being killed (it is in the WAL, which the next open
replays); only a power cut can take the last commits, and it never corrupts the file.

Bounds: events and counts older than `retention_days` are deleted; beyond `max_bytes` of used
pages the oldest events are deleted (counts, a few rows per interval, are kept) and the freed
pages handed back to the file system (`auto_vacuum=INCREMENTAL`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from edge.intervals import interval_start

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    class TEXT NOT NULL,
    line TEXT,
    direction TEXT,
    plate TEXT,
    frame INTEGER,
    plate_confidence REAL,
    plate_reads INTEGER,
    snapshot TEXT,
    plate_snapshot TEXT
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time_ms, id);
CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera, time_ms, id);
CREATE TABLE IF NOT EXISTS counts (
    camera TEXT NOT NULL,
    line TEXT NOT NULL,
    start_s INTEGER NOT NULL,
    class TEXT NOT NULL,
    direction TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (camera, line, start_s, class, direction)
) WITHOUT ROWID;
"""
_INSERT_EVENT = (
    "INSERT INTO events (camera, kind, time_ms, track_id, class, line, direction, plate, frame, "
    "plate_confidence, plate_reads, snapshot, plate_snapshot) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ADDED_COLUMNS = {
    "plate_confidence": "REAL", "plate_reads": "INTEGER", "snapshot": "TEXT",
    "plate_snapshot": "TEXT",
}  # fmt: skip
"""Columns added after the first release: a database made before gets them at open."""
_ADD_COUNT = (
    "INSERT INTO counts (camera, line, start_s, class, direction, n) VALUES (?, ?, ?, ?, ?, 1) "
    "ON CONFLICT DO UPDATE SET n = n + 1"
)
BUSY_TIMEOUT_S = 10.0
"""How long a statement waits for another connection's lock (a reader never blocks the writer in
WAL mode; this covers a second writer such as `edge analyze` on the same file)."""


class StoreError(RuntimeError):
    """The database cannot be used (not a database, another interval, unwritable); one line."""


class StoredEvent(Protocol):
    """What the store reads from an event: `edge.track.events.VehicleEvent` has this shape."""

    @property
    def camera(self) -> str: ...
    @property
    def track_id(self) -> int: ...
    @property
    def class_name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def line(self) -> str | None: ...
    @property
    def direction(self) -> str | None: ...
    @property
    def plate(self) -> str | None: ...
    @property
    def frame(self) -> int | None: ...
    @property
    def plate_confidence(self) -> float | None: ...
    @property
    def plate_reads(self) -> int | None: ...
    @property
    def snapshot(self) -> str | None: ...
    @property
    def plate_snapshot(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows one `maintain` call deleted, by reason."""

    retention: int = 0
    size_cap: int = 0


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the store's settings; `readonly` ones never write or create the file."""
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S, check_same_thread=False)  # fmt: skip
    else:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    return conn


def epoch_ms(when: datetime) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return round(aware.timestamp() * 1000)


class EventStore:
    """Writes events and interval counts; `maintain` enforces retention and the size cap."""

    def __init__(
        self, path: Path, interval_s: int, retention_days: float, max_bytes: int
    ) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.retention_s = retention_days * 86400.0
        self.max_bytes = max_bytes
        self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        where = f"store.path: {self.path}"
        if self.path.is_dir():
            raise StoreError(f"{where}: is a directory, not a database file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{where}: cannot open as a SQLite database ({exc})") from None
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"{where}: the file system does not allow SQLite's WAL mode")
        self._check_meta(conn)
        return conn

    def _check_meta(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        stored = int(meta.get("interval_s", self.interval_s))
        if stored != self.interval_s:
            conn.close()
            raise StoreError(
                f"store.interval_minutes: {self.interval_s // 60}, but {self.path} holds "
                f"{stored // 60}-minute counts; use that interval or another store.path"
            )
        if "interval_s" not in meta:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("interval_s", str(self.interval_s)), ("schema", str(SCHEMA_VERSION))],
                )

    def write(self, events: Sequence[StoredEvent]) -> None:
        """Insert `events` and add their crossings to the interval counts, in one transaction."""
        rows = []
        counts = []
        for e in events:
            ms = epoch_ms(e.time)
            rows.append((e.camera, e.kind, ms, e.track_id, e.class_name, e.line, e.direction,
                         e.plate, e.frame, e.plate_confidence, e.plate_reads, e.snapshot,
                         e.plate_snapshot))  # fmt: skip
            if e.kind == "crossing" and e.line is not None and e.direction is not None:
                start = interval_start(ms / 1000.0, self.interval_s)
                counts.append((e.camera, e.line, start, e.class_name, e.direction))
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT_EVENT, rows)
            conn.executemany(_ADD_COUNT, counts)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def used_bytes(self) -> int:
        """Bytes of pages in use (the file may be larger: free pages are reused first)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def file_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def maintain(self, now_s: float | None = None) -> Pruned:
        """Delete what is past retention, then the oldest events while over the size cap."""
        now_s = time.time() if now_s is None else now_s
        cutoff = now_s - self.retention_s
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        retention = conn.execute(
            "DELETE FROM events WHERE time_ms < ?", (int(cutoff * 1000),)
        ).rowcount
        conn.execute("DELETE FROM counts WHERE start_s + ? <= ?", (self.interval_s, cutoff))
        conn.execute("COMMIT")
        size_cap = 0
        while self.used_bytes() > self.max_bytes:
            total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            if total == 0:
                break
            chunk = max(100, total // 20)
            conn.execute("BEGIN IMMEDIATE")
            size_cap += conn.execute(
                "DELETE FROM events WHERE id IN "
                "(SELECT id FROM events ORDER BY time_ms, id LIMIT ?)", (chunk,)
            ).rowcount  # fmt: skip
            conn.execute("COMMIT")
        if retention or size_cap:
            conn.execute("PRAGMA incremental_vacuum")
            log.info("store %s: deleted %d events past retention, %d over the size cap",
                     self.path, retention, size_cap)  # fmt: skip
        return Pruned(retention, size_cap)

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            log.warning("store %s: optimize at close failed: %s", self.path, exc)
        self.conn.close()
