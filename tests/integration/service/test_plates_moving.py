"""A plate on a moving vehicle, end to end: the CZ plate photo (a car) pasted on a shared clip's
motorway and driven across it, growing as it approaches, encoded as H.264; `edge run` reads the
plate over several frames, votes, and the track-end event (JSONL and `GET /api/events`) carries
the voted plate, how many reads agreed, and the vehicle and plate snapshots, which are on disk
and served by `GET /api/snapshots/NAME`. The same with the camera in a worker process
(`ingest.processes: 1`): the worker schedules the reads, the service reads them on its OCR pool
and writes the snapshots."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from edge.assets import asset
from edge.testing import ServiceProcess, free_port, wait_for

PLATE = "5AU5341"
FPS = 10


def empty_road() -> np.ndarray:
    """The shared overpass clip without its traffic: the median of frames spread over the clip."""
    with av.open(str(asset("video", "traffic_highway_overpass.mp4"))) as src:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(src.decode(video=0))
                  if i % 10 == 0]  # fmt: skip
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def moving_car_clip(out: Path, seconds: float = 8.0, empty_s: float = 2.0) -> Path:
    """960×540 H.264: the car photo crosses the empty road from left to right while it grows
    from 0.8× to 1.1× (the vehicle approaches), then the road stays empty for `empty_s` (so that
    the car's track ends)."""
    road = empty_road()
    photo = cv2.imread(str(asset("plates", "plate_cz_5AU5341.jpg")))
    assert photo is not None
    car = photo[40:300, 40:470]  # the car, without the parked cars beside it
    n = int(seconds * FPS)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "16"})
        stream.width, stream.height, stream.pix_fmt = road.shape[1], road.shape[0], "yuv420p"
        for i in range(n):
            scale = 0.8 + 0.3 * i / (n - 1)
            pasted = cv2.resize(car, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            h, w = pasted.shape[:2]
            x = int(10 + (road.shape[1] - w - 20) * i / (n - 1))
            y = road.shape[0] - h - 20
            img = road.copy()
            img[y : y + h, x : x + w] = pasted
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(packet)
        for _ in range(int(empty_s * FPS)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(road, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


@pytest.mark.parametrize("processes", [0, 1])
def test_moving_plate_is_voted_into_the_track_end_event(tmp_path: Path, processes: int) -> None:
    clip = moving_car_clip(tmp_path / "moving.mp4")
    port = free_port()
    events, snaps = tmp_path / "events.jsonl", tmp_path / "snapshots"
    config = {
        "cameras": [{"id": "road", "url": str(clip), "realtime": True}],
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ocr": {"enabled": True, "attempts": 4, "agree": 0, "snapshots": {"dir": str(snaps)}},
        "events": {"jsonl": str(events)},
        "ingest": {"processes": processes},
        "store": {"path": str(tmp_path / "events.db")},
        "server": {"port": port},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    svc = ServiceProcess(tmp_path / "cameras.yaml", port, tmp_path / "edge.log")
    try:
        svc.wait_ready(90)

        def ended() -> list[dict]:
            if not events.exists():
                return []
            rows = [json.loads(x) for x in events.read_text().splitlines()]
            return [e for e in rows if e["kind"] == "track_end" and e["plate"]]

        wait_for(lambda: ended(), 90, interval=0.5)  # the car leaves the picture: its track ends
        api = wait_for(lambda: [e for e in svc.get_json("/api/events?kind=track_end")["events"]
                                if e["plate"]], 20, interval=0.5)  # fmt: skip
        attempts = svc.text("/metrics")
        [event] = ended()
        with urllib.request.urlopen(f"{svc.base}/api/snapshots/{event['snapshot']}") as resp:
            served = (resp.headers["Content-Type"], resp.read())
        assert svc.status("/api/snapshots/nope.jpg") == 404
        assert svc.status("/api/snapshots/..%2Fevents.db") == 404
    finally:
        assert svc.stop() == 0, svc.log()[-3000:]
    assert event["plate"] == PLATE, event
    assert event["plate_reads"] >= 2 and 0.9 < event["plate_confidence"] <= 1  # several frames
    assert 'edge_ocr_attempts_total{camera="road"} ' in attempts
    n_attempts = float(attempts.split('edge_ocr_attempts_total{camera="road"} ')[1].split()[0])
    tracks = sum(json.loads(x)["kind"] == "track_end" for x in events.read_text().splitlines())
    # 4 attempts per track at most (the car's, and any part of the photo's background)
    assert event["plate_reads"] <= n_attempts <= 4 * tracks
    assert event["snapshot"] and event["plate_snapshot"]
    vehicle = cv2.imread(str(snaps / event["snapshot"]))
    plate = cv2.imread(str(snaps / event["plate_snapshot"]))
    assert vehicle is not None and vehicle.shape[1] > 300  # a large view of the car
    assert served == ("image/jpeg", (snaps / event["snapshot"]).read_bytes())
    assert plate is not None and plate.shape[1] < vehicle.shape[1] / 2
    [stored] = [e for e in api if e["track_id"] == event["track_id"]]
    assert {k: stored[k] for k in ("plate", "plate_reads", "snapshot", "plate_snapshot")} == {
        k: event[k] for k in ("plate", "plate_reads", "snapshot", "plate_snapshot")}  # fmt: skip
