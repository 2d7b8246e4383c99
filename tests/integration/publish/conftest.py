"""Real pieces for the publish stage: RTSP simulator → CameraSource → web app → headless Chromium.

The service under `served` is `PassthroughService` (cameras straight to the publisher, no
detector) in the test's own process, so that tests can read its gateway and publishers; the
`edge run` tests (test_edge_run_viewer.py) repeat what must hold for the real service too.
Everything is module-scoped (one simulator, one server, one browser) to keep the suite fast.

Liveness, not speed: a viewer is live when it decodes a good share of the frames the server
rendered for it over a window (`decoded_share`), whatever the machine's speed; first-frame times
are bounded at ten times the typical, and measured by bench/bench_viewers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from edge.assets import REPO_ROOT
from edge.config import (
    CameraConfig,
    ConfigError,
    EdgeConfig,
    IngestConfig,
    StreamConfig,
    load_config,
)
from edge.config.reload import ReloadResult, ReloadTrigger
from edge.ingest.camsim import CameraSimulator
from edge.ingest.source import CameraSource
from edge.metrics import EdgeMetrics
from edge.publish.passthrough import PassthroughService
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import CHROMIUM, CHROMIUM_ARGS, async_wait_for, free_port

MAX_WIDTH = 640
# cam1: 960×540 @ 29.97 → published at 640×360; cam2: 320×240 @ 25 stays 320×240 (no upscaling)
CLIPS = {"cam1": "traffic_highway_overpass.mp4", "cam2": "traffic_highway_cctv.mp4"}
EXPECTED_SIZE = {"cam1": (640, 360), "cam2": (320, 240)}
ARTIFACTS = REPO_ROOT / "artifacts" / "publish"
LIVE_SHARE = 0.5
"""A viewer is live when it decodes at least this share of the frames rendered for it over a
window: typically all of them (a frame or two at the window's edges aside); a design that blocks
on a slow viewer, or restarts the stream, shows next to none."""
FIRST_FRAME_LIVENESS_MS = 5000.0
"""Offer → first decoded frame, as the page measures it: typically 0.3–0.6 s on loopback on 2
busy cores (bench/bench_viewers.py, BENCHMARKS.md); ten times that is a liveness bound only."""


@dataclass
class Served:
    base_url: str
    service: PassthroughService
    metrics: EdgeMetrics
    stream: StreamConfig
    gateway: WebRtcGateway

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def refused(self, reason: str) -> float:
        return self.sample("edge_viewers_refused_total", reason=reason)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port for the block; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


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
    gateway = WebRtcGateway(stream)
    try:
        async with serving(create_app(service, stream=stream, gateway=gateway)) as base_url:
            await async_wait_for(lambda: all(s.state == "streaming" for s in sources), 15)
            yield Served(base_url, service, metrics, stream, gateway)
    finally:
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


async def to_screen(
    page: object, camera: str, source: tuple[int, int], x: float, y: float
) -> tuple[float, float]:
    """Source pixels of a camera `source` (width, height) in size → page pixels, computed here on
    its own: the <video> box, the picture centred in it at the streamed aspect (object-fit:
    contain), scaled from the source size."""
    video = page.locator(f".tile[data-camera={camera}] video")  # type: ignore[attr-defined]
    box = await video.bounding_box()
    assert box is not None
    vw, vh = await video.evaluate("(v) => [v.videoWidth, v.videoHeight]")
    scale = min(box["width"] / vw, box["height"] / vh)
    w, h = vw * scale, vh * scale
    left, top = box["x"] + (box["width"] - w) / 2, box["y"] + (box["height"] - h) / 2
    return left + x / source[0] * w, top + y / source[1] * h


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


async def decoded_share(
    page: object, camera: str, rendered: Callable[[], float | Awaitable[float]], window_s: float
) -> tuple[int, int]:
    """(frames the page decoded, frames the server rendered for the camera) over one window.

    `rendered` reads `edge_frames_rendered_total{camera}`: one picture per frame each encoder
    took, so with one codec it is what every viewer of the camera was sent."""

    async def read() -> float:
        value = rendered()
        return float(await value) if asyncio.iscoroutine(value) else float(value)  # type: ignore[arg-type]

    before = (await viewer_stats(page, camera))["framesDecoded"], await read()
    await asyncio.sleep(window_s)
    after = (await viewer_stats(page, camera))["framesDecoded"], await read()
    return int(after[0] - before[0]), int(after[1] - before[1])


def assert_live(decoded: int, rendered: int, what: str) -> None:
    assert rendered > 0, f"{what}: nothing rendered in the window"
    assert decoded >= LIVE_SHARE * rendered, f"{what}: decoded {decoded} of {rendered} sent"


async def start_viewer_process(base_url: str, camera: str) -> tuple[subprocess.Popen[str], str]:
    """An aiortc viewer in its own process (frozen_viewer.py), connected; (process, session).

    Its own process, so that the test can freeze it (SIGSTOP) or make it vanish (SIGKILL)."""
    script = Path(__file__).with_name("frozen_viewer.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), base_url, camera], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    word, _, session = line.strip().partition(" ")
    assert word == "CONNECTED" and session, line
    return proc, session


class FileConfigHost:
    """A small real ConfigHost (edge/publish/service.py) for the config API's tests: it loads
    the file with `load_config` and keeps what it loaded; the service's reload engine does the
    same and then applies the difference to running cameras."""

    def __init__(self, path: Path | None, config: EdgeConfig | None = None) -> None:
        self.config_path = path
        self.config: EdgeConfig = config if config is not None else load_config(path)  # type: ignore[arg-type]
        self.last_reload: ReloadResult | None = None
        self.reloads: list[ReloadResult] = []

    async def reload_config(self, trigger: ReloadTrigger) -> ReloadResult:
        assert self.config_path is not None
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            result = ReloadResult("invalid", trigger, time.time(), errors=tuple(exc.problems))
        else:
            old = {c.id: c for c in self.config.cameras}
            changed = tuple(
                c.id for c in new.cameras if c.id in old and c.lines != old[c.id].lines
            )
            self.config = new
            result = ReloadResult(
                "applied" if changed else "unchanged", trigger, time.time(), lines_changed=changed
            )
        self.last_reload = result
        self.reloads.append(result)
        return result
