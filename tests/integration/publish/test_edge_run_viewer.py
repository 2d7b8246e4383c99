"""The real `edge run` (detector, tracker, counting lines) behind a token, watched by Chromium.

The other tests here drive the publish stage through `PassthroughService` (no model) in the
test's process; these repeat against the real service what must hold there too: the picture is
the annotated one (boxes in class colours, the counting line, the header), the token guards the
API, the metrics and signalling, and viewers of one camera share one encoder. The service listens
on 0.0.0.0, which its token allows (test_edge_run_exposure.py has the refusals).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Browser, Page
from prometheus_client.parser import text_string_to_metric_families

from edge.ingest.camsim import CameraSimulator
from edge.publish.annotate import CLASS_COLOURS
from edge.publish.viewer_client import SignallingError, WebRtcViewer
from edge.testing import ServiceProcess, async_wait_for, free_port

from .conftest import (
    ARTIFACTS,
    EXPECTED_SIZE,
    FIRST_FRAME_LIVENESS_MS,
    assert_live,
    decoded_share,
    viewer_stats,
    wait_decoding,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "edge-run-test-token"


def sample(service: ServiceProcess, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(service.text(f"/metrics?token={TOKEN}")):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def async_sample(service: ServiceProcess, name: str, **labels: str) -> float:
    return await asyncio.to_thread(sample, service, name, **labels)


def rendered(service: ServiceProcess, camera: str) -> Any:
    return lambda: async_sample(service, "edge_frames_rendered_total", camera=camera)


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


CLASS_PIXELS_JS = """([id, colours]) => {
  const v = window.edge.viewers[id].video;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const counts = {};
  for (const [name, [r, gr, b]] of Object.entries(colours)) {
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - gr) + Math.abs(d[i + 2] - b) < 60) n++;
    }
    counts[name] = n;
  }
  return { counts, png: c.toDataURL("image/png") };
}"""


@pytest.fixture(scope="module")
def edge_run(
    camsim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("edge-run-viewer")
    port = free_port()
    config: dict[str, Any] = {
        "cameras": [
            {
                "id": "cam1",
                "url": camsim.url("cam1"),
                "lines": [{"name": "all-lanes", "points": [[0, 330], [960, 330]]}],
            },
            {
                "id": "cam2",
                "url": camsim.url("cam2"),
                "lines": [{"name": "carriageway", "points": [[0, 150], [320, 150]]}],
            },
        ],
        "detector": {"prepared_dir": str(tmp / "models"), "max_batch": 2},
        "events": {"jsonl": str(tmp / "events.jsonl")},
        "stream": {"max_width": 640},
        "server": {"host": "0.0.0.0", "port": port, "auth_token": TOKEN},
    }
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    service = ServiceProcess(path, port, tmp / "edge-run.log")
    try:
        service.wait_ready(90)
        yield service
    finally:
        service.stop()


async def test_edge_run_page_shows_annotated_vehicles(
    edge_run: ServiceProcess, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 500})
    try:
        await page.goto(f"{edge_run.base}/?token={TOKEN}")
        for camera, (w, h) in EXPECTED_SIZE.items():
            stats = await wait_decoding(page, camera, frames=5, timeout=30)
            assert (stats["frameWidth"], stats["frameHeight"]) == (w, h)
            assert_live(*await decoded_share(page, camera, rendered(edge_run, camera), 3.0), camera)
        # the CCTV clip has ~8 vehicles per frame: once tracks confirm, labels in class colours
        colours = {name: list(reversed(bgr)) for name, bgr in CLASS_COLOURS.items()}

        async def vehicle_pixels() -> dict[str, Any] | None:
            found = await page.evaluate(CLASS_PIXELS_JS, ["cam2", colours])
            vehicles = sum(found["counts"][c] for c in ("car", "truck", "bus", "motorcycle"))
            return found if vehicles > 150 else None

        found = await async_wait_for(vehicle_pixels, 20, interval=0.5)
        assert isinstance(found, dict)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = base64.b64decode(found["png"].split(",", 1)[1])
        (ARTIFACTS / "edge_run_frame_cam2.png").write_bytes(png)
        await page.screenshot(path=str(ARTIFACTS / "edge_run_grid.png"))
        assert (await viewer_stats(page, "cam1"))["framesDecoded"] > 0
        assert await async_sample(edge_run, "edge_encoders_active", camera="cam2") == 1
    finally:
        await page.close()


async def test_edge_run_token_guards_api_metrics_and_signalling(
    edge_run: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    base = edge_run.base
    for path in ("/api/cameras", "/metrics", "/api/webrtc/config"):
        async with http.get(base + path) as resp:
            assert resp.status == 401, path
            assert TOKEN not in await resp.text()
        async with http.get(base + path, headers={"Authorization": "Bearer wrong-token"}) as r:
            assert r.status == 401, path
        async with http.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, path
        async with http.get(f"{base}{path}?token={TOKEN}") as resp:
            assert resp.status == 200, path
    for open_path in ("/", "/healthz", "/readyz", "/static/app.js"):
        async with http.get(base + open_path) as resp:
            assert resp.status == 200, open_path
    with pytest.raises(SignallingError) as refused:
        await WebRtcViewer(base, "cam2").connect()
    assert refused.value.status == 401
    viewer = await WebRtcViewer(base, "cam2", token=TOKEN).connect()
    try:
        frame = await viewer.recv(30)
        assert (frame.width, frame.height) == EXPECTED_SIZE["cam2"]
    finally:
        await viewer.close()
    assert TOKEN not in edge_run.log()


async def test_edge_run_three_viewers_share_one_encoder(
    edge_run: ServiceProcess, browser: Browser
) -> None:
    pages: list[Page] = []
    try:
        for _ in range(3):  # one after another: the second and third join a running encoder
            pages.append(page := await browser.new_page())
            await page.goto(f"{edge_run.base}/?camera=cam1&token={TOKEN}")
            stats = await wait_decoding(page, "cam1", frames=5, timeout=30)
            assert (stats["frameWidth"], stats["frameHeight"]) == EXPECTED_SIZE["cam1"]
            assert stats["firstFrameMs"] < FIRST_FRAME_LIVENESS_MS, stats
        assert await async_sample(edge_run, "edge_viewers", camera="cam1") == 3
        assert await async_sample(edge_run, "edge_encoders_active", camera="cam1") == 1
        for i, page in enumerate(pages):
            assert_live(*await decoded_share(page, "cam1", rendered(edge_run, "cam1"), 3.0), str(i))
    finally:
        for page in pages:
            await page.close()

    async def stopped() -> bool:
        viewers = await async_sample(edge_run, "edge_viewers", camera="cam1")
        return (
            viewers == 0
            and await async_sample(edge_run, "edge_encoders_active", camera="cam1") == 0
        )

    await async_wait_for(stopped, 10)
