"""Plates end to end: `edge run` with OCR on a camera that films a parked car (a real photo
encoded as H.264 and looped, played at real time); the plate reaches the metrics and events."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import yaml

from edge.testing import ServiceProcess, free_port, metric_value, wait_for

PLATE = "5AU5341"


def photo_as_clip(photo: Path, out: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    """A short H.264 clip of a still photo (even dimensions for 4:2:0)."""
    img = cv2.imread(str(photo))
    assert img is not None, photo
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    img = np.ascontiguousarray(img[:h, :w])
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def test_plate_is_read_within_the_attempt_budget_and_reaches_the_track_end_event(
    assets: Path, tmp_path: Path
) -> None:
    clip = photo_as_clip(assets / "plates" / "plate_cz_5AU5341.jpg", tmp_path / "parked.mp4")
    port = free_port()
    events = tmp_path / "events.jsonl"
    config = {
        "cameras": [{"id": "gate", "url": str(clip), "loop": True}],
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ocr": {"enabled": True, "attempts": 5},
        "events": {"jsonl": str(events)},
        "server": {"port": port},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    svc = ServiceProcess(tmp_path / "cameras.yaml", port, tmp_path / "edge.log")
    try:
        svc.wait_ready(90)

        def metric(name: str) -> float:
            for line in svc.text("/metrics").splitlines():
                if line.startswith(f'{name}{{camera="gate"}}'):
                    return float(line.split()[-1])
            return 0.0

        wait_for(lambda: metric("edge_ocr_reads_total") >= 1, 60, interval=0.5)
        attempts = metric("edge_ocr_attempts_total")
        assert 1 <= attempts <= 5  # a confident read ends the attempts of that track
    finally:
        assert svc.stop() == 0, svc.log()[-2000:]
    ended = [json.loads(x) for x in events.read_text().splitlines()]
    ended = [e for e in ended if e["kind"] == "track_end"]
    assert ended and all(e["camera"] == "gate" for e in ended)
    assert PLATE in {e["plate"] for e in ended}, ended


def test_with_a_worker_process_the_attempts_skips_and_snapshot_bound_hold(
    assets: Path, tmp_path: Path
) -> None:
    """Two cameras in one worker process on one OCR process: their attempts compete for it
    (refused ones counted as skipped, the budget unspent), each track reads at most
    `ocr.attempts` crops, the plate reaches the track-end events that the shutdown sends, and
    the snapshots of both cameras stay under the one folder bound (an old file goes first)."""
    clip = photo_as_clip(assets / "plates" / "plate_cz_5AU5341.jpg", tmp_path / "parked.mp4")
    port = free_port()
    events, snaps = tmp_path / "events.jsonl", tmp_path / "snapshots"
    snaps.mkdir()
    old = snaps / "old.jpg"
    old.write_bytes(b"\xff" * 60_000)
    max_mb = 0.1
    cameras = [{"id": cam, "url": str(clip), "loop": True} for cam in ("gate", "yard")]
    config = {
        "cameras": cameras,
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ingest": {"processes": 1},
        "ocr": {"enabled": True, "attempts": 2, "agree": 0, "workers": 1,
                "snapshots": {"dir": str(snaps), "max_mb": max_mb}},  # fmt: skip
        "events": {"jsonl": str(events)},
        "server": {"port": port},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    svc = ServiceProcess(tmp_path / "cameras.yaml", port, tmp_path / "edge.log")
    try:
        svc.wait_ready(90)
        workers = {c["id"]: c["worker"] for c in svc.get_json("/api/cameras")["cameras"]}
        assert workers == {"gate": 0, "yard": 0}

        def total(name: str, cam: str) -> float:
            return metric_value(svc.text("/metrics"), name, camera=cam)

        for cam in ("gate", "yard"):
            wait_for(lambda c=cam: total("edge_ocr_reads_total", c) >= 1, 60, interval=0.5)
        wait_for(lambda: sum(total("edge_ocr_skipped_total", c) for c in ("gate", "yard")),
                 30, interval=0.5)  # fmt: skip
        attempts = {c: total("edge_ocr_attempts_total", c) for c in ("gate", "yard")}
    finally:
        assert svc.stop() == 0, svc.log()[-3000:]
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    ended = [e for e in rows if e["kind"] == "track_end"]
    for cam in ("gate", "yard"):
        mine = [e for e in ended if e["camera"] == cam]
        assert PLATE in {e["plate"] for e in mine}, mine
        assert 1 <= attempts[cam] <= 2 * len(mine)  # at most 2 per track, refusals not spent
        assert all(e["plate_reads"] <= 2 for e in mine if e["plate"])
    named = {e["snapshot"] for e in ended if e.get("snapshot")}
    on_disk = list(snaps.glob("*.jpg"))
    assert named and not old.exists()  # the oldest file went to make room
    assert {p.name for p in on_disk} <= named | {e["plate_snapshot"] for e in ended}
    assert 0 < sum(p.stat().st_size for p in on_disk) <= max_mb * 1024 * 1024
