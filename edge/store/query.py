"""Read-only queries on the store for the web API, the page and studies.

Each query opens its own read-only connection (cheap, and WAL lets readers run beside the writer
without blocking it), so a thread pool may run many at once. Parameters arrive parsed and
checked by the caller (edge/publish/data_api.py); this module only knows SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.intervals import interval_start, iso_utc
from edge.store.database import connect
from edge.store.report import CountLayout, CountsReport

_EVENT_COLUMNS = (
    "id, camera, kind, time_ms, track_id, class, line, direction, plate, frame, "
    "plate_confidence, plate_reads, snapshot, plate_snapshot"
)


class StoreQueries:
    """Counts and events of one database; `layout` names the columns a report always has."""

    def __init__(self, path: Path, interval_s: int, layout: CountLayout) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.layout = layout

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, readonly=True)

    def cameras(self) -> dict[str, list[str]]:
        """Camera → its lines: the configured ones and any the database holds counts of."""
        out = {cam: list(lines) for cam, lines in self.layout.lines.items()}
        conn = self._connect()
        try:
            for cam, line in conn.execute("SELECT DISTINCT camera, line FROM counts"):
                lines = out.setdefault(cam, [])
                if line not in lines:
                    lines.append(line)
        finally:
            conn.close()
        return out

    def counts(
        self,
        start_s: int,
        end_s: int,
        interval_s: int,
        camera: str | None = None,
        line: str | None = None,
    ) -> CountsReport:
        """Counts of `[start_s, end_s)` (multiples of `interval_s`, itself a multiple of the
        stored interval) per bin, camera, line, class and direction."""
        sql = (
            "SELECT camera, line, (start_s / :bin) * :bin AS bin, class, direction, sum(n) "
            "FROM counts WHERE start_s >= :start AND start_s < :end"
        )
        args: dict[str, Any] = {"bin": interval_s, "start": start_s, "end": end_s}
        if camera is not None:
            sql += " AND camera = :camera"
            args["camera"] = camera
        if line is not None:
            sql += " AND line = :line"
            args["line"] = line
        sql += " GROUP BY camera, line, bin, class, direction"
        conn = self._connect()
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.close()
        return CountsReport.build(self.layout, rows, start_s, end_s, interval_s, camera, line)

    def current_counts(
        self, now_s: float | None = None
    ) -> dict[tuple[str, str], tuple[int, dict[str, dict[str, int]]]]:
        """(camera, line) → (start, class → direction → n) of the interval in progress, for
        sinks that publish it (the MQTT sink) to continue after a restart."""
        start = interval_start(time.time() if now_s is None else now_s, self.interval_s)
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT camera, line, class, direction, n FROM counts WHERE start_s = ?", (start,)
            ).fetchall()
        finally:
            conn.close()
        out: dict[tuple[str, str], tuple[int, dict[str, dict[str, int]]]] = {}
        for camera, line, cls, direction, n in rows:
            per_class = out.setdefault((camera, line), (start, {}))[1]
            per_class.setdefault(cls, {})[direction] = n
        return out

    def events(
        self,
        limit: int,
        camera: str | None = None,
        kind: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        before: tuple[int, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first: events with `since_ms <= time < until_ms`, strictly older than `before`
        = (time_ms, id) of the last event of the previous page (keyset pagination, so pages
        stay right while events keep arriving)."""
        where: list[str] = []
        args: list[Any] = []
        for clause, value in (("camera = ?", camera), ("kind = ?", kind),
                              ("time_ms >= ?", since_ms), ("time_ms < ?", until_ms)):  # fmt: skip
            if value is not None:
                where.append(clause)
                args.append(value)
        if before is not None:
            where.append("(time_ms, id) < (?, ?)")
            args += list(before)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ms DESC, id DESC LIMIT ?"
        conn = self._connect()
        try:
            rows = conn.execute(sql, [*args, limit]).fetchall()
        finally:
            conn.close()
        return [event_json(row) for row in rows]


def event_json(row: Sequence[Any]) -> dict[str, Any]:
    """An events row as the API shows it (the JSONL event's fields, plus the row `id`)."""
    ident, camera, kind, time_ms, track_id, cls, line, direction, plate, frame = row[:10]
    plate_confidence, plate_reads, snapshot, plate_snapshot = row[10:14]
    return {
        "id": ident, "camera": camera, "track_id": track_id, "class": cls, "kind": kind,
        "line": line, "direction": direction, "time": iso_utc(time_ms / 1000.0),
        "epoch": time_ms / 1000.0, "plate": plate, "frame": frame,
        "plate_confidence": plate_confidence, "plate_reads": plate_reads, "snapshot": snapshot,
        "plate_snapshot": plate_snapshot,
    }  # fmt: skip


def layout_of(classes: Sequence[str], cameras: Mapping[str, Mapping[str, tuple[str, str]]]
              ) -> CountLayout:  # fmt: skip
    return CountLayout(tuple(classes), {c: dict(lines) for c, lines in cameras.items()})


def queries_for(path: Path, interval_minutes: int, classes: Sequence[str],
                cameras: Mapping[str, Mapping[str, tuple[str, str]]]) -> StoreQueries:  # fmt: skip
    """Queries on the database at `path`, whose reports always have a column per class and
    direction and a row per configured camera line (`cameras`: camera → line → directions)."""
    return StoreQueries(path, interval_minutes * 60, layout_of(classes, cameras))
