"""Plates on a camera that a config reload adds to a running worker process (`ingest.processes:
1`, OCR on): the added camera's reads are scheduled in the worker it joined, as its first
camera's are, and its plate reaches its track-end events."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from edge.testing import ServiceProcess, free_port, metric_value, wait_for

from .test_plates_service import PLATE, photo_as_clip
from .test_reload import reloads, save

LIVENESS_S = 60.0


def test_an_added_camera_reads_plates_in_the_worker_it_joined(
    assets: Path, tmp_path: Path
) -> None:
    clip = photo_as_clip(assets / "plates" / "plate_cz_5AU5341.jpg", tmp_path / "parked.mp4")
    port = free_port()
    events = tmp_path / "events.jsonl"
    config = {
        "cameras": [{"id": "gate", "url": str(clip), "loop": True}],
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ingest": {"processes": 1},
        "ocr": {"enabled": True, "attempts": 2, "workers": 1},
        "events": {"jsonl": str(events)},
        "server": {"port": port},
    }
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    svc = ServiceProcess(path, port, tmp_path / "edge.log")

    def reads(cam: str) -> float:
        return metric_value(svc.text("/metrics"), "edge_ocr_reads_total", camera=cam)

    try:
        svc.wait_ready(90)
        wait_for(lambda: reads("gate") >= 1, LIVENESS_S, interval=0.5)
        config["cameras"].append({"id": "yard", "url": str(clip), "loop": True})
        save(path, config)
        wait_for(lambda: reloads(svc, "applied") >= 1, LIVENESS_S)
        wait_for(lambda: reads("yard") >= 1, LIVENESS_S, interval=0.5)
        workers = {c["id"]: c["worker"] for c in svc.get_json("/api/cameras")["cameras"]}
        assert workers == {"gate": 0, "yard": 0}
    finally:
        assert svc.stop() == 0, svc.log()[-3000:]
    ended = [json.loads(x) for x in events.read_text().splitlines()]
    yard = [e for e in ended if e["kind"] == "track_end" and e["camera"] == "yard"]
    assert PLATE in {e["plate"] for e in yard}, yard
