"""The hand-counted CCTV clip through `edge run` with a camera worker process: counts as by hand.

The clip is played as a live camera (recorded speed, once) by the service with `ingest.processes:
1`, so decoding, letterboxing, tracking and counting happen in the worker and detection in the
service's process. The offline pipeline counts 21 of the 22 hand-counted vehicles on the north
line and 20 of 21 on the west line (test_counting_clips.py); live, a frame the batcher could not
take in time is skipped, so one more miss per line is allowed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.assets import asset
from edge.testing import ServiceProcess, free_port, metric_value, wait_for

from .test_counting_clips import CCTV_HAND, CCTV_LINE, CCTV_WEST, CCTV_WEST_HAND

CLIP_S = 30.0  # 748 frames at 25 fps


def test_cctv_counts_with_a_worker_process(tmp_path: Path) -> None:
    port = free_port()
    lines = [
        {"name": ln.name, "points": [list(p) for p in ln.points], "directions": list(ln.directions)}
        for ln in (CCTV_LINE, CCTV_WEST)
    ]
    config = {
        "cameras": [{"id": "cctv", "url": str(asset("video", "traffic_highway_cctv.mp4")),
                     "realtime": True, "lines": lines}],
        "detector": {"prepared_dir": str(tmp_path / "models")},
        "ingest": {"processes": 1},
        "server": {"host": "127.0.0.1", "port": port},
    }  # fmt: skip
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    svc = ServiceProcess(path, port, tmp_path / "edge-run.log")
    try:
        svc.wait_ready()
        camera = svc.get_json("/api/cameras")["cameras"][0]
        assert camera["worker"] == 0
        wait_for(
            lambda: svc.get_json("/api/cameras")["cameras"][0]["state"] == "stopped",
            10 * CLIP_S,
        )
        counts = svc.get_json("/api/cameras")["cameras"][0]["counts"]
        metrics = svc.text("/metrics")
    finally:
        assert svc.stop() == 0
    north = sum(n for per_class in counts["north"].values() for n in per_class.values())
    west = sum(n for per_class in counts["west"].values() for n in per_class.values())
    print(f"live with a worker: north {north} (hand {len(CCTV_HAND)}), "
          f"west {west} (hand {len(CCTV_WEST_HAND)})")  # fmt: skip
    assert len(CCTV_HAND) - 2 <= north <= len(CCTV_HAND)
    assert len(CCTV_WEST_HAND) - 2 <= west <= len(CCTV_WEST_HAND)
    crossings = metric_value(metrics, "edge_line_crossings_total", camera="cctv")
    assert crossings == north + west  # the worker's counters reached the service's registry
    decoded = metric_value(metrics, "edge_frames_decoded_total", camera="cctv")
    published = metric_value(metrics, "edge_frames_published_total", camera="cctv")
    dropped = metric_value(metrics, "edge_frames_dropped_total", camera="cctv")
    assert decoded == published + dropped > 700  # README's rule, across the processes
