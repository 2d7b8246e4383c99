"""The viewer page served by the real `edge run` (detector, tracker, counting lines): boxes drawn.

The other tests here drive the publish stage through `PassthroughService` (no model) so that they
are fast and can assert source-rate FPS; this one checks that what the full service sends is the
annotated picture: boxes in class colours around vehicles, the counting line and the header.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from playwright.async_api import Browser

from edge.ingest.camsim import CameraSimulator
from edge.publish.annotate import CLASS_COLOURS
from edge.testing import ServiceProcess, async_wait_for, free_port

from .conftest import (
    ARTIFACTS,
    EXPECTED_SIZE,
    MIN_LIVE_FPS,
    decoded_fps,
    viewer_stats,
    wait_decoding,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

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
        "server": {"host": "127.0.0.1", "port": port},
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
        await page.goto(edge_run.base + "/")
        for camera, (w, h) in EXPECTED_SIZE.items():
            stats = await wait_decoding(page, camera, frames=5, timeout=30)
            assert (stats["frameWidth"], stats["frameHeight"]) == (w, h)
            assert await decoded_fps(page, camera, 2.0) > MIN_LIVE_FPS / 2
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
        metrics = edge_run.text("/metrics")
        assert 'edge_encoders_active{camera="cam2"} 1.0' in metrics
    finally:
        await page.close()
