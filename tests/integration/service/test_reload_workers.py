"""Hot reload with the cameras in a worker process (`ingest.processes: 1`).

A lines-only edit reaches the worker, which swaps the camera's lines and keeps its tracks (the
worker is not restarted); an added camera runs in a new worker of its own, a removed one stops in
its worker while the worker's other camera goes on, a restarted one moves to a new worker, and a
worker left with no camera stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.testing import ServiceProcess, free_port, metric_value, wait_for

from .conftest import write_config
from .test_reload import LINE, camera, cameras, on_line, reloads, save, track_ids

LIVENESS_S = 60.0
CLIP = "traffic_highway_cctv.mp4"
NAMES = ("highway", "parking", "added")
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


def test_add_and_remove_cameras_around_a_running_worker(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    pids = worker_pids(service)
    highway = camera(
        sim, "highway", lines=[LINE, {"name": "upper", "points": [[0, 100], [320, 100]]}]
    )
    decoded = metric_value(service.text("/metrics"), "edge_frames_decoded_total", camera="highway")
    counted = on_line(cameras(service)["highway"], "carriageway")
    edit(service, [highway, camera(sim, "added")])  # parking removed, added added
    wait_for(lambda: cameras(service).get("added", {}).get("state") == "streaming", LIVENESS_S)
    cams = cameras(service)
    assert set(cams) == {"highway", "added"}
    assert (cams["highway"]["worker"], cams["added"]["worker"]) == (0, 1)
    assert worker_pids(service)[0] == pids[0]
    wait_for(lambda: on_line(cameras(service)["added"], "carriageway") >= 1, LIVENESS_S)
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_frames_decoded_total", camera="highway") > decoded
    assert on_line(cameras(service)["highway"], "carriageway") >= counted
    assert metric_value(metrics, "edge_camera_state", camera="parking", state="stopped") == 1
    ids = track_ids(service, "highway")
    assert len(ids) == len(set(ids)), ids
    # a changed source restarts the camera: out of worker 1 (which stops), into a new worker 2
    edit(service, [highway, camera(sim, "added", fps=5)])
    wait_for(lambda: "worker 1 stopped: no camera left" in service.log(), LIVENESS_S)
    wait_for(lambda: cameras(service)["added"]["state"] == "streaming", LIVENESS_S)
    assert cameras(service)["added"]["worker"] == 2
    inferred = metric_value(service.text("/metrics"), "edge_frames_inferred_total", camera="added")
    wait_for(
        lambda: metric_value(service.text("/metrics"), "edge_frames_inferred_total",
                             camera="added") > inferred + 5,
        LIVENESS_S,
    )  # fmt: skip
    edit(service, [highway])  # the new worker's only camera goes: the worker stops
    wait_for(lambda: "worker 2 stopped: no camera left" in service.log(), LIVENESS_S)
    assert set(cameras(service)) == {"highway"}
    decoded = metric_value(service.text("/metrics"), "edge_frames_decoded_total", camera="highway")
    wait_for(
        lambda: metric_value(service.text("/metrics"), "edge_frames_decoded_total",
                             camera="highway") > decoded + 10,
        LIVENESS_S,
    )  # fmt: skip
    assert "died" not in service.log()
