"""Hot reload with the cameras in a worker process (`ingest.processes: 1`).

A lines-only edit reaches the worker, which swaps the camera's lines and keeps its tracks (the
worker is not restarted); added cameras join the running worker (the process count stays at
`ingest.processes`) in shared-memory segments of their own while its other cameras go on; a
removed one stops in its worker and its segment goes once none of the segment's cameras is left;
a kill -9 of the worker brings all its cameras back, a restarted camera restarts in it, and
nothing is left in /dev/shm after the service stops.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.ingest.slots import SHM_DIR, SHM_PREFIX
from edge.publish.viewer_client import ThreadedViewer
from edge.testing import (
    ServiceProcess,
    descendants,
    free_port,
    metric_value,
    still_alive,
    wait_for,
)

from .conftest import write_config
from .test_reload import LINE, camera, cameras, on_line, reloads, save, track_ids

LIVENESS_S = 60.0
CLIP = "traffic_highway_cctv.mp4"
NAMES = ("highway", "parking", "added", "more")
UPPER = {"name": "upper", "points": [[0, 100], [320, 100]]}


@pytest.fixture(scope="module")
def sim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / CLIP for n in NAMES}) as s:
        yield s


@pytest.fixture(scope="module")
def service(
    sim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("reload-workers")
    port = free_port()
    path = write_config(tmp, [camera(sim, "highway"), camera(sim, "parking")], port, processes=1)
    with ServiceProcess(path, port, tmp / "edge-run.log") as svc:
        yield svc


def worker_pids(svc: ServiceProcess) -> dict[int, int]:
    """worker index → pid of its latest start, from the service's log."""
    found = re.findall(r"worker (\d+) \(pid (\d+)\): cameras", svc.log())
    return {int(w): int(pid) for w, pid in found}


