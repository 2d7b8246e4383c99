"""The container image, built and run as CI does it: a Debian 12 base made with debootstrap
(`deploy/container/debian-base`, no registry needed), the Containerfile built on it with podman
(`deploy/container/build-image`), then the image serving a simulated RTSP camera on the host:
ready, streaming, detections counted in /metrics, the HEALTHCHECK passing, and `podman stop`
ending it cleanly (exit 0 well before the kill, every event line whole).

Nothing is cached across runs: podman's storage lives in the test's temporary folder. Needs root
(debootstrap, podman) and scripts/setup's podman, buildah, debootstrap and runc; the whole file
takes about 2-3 minutes on 2 cores, most of it the image build."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.ingest.camsim import CameraSimulator
from edge.testing import free_port, metric_value, wait_for

REPO = Path(__file__).resolve().parents[3]
CONTAINER = REPO / "deploy" / "container"
TOOLS = ("podman", "buildah", "debootstrap", "runc")


def podman_env(tmp: Path) -> dict[str, str]:
    """podman with its storage in `tmp`, and two settings this kind of machine needs: runc (crun
    1.8 refuses cgroups in hybrid mode) and ulimits within the hard limits (root may lack
    CAP_SYS_RESOURCE to raise them)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf, storage = tmp / "containers.conf", tmp / "storage.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
    )
    storage.write_text(
        f'[storage]\ndriver = "overlay"\nrunroot = "{tmp}/run"\ngraphroot = "{tmp}/graph"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} not installed: run ./scripts/setup"
    assert os.geteuid() == 0, "debootstrap and podman's networking need root here"
    tmp = tmp_path_factory.mktemp("podman")
    env = podman_env(tmp)
    base, tag = "localhost/edge-test-base:bookworm", f"localhost/edge-test:{uuid.uuid4().hex[:8]}"
    try:
        started = time.monotonic()
        made = run([str(CONTAINER / "debian-base"), base], env, 600)
        assert made.returncode == 0, made.stderr[-3000:]
        built = run([str(CONTAINER / "build-image"), "--base", base, "--tag", tag], env, 900)
        assert built.returncode == 0, built.stderr[-5000:]
        print(f"base and image built in {time.monotonic() - started:.0f} s")
        yield tag, env
    finally:
        run(["podman", "system", "reset", "--force"], env, 120)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(600)  # the module's image build (about 2 min) counts against this test
def test_image_serves_a_camera_and_stops_cleanly(
    image: tuple[str, dict[str, str]], assets: Path, tmp_path: Path
) -> None:
    tag, env = image
    events = tmp_path / "events"
    events.mkdir()
    os.chown(events, 10001, 10001)  # the image's edge user
    config = tmp_path / "cameras.yaml"
    with CameraSimulator(
        {"highway": assets / "video" / "traffic_highway_cctv.mp4"}, host="0.0.0.0"
    ) as sim:
        camera = {
            "id": "highway",
            "url": f"rtsp://host.containers.internal:{sim.port}/highway",
            "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}],
        }
        data = {
            "cameras": [camera],
            "server": {"host": "0.0.0.0", "port": 8080, "auth": "none"},
        }
        config.write_text(yaml.safe_dump(data))
        config.chmod(0o644)
        port, name = free_port(), f"edge-test-{uuid.uuid4().hex[:8]}"
        started = run(
            ["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
             "-v", f"{config}:/etc/edge/cameras.yaml:ro", "-v", f"{events}:/var/lib/edge/events",
             tag],
            env, 60,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _status(base + "/readyz") == 200 or not _running(name, env), 120, 0.5)
            assert _status(base + "/readyz") == 200, _logs(name, env)
            cams = json.loads(_get(base + "/api/cameras"))["cameras"]
            assert [(c["id"], c["state"]) for c in cams] == [("highway", "streaming")]
            wait_for(  # detections counted: the model runs inside the image
                lambda: metric_value(_get(base + "/metrics"), "edge_detections_total") > 0, 60, 0.5
            )
            text = _get(base + "/metrics")
            assert metric_value(text, "edge_frames_inferred_total", camera="highway") > 0
            health = run(["podman", "healthcheck", "run", name], env, 30)
            assert health.returncode == 0, health.stdout + health.stderr
            wait_for(lambda: events.joinpath("events.jsonl").stat().st_size > 0
                     if events.joinpath("events.jsonl").exists() else False, 60, 0.5)  # fmt: skip

            t0 = time.monotonic()
            stopped = run(["podman", "stop", "--time", "20", name], env, 60)
            took = time.monotonic() - t0
            assert stopped.returncode == 0, stopped.stderr
            state = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", name], env, 30)
            assert state.stdout.strip() == "0", _logs(name, env)  # not 137: SIGTERM ended it
            assert took < 15, took  # liveness: a clean stop takes a second or two
            logs = _logs(name, env)
            assert "shutting down" in logs and "Traceback" not in logs, logs[-3000:]
        finally:
            run(["podman", "rm", "--force", name], env, 60)
    text = events.joinpath("events.jsonl").read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines and all(json.loads(line)["camera"] == "highway" for line in lines)


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _running(name: str, env: dict[str, str]) -> bool:
    state = run(["podman", "inspect", "--format", "{{.State.Running}}", name], env, 30)
    return state.stdout.strip() == "true"


def _logs(name: str, env: dict[str, str]) -> str:
    out = run(["podman", "logs", name], env, 30)
    return out.stdout + out.stderr
