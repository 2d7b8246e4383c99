"""Live configuration seen from a real Chromium against the real `edge run` (detector, tracker,
reload engine) on simulated RTSP cameras.

- The line editor draws a line across the traffic of the CCTV clip with two clicks, names it and
  saves: the vehicles that cross it are counted on it from then on, and the saved cameras.yaml
  keeps its comments and passes `edge check`.
- One edit of the file adds, removes and changes cameras while the grid page plays: the page adds
  the new camera's tile (it plays), removes the removed one's (its connection closed), reconnects
  the restarted one, and the untouched cameras' tiles, connections and videos go on throughout.

Every camera plays traffic_highway_cctv.mp4 (320x240, 25 fps): cheap enough for four cameras
beside Chromium on two cores. Its right-hand carriageway crosses y=140 between x=120 and x=300
about once a second, going up the picture (tests/integration/track/test_counting_clips.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser
from ruamel.yaml import YAML

from edge.ingest.camsim import CameraSimulator
from edge.testing import ServiceProcess, async_wait_for, free_port, metric_value, run_edge

from .conftest import ARTIFACTS, to_screen, wait_decoding

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLIP = "traffic_highway_cctv.mp4"
SOURCE = (320, 240)
NAMES = ("highway", "parking", "removed", "changed", "added")
UNTOUCHED = ("highway", "parking")
LIVENESS_S = 30.0
"""Liveness only: a vehicle crosses the drawn line about once a second, a reload applies in well
under a second and a new camera plays within a few seconds here."""
STALL_LIVENESS_S = 4.0
"""The longest time the untouched camera's video may show no new frame: typically 0.4-0.7 s on two
busy cores, reload or not (ten times that is a liveness bound). That its tile, viewer and
connection are the very same objects after the reload is asserted on its own."""
CONFIG = """\
# live configuration test: this comment must survive the line editor's save
cameras:
  - id: highway   # watched throughout; the editor draws its line
    url: {highway}
  - id: parking
    url: {parking}
  - id: removed
    url: {removed}
  - id: changed   # its source changes: it restarts
    url: {changed}

detector:
  prepared_dir: {models}
  max_batch: 4
events:
  jsonl: {events}
server:
  host: 127.0.0.1   # loopback: the config API needs no token
  port: {port}
