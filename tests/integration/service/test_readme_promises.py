"""What README.md promises about `edge run` and `edge demo` that no other test holds, each checked
on real processes: per-camera series at 0 from start-up, JSONL write errors counted as `io_error`
drops, webhook credentials kept out of everything readable, Ctrl-C (SIGINT) stopping the service
with every event flushed, and `edge demo` as a newcomer runs it.

The service runs on a real simulated RTSP camera (with credentials in its URL) beside one that
never answers; its JSONL sink writes to /dev/full (a disk that is always full) and its webhook is
a real aiohttp server in this process that refuses the first two deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from edge.ingest.camsim import CameraSimulator
from edge.testing import (
    ServiceProcess,
    descendants,
    free_port,
    metric_value,
    still_alive,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[3]
CAMERA_PW = "cam-pw-1414"
DEAD_PW = "dead-pw-1414"
HOOK_PW = "hook-pw-1414"
SECRETS = (CAMERA_PW, DEAD_PW, HOOK_PW)


class WebhookReceiver:
    """A real aiohttp server on its own thread and loop; answers 503 to the first `failures`."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.port = free_port()
        self.requests = 0
        self.events: list[dict] = []
        self.authorization: set[str | None] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "webhook receiver did not start"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.authorization.add(request.headers.get("Authorization"))
        if self.requests <= self.failures:
            return web.Response(status=503)
        self.events.extend(await request.json())
        return web.Response(status=204)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass
class Served:
    svc: ServiceProcess
    hook: WebhookReceiver
    first_scrape: str
    """/metrics as the first scraper sees it: right after /healthz first answers."""


