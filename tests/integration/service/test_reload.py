"""Hot reload of `cameras.yaml` under `edge run` on simulated RTSP cameras (in the service's
process, `ingest.processes: 0`).

`highway` and `parking` stream throughout, `highway` with a WebRTC viewer; one edit of the file
(saved as an editor does: a new file renamed over the old one) adds `added`, removes `removed`
and changes `changed`'s source. The untouched cameras keep their frame counters, track ids, line
counts and viewer without a gap; the removed camera's viewer gets a clean end. A lines-only edit
keeps the camera's tracks; invalid edits change nothing and are reported; SIGHUP reloads.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config.shard import shard_of
from edge.ingest.camsim import CameraSimulator
from edge.publish.viewer_client import ThreadedViewer
from edge.testing import ServiceProcess, free_port, metric_value, wait_for

from .conftest import write_config

LIVENESS_S = 60.0
CLIP = "traffic_highway_cctv.mp4"  # 320x240: cheap enough for five cameras on two cores
NAMES = ("highway", "parking", "removed", "changed", "added")
LINE = {"name": "carriageway", "points": [[0, 150], [320, 150]]}


@pytest.fixture(scope="module")
def sim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / CLIP for n in NAMES}) as s:
        yield s


def camera(sim: CameraSimulator, name: str, **over: Any) -> dict[str, Any]:
    return {"id": name, "url": sim.url(name), "lines": [LINE], **over}


@pytest.fixture(scope="module")
def service(
    sim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("reload")
    port = free_port()
    cams = [camera(sim, n) for n in ("highway", "parking", "removed", "changed")]
    path = write_config(tmp, cams, port)
    with ServiceProcess(path, port, tmp / "edge-run.log") as svc:
        yield svc


class _NoAliases(yaml.SafeDumper):
    """Writes a mapping used twice (the same line in two cameras) out twice, as a person would,
    rather than as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def save(path: Path, data: dict[str, Any] | str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(data if isinstance(data, str) else yaml.dump(data, Dumper=_NoAliases))
    os.replace(tmp, path)


def reloads(svc: ServiceProcess, result: str) -> float:
    return metric_value(svc.text("/metrics"), "edge_config_reloads_total", result=result)


def cameras(svc: ServiceProcess) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def total(counts: dict[str, Any]) -> int:
    return sum(n for per_class in counts.values() for d in per_class.values() for n in d.values())


def on_line(camera: dict[str, Any], line: str) -> int:
    return total({line: camera["counts"].get(line, {})})


def track_ids(svc: ServiceProcess, camera: str) -> list[int]:
    """Track ids of the camera's track-end events, in order."""
    events = svc.config_path.parent / "events" / "events.jsonl"
    out = []
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e["camera"] == camera and e["kind"] == "track_end":
            out.append(e["track_id"])
    return out


class FrameWatch:
    """Samples a viewer's decoded frames; `longest_stall_s` is the longest time none came."""

    def __init__(self, viewer: ThreadedViewer) -> None:
        self.viewer, self.longest_stall_s = viewer, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last, since = self.viewer.frames, time.monotonic()
        while not self._stop.wait(0.05):
            now, frames = time.monotonic(), self.viewer.frames
            if frames != last:
                last, since = frames, now
            self.longest_stall_s = max(self.longest_stall_s, now - since)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_add_remove_and_change_leave_the_other_cameras_untouched(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    wait_for(lambda: all(c["state"] == "streaming" for c in cameras(service).values()), LIVENESS_S)
    wait_for(lambda: len(track_ids(service, "highway")) >= 3, LIVENESS_S)  # ids 1.. have ended
    watched = ThreadedViewer(service.base, "highway")
    ending = ThreadedViewer(service.base, "removed")
    try:
        wait_for(lambda: watched.frames >= 10 and ending.frames >= 10, LIVENESS_S)
        watch = FrameWatch(watched)
        metrics = service.text("/metrics")
        decoded = {c: metric_value(metrics, "edge_frames_decoded_total", camera=c)
                   for c in ("highway", "parking")}  # fmt: skip
        before = cameras(service)
        data = yaml.safe_load(service.config_path.read_text())
        data["cameras"] = [
            camera(sim, "highway"),
            camera(sim, "parking"),
            camera(sim, "changed", fps=5),
            camera(sim, "added"),
        ]
        save(service.config_path, data)
        wait_for(lambda: reloads(service, "applied") >= 1, LIVENESS_S)
        wait_for(lambda: cameras(service).get("added", {}).get("state") == "streaming", LIVENESS_S)
        wait_for(lambda: not ending.running, LIVENESS_S)  # the removed camera ended its track
        assert ending.error is None
        frames_then = watched.frames
        wait_for(lambda: watched.frames >= frames_then + 25, LIVENESS_S)
        watch.stop()
        assert watched.running and watched.error is None
    finally:
        watched.stop()
        ending.stop()
    # a liveness bound: the longest wait for a frame is typically under 0.2 s here; a camera
    # restarted (new connection, new encoder) or a viewer dropped stalls for seconds or for good
    assert watch.longest_stall_s < 2.0, watch.longest_stall_s
    after = cameras(service)
    assert set(after) == {"highway", "parking", "changed", "added"}
    metrics = service.text("/metrics")
    for cam in ("highway", "parking"):
        assert metric_value(metrics, "edge_frames_decoded_total", camera=cam) > decoded[cam]
        assert total(after[cam]["counts"]) >= total(before[cam]["counts"])  # counts kept
        ids = track_ids(service, cam)
        assert len(ids) == len(set(ids)), f"{cam}: track ids started again: {ids}"
    log = service.log()
    assert "config reload (file): applied" in log
    assert "started: added; stopped: removed; restarted: changed; lines: -" in log
    assert metric_value(metrics, "edge_camera_state", camera="removed", state="stopped") == 1


def test_a_lines_only_change_swaps_the_lines_and_keeps_the_tracks(
    service: ServiceProcess, sim: CameraSimulator
) -> None:
    wait_for(lambda: total(cameras(service)["highway"]["counts"]) >= 1, LIVENESS_S)
    before = cameras(service)["highway"]
    applied = reloads(service, "applied")
    data = yaml.safe_load(service.config_path.read_text())
    upper = {"name": "upper", "points": [[0, 100], [320, 100]], "directions": ["down", "up"]}
    for cam in data["cameras"]:
        if cam["id"] == "highway":
            cam["lines"] = [LINE, upper]
    save(service.config_path, data)
    wait_for(lambda: reloads(service, "applied") > applied, LIVENESS_S)
    assert "lines: highway" in service.log()
    # the new line counts from now on, the old one goes on from where it was
    wait_for(lambda: on_line(cameras(service)["highway"], "upper") >= 1, LIVENESS_S)
    after = cameras(service)["highway"]
    assert on_line(after, "carriageway") >= on_line(before, "carriageway")
    ids = track_ids(service, "highway")
    assert len(ids) == len(set(ids)), ids
    metrics = service.text("/metrics")
    assert metric_value(metrics, "edge_line_crossings_total", camera="highway", line="upper") >= 1


def test_lines_put_through_the_config_api_apply_live(service: ServiceProcess) -> None:
    """`PUT /api/cameras/highway/lines` writes the file and reloads it: the new line counts, the
    API shows what runs, and the file watch does not reload those same bytes again."""
    applied = reloads(service, "applied")
    api_line = {"name": "api", "points": [[0, 120], [320, 120]], "directions": ["in", "out"]}
    request = urllib.request.Request(
        service.base + "/api/cameras/highway/lines",
        data=json.dumps({"lines": [LINE, api_line]}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"HTTP {err.code}: {err.read().decode()}") from None
    assert answer["reload"]["result"] == "applied", answer
    assert answer["reload"]["lines_changed"] == ["highway"]
    wait_for(lambda: on_line(cameras(service)["highway"], "api") >= 1, LIVENESS_S)
    time.sleep(1.0)  # longer than the watch's pause before it reloads
    assert reloads(service, "applied") == applied + 1
    config = service.get_json("/api/config")
    assert config["last_reload"]["trigger"] == "api"
    highway = next(c for c in config["config"]["cameras"] if c["id"] == "highway")
    assert [line["name"] for line in highway["lines"]] == ["carriageway", "api"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ("cameras: [ {id: broken\n", "config: invalid YAML"),
        (
            "cameras:\n  - {id: x, url: rtsp://127.0.0.1/x, colour: red}\n",
            "cameras[0](x).colour: unknown key",
        ),
        (
            "cameras:\n  - id: x\n    url: rtsp://127.0.0.1/x\n"
            "    lines: [{name: l, points: [[0, 0], [0, 0]]}]\n",
            "cameras[0](x).lines[0]: the two points of a line must differ",
        ),
        (
            "cameras:\n  - {id: x, url: 'rtsp://admin:pw-reload-77@127.0.0.1:99999/x'}\n",
            "cameras[0](x).url: 'rtsp://admin:***@127.0.0.1:99999/x': bad port",
        ),
    ],
    ids=["yaml-syntax", "unknown-key", "bad-line", "bad-url-with-password"],
)
def test_an_invalid_edit_changes_nothing_and_is_reported(
    service: ServiceProcess, edit: str, problem: str
) -> None:
    good = service.config_path.read_text()
    before = cameras(service)
    invalid = reloads(service, "invalid")
    save(service.config_path, edit)
    try:
        wait_for(lambda: reloads(service, "invalid") > invalid, LIVENESS_S)
    finally:
        save(service.config_path, good)  # a restore identical to what runs: "unchanged"
    log = service.log()
    assert problem in log, log[-2000:]
    assert "the running config stays" in log
    assert "pw-reload-77" not in log
    after = cameras(service)
    assert set(after) == set(before)
    assert all(after[c]["state"] == "streaming" for c in after)
    wait_for(lambda: reloads(service, "unchanged") >= 1, LIVENESS_S)


def test_sighup_reloads(service: ServiceProcess) -> None:
    unchanged = reloads(service, "unchanged")
    service.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(service, "unchanged") > unchanged, LIVENESS_S)
    assert "config reload (signal): unchanged" in service.log()
    assert service.proc.poll() is None


def test_a_shard_reloads_only_its_own_cameras(sim: CameraSimulator, tmp_path: Path) -> None:
    """`edge run --shard 0/2`: of the cameras an edit adds, only shard 0's start."""
    ids = [f"cam{i}" for i in range(20)]
    mine = [i for i in ids if shard_of(i, 2) == 0]
    theirs = [i for i in ids if shard_of(i, 2) == 1]
    port = free_port()
    dead = f"rtsp://127.0.0.1:{free_port()}/none"
    path = write_config(tmp_path, [camera(sim, "parking", id=mine[0])], port)
    svc = ServiceProcess(path, port, tmp_path / "edge-run.log", args=["--shard", "0/2"])
    try:
        svc.wait_ready()
        data = yaml.safe_load(path.read_text())
        data["cameras"] += [{"id": i, "url": dead} for i in (mine[1], theirs[0], theirs[1])]
        save(path, data)
        wait_for(lambda: reloads(svc, "applied") >= 1, LIVENESS_S)
        assert set(cameras(svc)) == {mine[0], mine[1]}
        assert f"started: {mine[1]}; stopped: -" in svc.log()
    finally:
        svc.stop()


def test_a_configmap_style_update_is_seen(sim: CameraSimulator, tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as `cameras.yaml -> ..data/cameras.yaml`, `..data` a
    symlink to a timestamped folder, and updates it by swapping `..data` (a rename): the file
    itself is never written."""
    port = free_port()
    (tmp_path / "..2026_01").mkdir()
    first = write_config(tmp_path / "..2026_01", [camera(sim, "parking")], port)
    (tmp_path / "..data").symlink_to("..2026_01")
    path = tmp_path / "cameras.yaml"
    path.symlink_to("..data/cameras.yaml")
    svc = ServiceProcess(path, port, tmp_path / "edge-run.log")
    try:
        svc.wait_ready()
        data = yaml.safe_load(first.read_text())
        data["cameras"].append({"id": "extra", "url": f"rtsp://127.0.0.1:{free_port()}/none"})
        (tmp_path / "..2026_02").mkdir()
        (tmp_path / "..2026_02" / "cameras.yaml").write_text(yaml.safe_dump(data))
        (tmp_path / "..data_tmp").symlink_to("..2026_02")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        wait_for(lambda: reloads(svc, "applied") >= 1, LIVENESS_S)
        assert set(cameras(svc)) == {"parking", "extra"}
    finally:
        svc.stop()