"""


@pytest.fixture(scope="module")
def sim(assets: Path) -> Iterator[CameraSimulator]:
    with CameraSimulator({n: assets / "video" / CLIP for n in NAMES}) as s:
        yield s


@pytest.fixture(scope="module")
def service(
    sim: CameraSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("live-config")
    port = free_port()
    path = tmp / "cameras.yaml"
    path.write_text(CONFIG.format(
        **{n: sim.url(n) for n in NAMES}, port=port,
        models=tmp_path_factory.getbasetemp() / "models", events=tmp / "events.jsonl",
    ))  # fmt: skip
    with ServiceProcess(path, port, tmp / "edge-run.log") as svc:
        yield svc


def cameras(svc: ServiceProcess) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in svc.get_json("/api/cameras")["cameras"]}


def on_line(camera: dict[str, Any], line: str) -> int:
    per_class = camera["counts"].get(line, {})
    return sum(n for dirs in per_class.values() for n in dirs.values())


async def test_a_line_drawn_in_the_page_counts_the_traffic(
    service: ServiceProcess, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    tile = ".tile[data-camera=highway]"
    try:
        await page.goto(f"{service.base}/?camera=highway")
        await wait_decoding(page, "highway", frames=3, timeout=LIVENESS_S)
        button = page.locator(f"{tile} .edit-lines")
        await async_wait_for(button.is_enabled, LIVENESS_S)  # once the frame size is known
        await button.click()
        await page.locator(f"{tile} .line-editor .add").click()
        await page.mouse.click(*await to_screen(page, "highway", SOURCE, 120, 140))
        await page.mouse.click(*await to_screen(page, "highway", SOURCE, 300, 140))
        row = page.locator(f"{tile} .line-editor tbody tr").nth(0)
        await row.locator("input.name").fill("north")
        await row.locator("input.dir0").fill("toward")
        await row.locator("input.dir1").fill("away")
        await page.locator(f"{tile} .line-editor .save").click()
        await async_wait_for(
            lambda: page.evaluate("() => window.edge.editors.highway.status.startsWith('saved')"),
            LIVENESS_S,
        )
        assert await page.locator(f"{tile} .line-editor .status").inner_text() == "saved (applied)"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "live_config_line_editor.png"))

        # vehicles going up the right-hand carriageway are counted on the new line ("away")
        async def counted() -> int:
            return on_line((await asyncio.to_thread(cameras, service))["highway"], "north")

        await async_wait_for(counted, LIVENESS_S, interval=0.5)
        highway = (await asyncio.to_thread(cameras, service))["highway"]
        assert sum(highway["counts"]["north"].get(c, {}).get("away", 0)
                   for c in highway["counts"]["north"]) >= 1, highway["counts"]  # fmt: skip
        metrics = await asyncio.to_thread(service.text, "/metrics")
        assert metric_value(metrics, "edge_line_crossings_total", line="north") >= 1
        assert errors == []
    finally:
        await page.close()

    text = service.config_path.read_text()
    assert "# live configuration test: this comment must survive the line editor's save" in text
    assert "  - id: highway   # watched throughout; the editor draws its line" in text
    assert "  host: 127.0.0.1   # loopback: the config API needs no token" in text
    assert "name: north" in text
    check = await asyncio.to_thread(run_edge, "check", service.config_path)
    assert check.returncode == 0, check.stdout + check.stderr


def save_edited(path: Path, sim: CameraSimulator) -> None:
    """As an editor saves (a new file renamed over the old one), comments kept: `removed` goes,
    `changed` gets a new source, `added` comes; `highway` and `parking` are left as
    they are."""
    yaml = YAML()
    data = yaml.load(path.read_text())
    cams = data["cameras"]
    cams[:] = [c for c in cams if c["id"] != "removed"]
    next(c for c in cams if c["id"] == "changed")["fps"] = 10
    cams.append({"id": "added", "url": sim.url("added")})
    out = StringIO()
    yaml.dump(data, out)
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(out.getvalue())
    os.replace(tmp, path)


WATCH_JS = """(ids) => {
  // each untouched camera: how long its video goes without a new frame, and what it is made of
  window.watch = {
    removedPc: window.edge.viewers.removed.pc, changedPc: window.edge.viewers.changed.pc,
    cams: {},
  };
  for (const id of ids) {
    const viewer = window.edge.viewers[id];
    const w = (window.watch.cams[id] = {
      viewer, pc: viewer.pc, stream: viewer.video.srcObject,
      tile: document.querySelector(`.tile[data-camera=${id}]`),
      frames: 0, last: performance.now(), longest: 0,
    });
    w.timer = setInterval(() => {
      const now = performance.now(), n = viewer.video.getVideoPlaybackQuality().totalVideoFrames;
      if (n !== w.frames) { w.frames = n; w.last = now; }
      w.longest = Math.max(w.longest, now - w.last);
    }, 20);
  }
}"""

TILES_JS = "(tiles) => tiles.map((t) => t.dataset.camera)"
UNTOUCHED_JS = """(id) => {
  const w = window.watch.cams[id], viewer = window.edge.viewers[id];
  return {
    frames: w.frames, longestMs: w.longest,
    sameViewer: viewer === w.viewer, samePc: viewer.pc === w.pc,
    sameStream: viewer.video.srcObject === w.stream,
    sameTile: document.querySelector(`.tile[data-camera=${id}]`) === w.tile,
    connection: w.pc.connectionState,
  };
}"""


async def test_the_page_follows_a_reload_and_the_untouched_camera_plays_on(
    service: ServiceProcess, sim: CameraSimulator, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    single = await browser.new_page(viewport={"width": 800, "height": 600})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await single.goto(f"{service.base}/?camera=highway")
        await page.goto(f"{service.base}/")
        for cam in ("highway", "parking", "removed", "changed"):
            await wait_decoding(page, cam, frames=3, timeout=LIVENESS_S)
        await wait_decoding(single, "highway", frames=3, timeout=LIVENESS_S)
        await page.evaluate(WATCH_JS, UNTOUCHED)
        await asyncio.to_thread(save_edited, service.config_path, sim)

        # the added camera gets a tile that plays; the removed one's goes, its connection closed
        await async_wait_for(lambda: page.evaluate("() => !!window.edge.viewers.added"), LIVENESS_S)
        await wait_decoding(page, "added", frames=3, timeout=LIVENESS_S)
        await async_wait_for(
            lambda: page.evaluate(
                "() => !window.edge.viewers.removed"
                " && !document.querySelector('.tile[data-camera=removed]')"
            ),
            LIVENESS_S,
        )
        assert await page.evaluate("() => window.watch.removedPc.connectionState") == "closed"
        # the restarted camera's viewer connects to its new stream
        await async_wait_for(
            lambda: page.evaluate(
                "async () => { const v = window.edge.viewers.changed;"
                " return v.pc !== window.watch.changedPc && (await v.stats()).framesDecoded > 0; }"
            ),
            LIVENESS_S,
        )
        # the untouched cameras went on throughout, and still do
        for cam in UNTOUCHED:
            frames = (await page.evaluate(UNTOUCHED_JS, cam))["frames"]
            await async_wait_for(
                lambda: page.evaluate("([id, n]) => window.watch.cams[id].frames >= n + 25",
                                      [cam, frames]),  # noqa: B023 (awaited in the loop)
                LIVENESS_S,
            )  # fmt: skip
        untouched = {cam: await page.evaluate(UNTOUCHED_JS, cam) for cam in UNTOUCHED}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "live_config_reload.png"))
        shown = await page.eval_on_selector_all(".tile", TILES_JS)
        assert shown == ["highway", "parking", "changed", "added"]
        # the config API answers: the added camera's tile has its line editor too
        assert await page.locator(".tile[data-camera=added] .edit-lines").count() == 1
        # a page opened on one camera keeps to it
        assert await single.eval_on_selector_all(".tile", TILES_JS) == ["highway"]
        assert errors == []
    finally:
        await page.close()
        await single.close()
    for cam, seen in untouched.items():
        assert seen["sameTile"] and seen["sameViewer"], (cam, seen)
        assert seen["samePc"] and seen["sameStream"], (cam, seen)
        assert seen["connection"] == "connected", (cam, seen)
        assert seen["longestMs"] < STALL_LIVENESS_S * 1000, (cam, seen)
    assert "started: added; stopped: removed; restarted: changed" in service.log()
