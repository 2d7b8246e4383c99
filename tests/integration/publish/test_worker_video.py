"""Live video of a camera that runs in a worker process (`ingest.processes: 1`), on `edge run`.

The worker annotates and encodes (H.264, and VP8 for a viewer without H.264, each once); the
service only fans the packets out. aiortc viewers decode the annotated picture; a viewer that
joins late gets a picture at once although keyframes come only every 10 s on their own (its
keyframe request reached the worker); a kill -9 of the worker costs the viewer a pause, not its
video: pictures resume after the restart, in aiortc and in Chromium.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from playwright.async_api import Browser

from edge.ingest.camsim import CameraSimulator
from edge.publish.viewer_client import ThreadedViewer, WebRtcViewer
from edge.testing import ServiceProcess, async_wait_for, free_port, metric_value, wait_for

from ..service.conftest import write_config
from .conftest import viewer_stats, wait_decoding

CLIPS = {"highway": "traffic_highway_cctv.mp4", "parking": "car-detection.mp4"}
LIVENESS_S = 60.0
KEYFRAME_LIVENESS_S = 4.0
"""A joining viewer's first picture, typically well under half a second; the periodic keyframes
come every 10 s here, so only a forwarded request makes it this fast."""
LINE_Y = 150


@pytest.fixture(scope="module")
def sim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / c for n, c in CLIPS.items()}) as s:
        yield s


@pytest.fixture(scope="module")
def service(
    sim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("worker-video")
    port = free_port()
    cameras = [
        {"id": "highway", "url": sim.url("highway"), "name": "Highway North",
         "lines": [{"name": "carriageway", "points": [[0, LINE_Y], [320, LINE_Y]]}]},
        {"id": "parking", "url": sim.url("parking")},
    ]  # fmt: skip
    path = write_config(tmp, cameras, port, processes=1)
    config = yaml.safe_load(path.read_text())
    config["stream"] = {"keyframe_interval_s": 10}
    path.write_text(yaml.safe_dump(config))
    with ServiceProcess(path, port, tmp / "edge-run.log") as svc:
        yield svc


def metric(svc: ServiceProcess, name: str, **labels: str) -> float:
    return metric_value(svc.text("/metrics"), name, **labels)


def worker_pids(svc: ServiceProcess) -> list[int]:
    return [int(p) for p in re.findall(r"worker 0 \(pid (\d+)\): cameras", svc.log())]


async def _two_codecs(svc: ServiceProcess) -> tuple[np.ndarray, np.ndarray]:
    h264 = await WebRtcViewer(svc.base, "highway", codec="H264").connect()
    vp8 = await WebRtcViewer(svc.base, "highway", codec="VP8").connect()
    try:
        pictures = []
        for viewer in (h264, vp8):
            for _ in range(3):  # past the first picture, which may predate the line's drawing
                frame = await viewer.recv(timeout=LIVENESS_S)
            pictures.append(frame.to_ndarray(format="rgb24"))
        wait_for(lambda: metric(svc, "edge_encoders_active", camera="highway") == 2, LIVENESS_S)
        return pictures[0], pictures[1]
    finally:
        await h264.close()
        await vp8.close()


def _line_share(rgb: np.ndarray) -> float:
    """The share of the counting line's row drawn in its colour (yellow)."""
    band = rgb[LINE_Y - 3 : LINE_Y + 4].astype(int)
    yellow = (band[..., 0] > 180) & (band[..., 1] > 180) & (band[..., 2] < 110)
    return float(yellow.any(axis=0).mean())


def test_the_worker_encodes_annotated_video_for_both_codecs(service: ServiceProcess) -> None:
    wait_for(lambda: metric(service, "edge_frames_inferred_total", camera="highway") > 0,
             LIVENESS_S)  # fmt: skip
    h264, vp8 = asyncio.run(_two_codecs(service))
    for rgb in (h264, vp8):
        assert rgb.shape[1] == 320
        assert _line_share(rgb) > 0.8, _line_share(rgb)  # the counting line is drawn
        header = rgb[2:12, 2:100].astype(int).sum(axis=2)
        assert (header < 60).mean() > 0.3 and (header > 600).any()  # black bar, white text
    log = service.log()
    for codec in ("h264", "vp8"):  # encoded in the worker, not in the service's process
        assert re.search(rf"\[worker 0\] camera highway: {codec} encoder started", log), log[-3000:]
        assert not re.search(rf"edge\.publish\.encoder: camera highway: {codec}", log)
    wait_for(lambda: metric(service, "edge_encoders_active", camera="highway") == 0, LIVENESS_S)
    assert metric(service, "edge_frames_rendered_total", camera="highway") >= 3
    assert metric(service, "edge_stage_seconds_count", camera="highway", stage="encode") >= 3
    assert metric(service, "edge_video_latency_seconds_count", camera="highway") >= 3
    assert metric(service, "edge_frames_rendered_total", camera="parking") == 0


def test_a_joining_viewer_gets_a_keyframe_from_the_worker(service: ServiceProcess) -> None:
    first = ThreadedViewer(service.base, "highway")
    second: ThreadedViewer | None = None
    try:
        wait_for(lambda: first.frames >= 30, LIVENESS_S)  # past the encoder's first keyframe
        started = time.monotonic()
        second = ThreadedViewer(service.base, "highway")
        wait_for(lambda: second is not None and second.frames >= 1, LIVENESS_S)
        took = time.monotonic() - started
        print(f"a joining viewer's first picture after {took:.2f} s")
        assert took < KEYFRAME_LIVENESS_S
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_fault_kill_9_of_the_worker_pauses_the_viewer(service: ServiceProcess) -> None:
    viewer = ThreadedViewer(service.base, "highway")
    try:
        wait_for(lambda: viewer.frames >= 10, LIVENESS_S)
        pid = worker_pids(service)[-1]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: worker_pids(service)[-1] != pid, LIVENESS_S)
        resumed_from = viewer.frames
        wait_for(lambda: viewer.frames >= resumed_from + 25, LIVENESS_S)
        assert viewer.running and viewer.error is None
        # The dead worker's encoder is not counted on: one runs, the new worker's.
        wait_for(lambda: metric(service, "edge_encoders_active", camera="highway") == 1,
                 LIVENESS_S)  # fmt: skip
    finally:
        viewer.stop()


@pytest.mark.asyncio(loop_scope="module")
async def test_fault_kill_9_of_the_worker_pauses_chromium(
    service: ServiceProcess, browser: Browser
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(f"{service.base}/?camera=highway")
        await wait_decoding(page, "highway", frames=10, timeout=LIVENESS_S)
        pid = worker_pids(service)[-1]
        os.kill(pid, signal.SIGKILL)
        await async_wait_for(lambda: worker_pids(service)[-1] != pid, LIVENESS_S)
        resumed_from = (await viewer_stats(page, "highway"))["framesDecoded"]

        async def resumed() -> bool:
            return bool((await viewer_stats(page, "highway"))["framesDecoded"] >= resumed_from + 25)

        await async_wait_for(resumed, LIVENESS_S)
    finally:
        await page.close()