def edit(svc: ServiceProcess, cams: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(svc.config_path.read_text())
    data["cameras"] = cams
    applied = reloads(svc, "applied")
    save(svc.config_path, data)
    wait_for(lambda: reloads(svc, "applied") > applied, LIVENESS_S)


def test_a_lines_change_reaches_the_worker_and_keeps_its_tracks(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    wait_for(lambda: on_line(cameras(service)["highway"], "carriageway") >= 1, LIVENESS_S)
    pids = worker_pids(service)
    assert list(pids) == [0]
    before = cameras(service)["highway"]
    edit(service, [camera(sim, "highway", lines=[LINE, UPPER]), camera(sim, "parking")])
    wait_for(lambda: on_line(cameras(service)["highway"], "upper") >= 1, LIVENESS_S)
    after = cameras(service)["highway"]
    assert on_line(after, "carriageway") >= on_line(before, "carriageway")
    assert worker_pids(service) == pids  # no worker restarted
    ids = track_ids(service, "highway")
    assert len(ids) == len(set(ids)), ids
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_line_crossings_total", camera="highway", line="upper") >= 1


class InferredWatch:
    """Samples a camera's inferred frames; `longest_stall_s` is the longest time none came."""

    def __init__(self, svc: ServiceProcess, camera: str) -> None:
        self.svc, self.camera, self.longest_stall_s = svc, camera, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last, since = inferred(self.svc, self.camera), time.monotonic()
        while not self._stop.wait(0.05):
            now, frames = time.monotonic(), inferred(self.svc, self.camera)
            if frames != last:
                last, since = frames, now
            self.longest_stall_s = max(self.longest_stall_s, now - since)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.longest_stall_s


def inferred(svc: ServiceProcess, camera: str) -> float:
    return metric_value(svc.text("/metrics"), "edge_frames_inferred_total", camera=camera)


def workers(svc: ServiceProcess) -> dict[str, int]:
    return {cid: c["worker"] for cid, c in cameras(svc).items()}


def segments(svc: ServiceProcess) -> list[str]:
    """The service's shared-memory segments, without their common prefix."""
    prefix = f"{SHM_PREFIX}{svc.proc.pid}-"
    return sorted(p.name.removeprefix(prefix) for p in SHM_DIR.glob(f"{prefix}*"))


def streams_and_is_inferred(svc: ServiceProcess, camera: str, frames: int = 5) -> None:
    wait_for(lambda: cameras(svc).get(camera, {}).get("state") == "streaming", LIVENESS_S)
    start = inferred(svc, camera)
    wait_for(lambda: inferred(svc, camera) >= start + frames, LIVENESS_S)


def test_added_cameras_join_the_running_worker(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    """`processes: 1`: cameras added one reload at a time run in the one worker, which goes on
    (same process, its cameras never paused); a removed camera's segment goes at once."""
    streams_and_is_inferred(service, "highway")
    pids = worker_pids(service)
    assert list(pids) == [0] and segments(service) == ["w0-g1"]
    highway = camera(sim, "highway", lines=[LINE, UPPER])
    counted = on_line(cameras(service)["highway"], "carriageway")
    watch = InferredWatch(service, "highway")
    try:
        edit(service, [highway, camera(sim, "parking"), camera(sim, "added")])
        streams_and_is_inferred(service, "added")
        stall = watch.stop()
    finally:
        watch.stop()
    # a liveness bound: highway's frames are typically inferred every 0.1 s or so here; a
    # restarted worker (a new process, a new connection) leaves it without any for seconds
    print(f"highway: longest wait for an inferred frame across the reload {stall:.2f} s")
    assert stall < 2.0, stall
    assert workers(service) == {"highway": 0, "parking": 0, "added": 0}
    assert worker_pids(service) == pids
    viewer = ThreadedViewer(service.base, "added")  # annotated and encoded in the worker
    try:
        wait_for(lambda: viewer.frames >= 10, LIVENESS_S)
    finally:
        viewer.stop()
    # the worker's counters reach /metrics with its next status (every 0.2 s)
    wait_for(
        lambda: metric_value(service.text("/metrics"), "edge_frames_rendered_total", camera="added")
        >= 10,
        LIVENESS_S,
    )
    wait_for(lambda: on_line(cameras(service)["added"], "carriageway") >= 1, LIVENESS_S)  # tracked
    assert segments(service) == ["w0-g1", "w0-g1-s6"]  # after the first two cameras' 3+3 slots
    # a second reload adds one more and removes one of the first segment's cameras
    edit(service, [highway, camera(sim, "added"), camera(sim, "more")])
    streams_and_is_inferred(service, "more")
    streams_and_is_inferred(service, "added")
    assert workers(service) == {"highway": 0, "added": 0, "more": 0}
    assert worker_pids(service) == pids and len(worker_pids(service)) == 1
    assert segments(service) == ["w0-g1", "w0-g1-s6", "w0-g1-s9"]  # highway still uses g1
    # its only camera removed, the added segment goes; the worker and the others go on
    edit(service, [highway, camera(sim, "more")])
    wait_for(lambda: segments(service) == ["w0-g1", "w0-g1-s9"], LIVENESS_S)
    streams_and_is_inferred(service, "highway")
    streams_and_is_inferred(service, "more")
    assert worker_pids(service) == pids
    assert on_line(cameras(service)["highway"], "carriageway") >= counted
    ids = track_ids(service, "highway")
    assert len(ids) == len(set(ids)), ids  # one tracker throughout
    assert "died" not in service.log()


def test_fault_kill_9_after_an_add_brings_back_all_the_workers_cameras(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    """The restarted worker starts every camera it had, the added ones too, in one segment."""
    assert set(workers(service)) == {"highway", "more"}
    pid = worker_pids(service)[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: worker_pids(service).get(0) not in (None, pid), LIVENESS_S)
    for cam in ("highway", "more"):
        streams_and_is_inferred(service, cam)
    assert workers(service) == {"highway": 0, "more": 0}
    assert segments(service) == ["w0-g2"]
    assert re.search(rf"worker 0 \(pid {pid}\) died .*cameras highway, more", service.log())


def test_a_restarted_camera_restarts_in_the_same_worker(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    """A changed source stops the camera and starts it again, in the one worker (its slots in
    a segment of their own); highway goes on."""
    pids = worker_pids(service)
    highway = camera(sim, "highway", lines=[LINE, UPPER])
    edit(service, [highway, camera(sim, "more", fps=5)])
    wait_for(lambda: segments(service) == ["w0-g2", "w0-g2-s6"], LIVENESS_S)
    streams_and_is_inferred(service, "more")
    streams_and_is_inferred(service, "highway")
    assert workers(service) == {"highway": 0, "more": 0} and worker_pids(service) == pids
    edit(service, [highway])
    wait_for(lambda: segments(service) == ["w0-g2"], LIVENESS_S)
    streams_and_is_inferred(service, "highway")
    assert set(cameras(service)) == {"highway"} and worker_pids(service) == pids
    assert metric_value(service.text("/metrics"), "edge_worker_restarts_total", worker="0") == 1


def test_stop_leaves_no_segment(service: ServiceProcess) -> None:
    children = descendants(service.proc.pid)
    assert service.stop() == 0, service.log()[-2000:]
    wait_for(lambda: not still_alive(children), 10)
    assert segments(service) == []
