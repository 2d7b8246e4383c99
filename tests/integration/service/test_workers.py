"""`edge run` with camera worker processes (`ingest.processes: 2`) on simulated RTSP cameras.

Worker 0 owns highway and overpass, worker 1 parking and a camera that never answers. A kill -9
of worker 0 costs only its cameras, which come back after its restart with their line counts;
parking keeps being inferred meanwhile, and the dead camera's connection errors stay in it.
SIGTERM then leaves no process and no shared-memory segment behind.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.ingest.camsim import CameraSimulator
from edge.ingest.slots import SHM_DIR, SHM_PREFIX
from edge.publish.viewer_client import ThreadedViewer as Viewer
from edge.testing import (
    ServiceProcess,
    descendants,
    free_port,
    metric_value,
    still_alive,
    wait_for,
)

from .conftest import write_config

CLIPS = {
    "highway": "traffic_highway_cctv.mp4",
    "parking": "car-detection.mp4",
    "overpass": "traffic_highway_overpass.mp4",
}
LIVENESS_S = 60.0


@pytest.fixture(scope="module")
def sim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / c for n, c in CLIPS.items()}) as s:
        yield s


@pytest.fixture(scope="module")
def service(
    sim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("workers")
    port = free_port()
    cameras = [
        {"id": "highway", "url": sim.url("highway"),
         "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}]},
        {"id": "parking", "url": sim.url("parking")},
        {"id": "overpass", "url": sim.url("overpass")},
        {"id": "dead", "url": f"rtsp://127.0.0.1:{free_port()}/none"},
    ]  # fmt: skip
    path = write_config(tmp, cameras, port, processes=2)
    with ServiceProcess(path, port, tmp / "edge-run.log") as svc:
        yield svc


def inferred(svc: ServiceProcess, camera: str) -> float:
    return metric_value(svc.text("/metrics"), "edge_frames_inferred_total", camera=camera)


def cameras(svc: ServiceProcess) -> dict[str, dict]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def worker_pids(svc: ServiceProcess) -> dict[int, int]:
    """worker index → pid of its latest start, from the service's log."""
    found = re.findall(r"worker (\d+) \(pid (\d+)\): cameras", svc.log())
    return {int(w): int(pid) for w, pid in found}


def segments(pid: int) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"{SHM_PREFIX}{pid}-*"))


def test_cameras_run_in_their_workers(service: ServiceProcess) -> None:
    wait_for(lambda: all(inferred(service, c) > 0 for c in CLIPS), LIVENESS_S)
    cams = cameras(service)
    assert {c: cams[c]["worker"] for c in cams} == {
        "highway": 0, "parking": 1, "overpass": 0, "dead": 1,
    }  # fmt: skip
    assert {c: cams[c]["state"] for c in CLIPS} == dict.fromkeys(CLIPS, "streaming")
    assert cams["highway"]["width"] == 320 and cams["highway"]["counts"] == {
        "carriageway": cams["highway"]["counts"]["carriageway"]
    }
    assert segments(service.proc.pid) == [f"{SHM_PREFIX}{service.proc.pid}-w0-g1",
                                          f"{SHM_PREFIX}{service.proc.pid}-w1-g1"]  # fmt: skip
    assert len(worker_pids(service)) == 2


def test_a_viewer_of_a_worker_camera_gets_video(service: ServiceProcess) -> None:
    """The worker annotates and encodes the watched camera; its metrics come with its status."""
    viewer = Viewer(service.base, "overpass")
    try:
        wait_for(lambda: viewer.frames >= 10, LIVENESS_S)
    finally:
        viewer.stop()
    wait_for(lambda: metric_value(service.text("/metrics"), "edge_frames_rendered_total",
                                  camera="overpass") >= 10, LIVENESS_S)  # fmt: skip
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_frames_rendered_total", camera="parking") == 0


def test_fault_connection_errors_stay_in_their_camera(service: ServiceProcess) -> None:
    """The dead camera shares worker 1 with parking: parking streams, the dead one says why."""
    wait_for(lambda: cameras(service)["dead"]["last_error"], LIVENESS_S)
    cams = cameras(service)
    assert cams["dead"]["state"] in {"connecting", "backoff"}
    assert "cannot open" in cams["dead"]["last_error"]
    assert cams["parking"]["state"] == "streaming"
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_worker_restarts_total", worker="1") == 0


def counted(svc: ServiceProcess, camera: str) -> int:
    counts = cameras(svc)[camera]["counts"]
    return sum(n for per_class in counts.values() for d in per_class.values() for n in d.values())


def test_fault_kill_9_of_a_worker_costs_only_its_cameras(service: ServiceProcess) -> None:
    wait_for(lambda: counted(service, "highway") > 0, LIVENESS_S)
    pid = worker_pids(service)[0]
    os.kill(pid, signal.SIGKILL)
    counted_before = counted(service, "highway")
    before = inferred(service, "parking")
    wait_for(lambda: cameras(service)["highway"]["state"] != "streaming", LIVENESS_S)
    down_at = time.monotonic()
    # Parking (worker 1) keeps being inferred while worker 0 is down.
    wait_for(lambda: inferred(service, "parking") > before + 5, LIVENESS_S)
    highway_state = cameras(service)["highway"]["state"]
    log = service.log()
    assert re.search(rf"worker 0 \(pid {pid}\) died .*cameras highway, overpass", log), log[-2000:]
    # Then worker 0 comes back and its cameras are inferred again.
    wait_for(lambda: worker_pids(service).get(0) not in (None, pid), LIVENESS_S)
    after = {c: inferred(service, c) for c in ("highway", "overpass")}
    wait_for(
        lambda: (
            all(inferred(service, c) > after[c] for c in after)
            and cameras(service)["highway"]["state"] == "streaming"
        ),
        LIVENESS_S,
    )
    print(f"parking kept going while highway was {highway_state}, "
          f"{time.monotonic() - down_at:.1f} s until worker 0 streamed again")  # fmt: skip
    # The restarted worker counts on from the counts its predecessor reported last.
    assert counted(service, "highway") >= counted_before > 0
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_worker_restarts_total", worker="0") == 1
    assert metric_value(metrics, "edge_worker_restarts_total", worker="1") == 0
    own = service.proc.pid
    assert segments(own) == [f"{SHM_PREFIX}{own}-w0-g2", f"{SHM_PREFIX}{own}-w1-g1"]


def test_fault_sigterm_leaves_no_process_and_no_segment(service: ServiceProcess) -> None:
    own = service.proc.pid
    children = descendants(own)
    assert len(children) >= 2  # the two workers (and their helpers)
    assert service.stop() == 0, service.log()[-2000:]
    wait_for(lambda: not still_alive(children), 10)
    assert still_alive(children) == []
    assert segments(own) == []