@pytest.fixture(scope="module")
def served(
    assets: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("promises")
    hook = WebhookReceiver(failures=2)
    clip = assets / "video" / "traffic_highway_cctv.mp4"
    try:
        with CameraSimulator({"highway": clip}) as sim:
            port = free_port()
            config = {
                "cameras": [
                    {
                        "id": "highway",
                        "url": sim.url("highway", "viewer", CAMERA_PW),
                        "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}],
                    },
                    {"id": "dead", "url": f"rtsp://viewer:{DEAD_PW}@127.0.0.1:{free_port()}/x"},
                ],
                # the shipped batch-1 model, made dynamic on this first start (as on a new box)
                "detector": {"model": str(model_path), "prepared_dir": str(tmp / "models")},
                "ingest": {"read_timeout_s": 2, "open_timeout_s": 3, "backoff_max_s": 2},
                "events": {
                    "jsonl": "/dev/full",
                    "webhook": {"url": f"http://hook:{HOOK_PW}@127.0.0.1:{hook.port}/events"},
                },
                "server": {"host": "127.0.0.1", "port": port},
            }
            config_path = tmp / "cameras.yaml"
            config_path.write_text(yaml.safe_dump(config))
            svc = ServiceProcess(config_path, port, tmp / "edge-run.log")
            try:
                wait_for(
                    lambda: svc.status("/healthz") == 200 or svc.proc.poll() is not None, 60, 0.01
                )
                first = svc.text("/metrics")
                svc.wait_ready()
                yield Served(svc, hook, first)
            finally:
                svc.stop()
    finally:
        hook.close()


def per_camera_series(text: str, camera: str) -> dict[tuple[str, tuple], float]:
    """(sample name, its other labels) -> value of every series of `camera` in /metrics text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("camera") == camera:
                others = tuple(sorted((k, v) for k, v in s.labels.items() if k != "camera"))
                found[(s.name, others)] = float(s.value)
    return found


def get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as resp:
        return json.load(resp)


def test_per_camera_series_exist_at_zero_from_the_first_scrape(served: Served) -> None:
    wait_for(lambda: metric_value(served.svc.text("/metrics"), "edge_camera_reconnects_total",
                                  camera="dead") >= 1, 30)  # fmt: skip
    later = served.svc.text("/metrics")
    for camera in ("highway", "dead"):
        initial = per_camera_series(served.first_scrape, camera)
        missing = sorted(set(per_camera_series(later, "dead")) - set(initial))
        assert not missing, f"{camera}: not at the first scrape: {missing}"
        nonzero = {k: v for k, v in initial.items() if v and k[0] != "edge_camera_state"}
        assert not nonzero, nonzero


def test_a_camera_that_never_streamed_has_every_per_camera_series(served: Served) -> None:
    wait_for(lambda: metric_value(served.svc.text("/metrics"), "edge_frames_published_total",
                                  camera="highway") >= 10, 30)  # fmt: skip
    text = served.svc.text("/metrics")
    dead = per_camera_series(text, "dead")
    # every series the streaming camera has, but its lines' (the dead camera has none) and the
    # rate its source advertises (unknown until it answers)
    expected = {
        (name, labels)
        for name, labels in per_camera_series(text, "highway")
        if name != "edge_camera_source_fps" and "line" not in dict(labels)
    }
    assert sorted(expected - set(dead)) == []


def test_jsonl_write_errors_are_counted_as_io_error_drops(served: Served) -> None:
    svc = served.svc
    wait_for(lambda: len(served.hook.events) >= 1, 60, interval=0.2)
    text = svc.text("/metrics")
    assert metric_value(text, "edge_events_dropped_total", sink="jsonl", reason="io_error") >= 1
    assert metric_value(text, "edge_events_emitted_total", sink="jsonl") == 0
    assert metric_value(text, "edge_events_emitted_total", sink="webhook") >= 1
    assert re.search(r" ERROR .*events file /dev/full: .*No space left on device; \d+ events lost",
                     svc.log())  # fmt: skip
    assert "Traceback" not in svc.log()
    assert svc.status("/readyz") == 200  # a full disk costs the events file, not the service


def test_webhook_credentials_never_leave_the_process(served: Served) -> None:
    svc = served.svc
    wait_for(lambda: served.hook.requests > served.hook.failures, 60, interval=0.2)
    basic = "Basic " + base64.b64encode(f"hook:{HOOK_PW}".encode()).decode()
    assert served.hook.authorization == {basic}  # the credentials are used, as basic auth
    log = svc.log()
    assert "webhook http://hook:***@127.0.0.1" in log  # the refused deliveries, URL masked
    readable = log + svc.text("/metrics") + json.dumps(svc.get_json("/api/cameras"))
    for secret in SECRETS:
        assert secret not in readable


def test_sigint_stops_edge_run_cleanly_with_every_event_flushed(served: Served) -> None:
    """Ctrl-C: exit 0, each track's events complete, and every event either delivered (webhook)
    or counted as lost in the log (the full disk) — the same events to both sinks."""
    svc, hook = served.svc, served.hook
    wait_for(lambda: any(e["kind"] == "crossing" for e in hook.events), 60, interval=0.2)
    children = descendants(svc.proc.pid)
    svc.proc.send_signal(signal.SIGINT)
    assert svc.proc.wait(timeout=30) == 0, svc.log()[-3000:]
    assert svc.stop() == 0
    log = svc.log_path.read_text()
    assert "Traceback" not in log and "edge stopped" in log
    assert still_alive(children) == []
    ended = {(e["camera"], e["track_id"]) for e in hook.events if e["kind"] == "track_end"}
    crossed = {(e["camera"], e["track_id"]) for e in hook.events if e["kind"] == "crossing"}
    assert crossed and crossed <= ended  # tracks alive at Ctrl-C got their track_end too
    lost = sum(int(n) for n in re.findall(r"events file /dev/full: .*; (\d+) events lost", log))
    assert lost == len(hook.events)


def test_edge_demo_serves_the_shipped_cameras_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """`edge demo` with the shipped config, from a fresh folder (events and the prepared model
    land there): the printed URL serves all three simulated cameras; Ctrl-C ends everything."""
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "demo", "--config",
           str(REPO / "configs" / "cameras.yaml"), "--port", str(port)]  # fmt: skip
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: f"open {base}/ " in log_path.read_text() or proc.poll() is not None,
                 90, interval=0.2)  # fmt: skip
        assert proc.poll() is None, log_path.read_text()[-3000:]

        def all_streaming() -> bool:
            cams = get_json(base, "/api/cameras")["cameras"]
            return {c["id"]: c["state"] for c in cams} == dict.fromkeys(
                ("highway", "overpass", "parking"), "streaming"
            )

        wait_for(all_streaming, 60, interval=0.5)
        assert "edge" in urllib.request.urlopen(base + "/", timeout=5).read().decode()
        children = descendants(proc.pid)
        assert children, "the demo runs its camera simulator as a child process"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert still_alive(children) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # its port is free again
    assert "Traceback" not in log_path.read_text()
