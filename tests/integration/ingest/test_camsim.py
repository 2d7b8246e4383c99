"""The camera simulator itself: `edge camsim` and `CameraSimulator`, read with plain PyAV."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote, urlsplit

import av
import pytest

from edge.ingest.camsim import CameraSimulator, SimulatorError
from edge.testing import descendants, wait_for

pytestmark = pytest.mark.timeout(60)

OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32", "timeout": "2000000"}


def read_frames(url: str, n: int) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    with av.open(url, options=OPTIONS, timeout=(5.0, 2.0)) as container:
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == n:
                break
    return frames


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_edge_camsim_prints_ready_serves_and_stops_on_sigterm(clips):
    cmd = [sys.executable, "-m", "edge.cli", "camsim", "--port", "0"]
    cmd += [f"hw={clips['highway']}", f"pk={clips['parking']}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "READY", line
        urls = dict(zip(("hw", "pk"), line[1:], strict=True))
        assert urls["hw"].endswith("/hw") and urls["pk"].endswith("/pk")
        frames = read_frames(urls["pk"], 5)
        assert (frames[0].width, frames[0].height) == (768, 432)
        port = urlsplit(urls["hw"]).port
        assert port is not None and port_open(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not port_open(port)  # the GStreamer server went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_edge_camsim_refuses_a_missing_file():
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "camsim", "--port", "0", "x=/nonexistent.mp4"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "nonexistent.mp4" in out.stderr


def test_simulator_restart_keeps_its_port_and_kill_frees_it(clips):
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        url, pid = sim.url("hw"), sim.pid
        assert len(read_frames(url, 3)) == 3
        sim.kill()
        assert not sim.running and not port_open(sim.port or 0)
        sim.restart()
        assert sim.url("hw") == url and sim.pid != pid
        assert len(read_frames(url, 3)) == 3
        assert sim.url("hw", "u", "p@ss").startswith("rtsp://u:p%40ss@127.0.0.1:")
    assert not sim.running


def test_paused_simulator_sends_nothing_until_resumed(clips):
    with CameraSimulator({"hw": clips["highway"]}) as sim:
        sim.pause()
        started = time.monotonic()
        with pytest.raises((av.error.ExitError, TimeoutError, av.error.InvalidDataError, OSError)):
            read_frames(sim.url("hw"), 1)
        assert time.monotonic() - started < 10
        sim.resume()
        assert len(read_frames(sim.url("hw"), 2)) == 2


def test_simulator_reports_a_server_that_cannot_start(clips):
    sim = CameraSimulator({"hw": clips["highway"]}, ready_timeout=20)
    sim.python = "/bin/false"
    started = time.monotonic()
    with pytest.raises(SimulatorError):
        sim.start()
    assert time.monotonic() - started < 10  # noticed the exit, did not sit out the timeout
    assert not sim.running


def test_simulator_server_exits_when_its_parent_goes(clips):
    code = (
        "import sys; from edge.ingest.camsim import CameraSimulator as C;"
        f"s = C({{'hw': {str(clips['highway'])!r}}}).start(); print(s.pid, flush=True);"
        "import os; os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    pid = int(out.stdout.split()[0])
    wait_for(lambda: not _alive(pid), 5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited already
        return f.read().split()[2] != "Z"


def test_edge_camsim_asks_for_the_credentials_from_its_environment(clips):
    """As a real camera: no password or a wrong one is a 401, the right one plays; the password
    is never on a command line (`ps`) nor in anything the command prints."""
    password = "cam:p@ss/1"
    cmd = [sys.executable, "-m", "edge.cli", "camsim", "--port", "0", f"hw={clips['highway']}"]
    env = {**os.environ, "EDGE_CAMSIM_CREDENTIALS": f"admin:{password}"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY", ready
        url = ready[1]
        for wrong in (url, url.replace("rtsp://", "rtsp://admin:nope-nope@")):
            with pytest.raises(av.error.HTTPUnauthorizedError):
                read_frames(wrong, 1)
        right = url.replace("rtsp://", f"rtsp://admin:{quote(password, safe='')}@")
        assert len(read_frames(right, 2)) == 2
        for pid in [*descendants(proc.pid), proc.pid]:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert password.encode() not in f.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert password not in out + err + " ".join(ready)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_edge_camsim_refuses_credentials_without_a_user(clips):
    env = {**os.environ, "EDGE_CAMSIM_CREDENTIALS": ":only-a-password"}
    cmd = [sys.executable, "-m", "edge.cli", "camsim", "--port", "0", f"hw={clips['highway']}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "edge camsim: EDGE_CAMSIM_CREDENTIALS: credentials: need a user without ':' and a password"
    )
