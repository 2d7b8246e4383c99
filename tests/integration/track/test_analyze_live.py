"""`edge analyze --max-frames N` on a live RTSP URL (README: "or `--max-frames N` of a live URL"):
a stream that never ends is read for N frames, in order, and the three outputs are written; the
password in the URL stays out of all of them.

The camera is the real GStreamer RTSP simulator; the command runs as a real subprocess with the
shared model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.ingest.camsim import CameraSimulator

pytestmark = pytest.mark.timeout(180)

PASSWORD = "an4lyze-pw"
FRAMES = 50


def test_analyze_max_frames_on_a_live_rtsp_url(assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    with CameraSimulator({"highway": assets / "video" / "traffic_highway_cctv.mp4"}) as sim:
        url = sim.url("highway", "viewer", PASSWORD)
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "analyze", url, "--max-frames", str(FRAMES),
             "--line", "carriageway:0,150,320,150", "--out", str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sim.running  # the stream was still live when the command stopped reading it
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    frames = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in frames] == list(range(FRAMES))  # every frame, in order
    pts = [f["pts"] for f in frames]
    assert pts == sorted(pts) and pts[-1] > pts[0]
    # dense traffic (assets README: 8.4 vehicles per frame): the detector really ran
    assert sum(len(f["detections"]) for f in frames) > FRAMES
    assert any(d["track_id"] is not None for f in frames for d in f["detections"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == FRAMES
    assert summary["source"] == url.replace(f":{PASSWORD}@", ":***@")
    assert [line["name"] for line in summary["lines"]] == ["carriageway"]
    assert (out / "events.jsonl").is_file()
    written = b"".join(p.read_bytes() for p in out.iterdir())  # the database too
    assert PASSWORD.encode() not in written
    assert PASSWORD not in result.stdout + result.stderr
