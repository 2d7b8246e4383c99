"""Real pieces for the publish stage: RTSP simulator → CameraSource → web app → headless Chromium.

Until `edge run` exists, the service under test is `PassthroughService` (cameras straight to the
publisher, no detector); the lead will switch the `service` fixture to `edge run`.
Everything is module-scoped (one simulator, one server, one browser) to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from edge.assets import REPO_ROOT
from edge.config import CameraConfig, IngestConfig, StreamConfig
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app
from edge.testing import CHROMIUM, CHROMIUM_ARGS, async_wait_for, free_port

MAX_WIDTH = 640
# cam1: 960×540 @ 29.97 → published at 640×360; cam2: 320×240 @ 25 stays 320×240 (no upscaling)
CLIPS = {"cam1": "traffic_highway_overpass.mp4", "cam2": "traffic_highway_cctv.mp4"}
EXPECTED_SIZE = {"cam1": (640, 360), "cam2": (320, 240)}
ARTIFACTS = REPO_ROOT / "artifacts" / "publish"
MIN_LIVE_FPS = 5.0
"""A viewer counts as live above this decode rate: the passthrough service publishes at the
source rate (25–30 fps); `edge run` publishes at the detector's rate, ~7–15 fps on 2 busy cores."""


@dataclass
class Served:
    base_url: str
    service: PassthroughService
    metrics: EdgeMetrics
    stream: StreamConfig

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def camsim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({name: assets / "video" / clip for name, clip in CLIPS.items()}) as sim:
        yield sim


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(camsim: CameraSimulator) -> AsyncIterator[Served]:
    metrics = EdgeMetrics()
    stream = StreamConfig(max_width=MAX_WIDTH)
    sources = [
        CameraSource(
            CameraConfig(id=name, url=camsim.url(name, "viewer", "s3cret-pw")),
            IngestConfig(),
            metrics,
        )
        for name in CLIPS
    ]
    service = PassthroughService(sources, stream, metrics, names={"cam1": "Overpass"})
    for source in sources:
        await source.start()
    await service.start()
    app = create_app(service, stream=stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await async_wait_for(lambda: all(s.state == "streaming" for s in sources), 15)
        yield Served(f"http://127.0.0.1:{port}", service, metrics, stream)
    finally:
        await runner.cleanup()
        await service.stop()
        for source in sources:
            await source.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            with contextlib.suppress(Exception):
                await b.close()


async def viewer_stats(page: object, camera: str) -> dict:
    """getStats of one camera's video in a viewer page (framesDecoded, frame size, first frame)."""
    stats = await page.evaluate("async (id) => await window.edge.viewers[id].stats()", camera)  # type: ignore[attr-defined]
    return dict(stats)


async def wait_decoding(page: object, camera: str, frames: int = 1, timeout: float = 15) -> dict:
    async def enough() -> dict | None:
        stats = await viewer_stats(page, camera)
        return stats if stats["framesDecoded"] >= frames else None

    await async_wait_for(
        lambda: page.evaluate("() => !!(window.edge && window.edge.ready)"),
        timeout,  # type: ignore[attr-defined]
    )
    return await async_wait_for(enough, timeout)  # type: ignore[return-value]


FRAME_PIXELS_JS = """(id) => {
  const v = window.edge.viewers[id].video;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const luma = (x, y, w, h) => {
    const d = g.getImageData(x, y, w, h).data, out = [];
    for (let i = 0; i < d.length; i += 4) {
      out.push(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
    }
    return out;
  };
  const all = luma(0, 0, c.width, c.height);
  const mean = all.reduce((a, b) => a + b, 0) / all.length;
  const std = Math.sqrt(all.reduce((a, b) => a + (b - mean) ** 2, 0) / all.length);
  const header = luma(0, 0, 40, 12);
  return {
    std,
    headerDark: header.filter((y) => y < 50).length / header.length,
    headerBright: header.filter((y) => y > 180).length / header.length,
    png: c.toDataURL("image/png"),
  };
}"""


async def frame_pixels(page: object, camera: str) -> dict:
    """Luma statistics of the frame the video element shows (drawn to a canvas in the page)."""
    return dict(await page.evaluate(FRAME_PIXELS_JS, camera))  # type: ignore[attr-defined]


async def decoded_fps(page: object, camera: str, window_s: float) -> float:
    """Frames decoded per second over a window, measured by the browser itself."""
    before = await viewer_stats(page, camera)
    t0 = asyncio.get_running_loop().time()
    await asyncio.sleep(window_s)
    after = await viewer_stats(page, camera)
    dt = asyncio.get_running_loop().time() - t0
    return (after["framesDecoded"] - before["framesDecoded"]) / dt
