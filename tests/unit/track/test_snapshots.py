"""Snapshot JPEGs: names after camera and track, real files, the folder's disk bound."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from edge.config import SnapshotConfig
from edge.metrics import EdgeMetrics
from edge.testing import metric_value
from edge.track.crops import cut
from edge.track.snapshots import SnapshotError, SnapshotWriter
from edge.types import Frame

WHEN = datetime(2026, 12, 3, 10, 0, 1, 250000, tzinfo=UTC)


def crop(seed: int = 1):  # type: ignore[no-untyped-def]
    img = np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    frame = Frame("cam1", 0, None, 0.0, av.VideoFrame.from_ndarray(img, format="bgr24")
                  .reformat(format="yuv420p"))  # fmt: skip
    c = cut(frame, (20, 20, 220, 160))
    assert c is not None
    return c


def test_names_carry_camera_track_and_time() -> None:
    names = SnapshotWriter.names("gate/1", 42, WHEN, plate=True)
    assert names.vehicle == "gate_1-42-20261203T100001250Z.jpg"
    assert names.plate == "gate_1-42-20261203T100001250Z-plate.jpg"
    assert SnapshotWriter.names("gate", 42, WHEN, plate=False).plate is None


def test_snapshots_are_jpegs_and_the_plate_is_cut_out(tmp_path: Path) -> None:
    metrics = EdgeMetrics()
    w = SnapshotWriter(SnapshotConfig(dir=tmp_path / "snaps"), metrics)
    w.start()
    names = w.names("cam1", 1, WHEN, plate=True)
    c = crop()
    w.save(names, c)
    w.save(type(names)(names.plate or "", None), c, crop_box=(60.0, 40.0, 120.0, 60.0))
    w.close()
    vehicle = cv2.imread(str(tmp_path / "snaps" / names.vehicle))
    plate = cv2.imread(str(tmp_path / "snaps" / (names.plate or "")))
    assert vehicle is not None and vehicle.shape == (140, 200, 3)
    assert plate is not None and plate.shape == (20, 60, 3)
    assert metric_value(metrics, "edge_snapshots_written_total") == 2
    assert metric_value(metrics, "edge_snapshots_bytes") == w.used_bytes > 0


def test_the_folder_stays_under_its_bound_oldest_removed_first(tmp_path: Path) -> None:
    folder = tmp_path / "snaps"
    folder.mkdir()
    old = folder / "old-1-20200101T000000000Z.jpg"
    old.write_bytes(b"x" * 30_000)
    os.utime(old, (1, 1))
    metrics = EdgeMetrics()
    w = SnapshotWriter(SnapshotConfig(dir=folder, max_mb=0.1), metrics)  # ~105 KB
    w.start()
    for i in range(12):
        w.save(w.names("cam1", i, WHEN, plate=False), crop(i))  # noise: ~30-40 KB each
    w.close()
    files = sorted(folder.glob("*.jpg"))
    total = sum(p.stat().st_size for p in files)
    assert total <= 0.1 * 1024 * 1024 and total == w.used_bytes
    assert not old.exists()
    kept = {p.name.split("-")[1] for p in files}
    assert "11" in kept and "0" not in kept  # the newest stay
    assert metric_value(metrics, "edge_snapshots_deleted_total") == 13 - len(files)


def test_an_unusable_folder_is_one_line_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    w = SnapshotWriter(SnapshotConfig(dir=tmp_path / "file" / "snaps"), EdgeMetrics())
    with pytest.raises(SnapshotError, match=r"^ocr.snapshots.dir: cannot write .*snaps: "):
        w.start()
