"""`edge run` as a user starts it: a real subprocess on real simulated RTSP cameras."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.testing import ServiceProcess, free_port

CLIPS = {"highway": "traffic_highway_cctv.mp4", "parking": "car-detection.mp4"}


def write_config(tmp: Path, cameras: list[dict[str, Any]], port: int, **ingest: Any) -> Path:
    """`edge run`'s config for these tests; `ingest` adds settings (`processes=1`)."""
    data: dict[str, Any] = {
        "cameras": cameras,
        "detector": {"prepared_dir": str(tmp.parent / "models"), "max_batch": 4},
        "ingest": {"read_timeout_s": 2, "open_timeout_s": 3, "backoff_max_s": 2, **ingest},
        "events": {"jsonl": str(tmp / "events" / "events.jsonl")},
        "store": {"path": str(tmp / "events" / "edge.db")},
        "server": {"host": "127.0.0.1", "port": port},
    }
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def camsim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / c for n, c in CLIPS.items()}) as sim:
        yield sim


@pytest.fixture(scope="module")
def service(
    camsim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Two good cameras (one with credentials in its URL) and one that never answers."""
    tmp = tmp_path_factory.mktemp("service")
    port, dead_port = free_port(), free_port()
    cameras = [
        {
            "id": "highway",
            "url": camsim.url("highway", user="admin", password="hunter22"),
            "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}],
        },
        {"id": "parking", "url": camsim.url("parking")},
        {"id": "dead", "url": f"rtsp://viewer:pw-dead-99@127.0.0.1:{dead_port}/none"},
    ]
    with ServiceProcess(write_config(tmp, cameras, port), port, tmp / "edge-run.log") as svc:
        yield svc
