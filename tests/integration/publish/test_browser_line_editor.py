"""A real Chromium edits counting lines on the live video: it draws a line with two clicks, drags
an end of another, deletes a third and saves; the saved cameras.yaml keeps its comments and
`${VAR}`s, holds the lines at the source-pixel coordinates that were clicked (the video is shown
larger than it streams, and streams smaller than the camera), and passes `edge check`. A bad
save shows its error; the editor is absent when the config API is.

Counting on the new line needs the service's reload engine (edge run); these tests serve the
page with the passthrough service and a ConfigHost that reloads the file (conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from edge.config import ServerConfig, load_config
from edge.ingest.camsim import CameraSimulator
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import async_wait_for, run_edge

from .conftest import ARTIFACTS, FileConfigHost, Served, serving, to_screen, wait_decoding

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "s3cret-pw"  # the simulator's; the file names it ${CAM_PW}
SOURCE = {"cam1": (960, 540), "cam2": (320, 240)}
CONFIG = """\
# cameras of the line editor's test: this comment must survive the editor's save
cameras:
  - id: cam1   # the overpass clip: 960x540, streamed at 640x360
    name: Overpass
    url: {cam1}
    lines:  # hand-drawn
      - name: old
        points: [[100, 100], [300, 100]]
        directions: [toward, away]
      - name: gone
        points: [[50, 400], [500, 400]]
  - id: cam2
    url: {cam2}

server:
  host: 127.0.0.1   # loopback: the config API needs no token here
"""


@dataclass
class EditorSite:
    base_url: str
    path: Path
    host: FileConfigHost


@contextlib.asynccontextmanager
async def editor_site(
    served: Served, camsim: CameraSimulator, path: Path, token: str | None = None
) -> AsyncIterator[EditorSite]:
    urls = {c: camsim.url(c, "viewer", PASSWORD).replace(PASSWORD, "${CAM_PW}") for c in SOURCE}
    path.write_text(CONFIG.format(**urls))
    host = FileConfigHost(path)
    app = create_app(served.service, served.stream, ServerConfig(auth_token=token),
                     gateway=WebRtcGateway(served.stream), config_host=host)  # fmt: skip
    async with serving(app) as base_url:
        yield EditorSite(base_url, path, host)


@pytest_asyncio.fixture(loop_scope="module")
async def site(
    served: Served, camsim: CameraSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EditorSite]:
    monkeypatch.setenv("CAM_PW", PASSWORD)
    async with editor_site(served, camsim, tmp_path / "cameras.yaml") as site:
        yield site


@contextlib.asynccontextmanager
async def editing(
    browser: Browser, site: EditorSite, camera: str, query: str = ""
) -> AsyncIterator[Page]:
    """The camera's own page, its video playing and its line editor open; no script error."""
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{site.base_url}/?camera={camera}{query}")
        await wait_decoding(page, camera, frames=3)
        button = page.locator(f".tile[data-camera={camera}] .edit-lines")
        await async_wait_for(button.is_enabled, 10)
        await button.click()
        yield page
        assert errors == []
    finally:
        await page.close()


def near(points: object, expected: list[list[float]], tolerance: float = 2.0) -> bool:
    got = [list(p) for p in points]  # type: ignore[attr-defined]
    return all(
        abs(g - e) <= tolerance for gp, ep in zip(got, expected, strict=True)
        for g, e in zip(gp, ep, strict=True)
    )  # fmt: skip


async def editor_state(page: Page, camera: str) -> dict:
    return dict(await page.evaluate(
        "(id) => { const e = window.edge.editors[id];"
        " return {lines: e.lines, status: e.status, error: e.error, saving: e.saving}; }", camera,
    ))  # fmt: skip


async def test_draw_move_delete_and_save_lines(site: EditorSite, browser: Browser) -> None:
    cam = ".tile[data-camera=cam1]"
    async with editing(browser, site, "cam1") as page:
        stats = await page.evaluate("() => window.edge.viewers.cam1.stats()")
        assert (stats["videoWidth"], stats["videoHeight"]) == (640, 360)  # streamed smaller
        box = await page.locator(f"{cam} video").bounding_box()
        assert box is not None and box["width"] > 960  # and shown larger than the source
        rows = page.locator(f"{cam} .line-editor tbody tr")
        assert await rows.count() == 2
        # draw: "new line", then two clicks on the video
        await page.locator(f"{cam} .line-editor .add").click()
        await page.mouse.click(*await to_screen(page, "cam1", SOURCE["cam1"], 150, 300))
        await page.mouse.click(*await to_screen(page, "cam1", SOURCE["cam1"], 820, 310))
        assert await rows.count() == 3
        await rows.nth(2).locator("input.name").fill("drawn")
        await rows.nth(2).locator("input.dir0").fill("east")
        await rows.nth(2).locator("input.dir1").fill("west")
        # move: drag the second end of "old"
        handle = page.locator(f'{cam} .overlay g.line[data-name="old"] circle.handle').nth(1)
        await handle.hover()
        await page.mouse.down()
        await page.mouse.move(*await to_screen(page, "cam1", SOURCE["cam1"], 400, 150), steps=5)
        await page.mouse.up()
        # delete "gone"
        await rows.nth(1).locator("button.delete").click()
        state = await editor_state(page, "cam1")
        assert [line["name"] for line in state["lines"]] == ["old", "drawn"]
        assert near(state["lines"][1]["points"], [[150, 300], [820, 310]]), state
        assert near(state["lines"][0]["points"], [[100, 100], [400, 150]]), state
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "line_editor.png"))
        await page.locator(f"{cam} .line-editor .save").click()
        await async_wait_for(
            lambda: page.evaluate("() => window.edge.editors.cam1.status.startsWith('saved')"), 10
        )
        shown = await page.locator(f"{cam} .line-editor .status").inner_text()
        assert shown == "saved (applied)"

        # the file: the user's comments and ${CAM_PW} kept, the lines where they were clicked
        text = site.path.read_text()
        assert "# cameras of the line editor's test: this comment must survive" in text
        assert "  - id: cam1   # the overpass clip" in text and "lines:  # hand-drawn" in text
        assert "rtsp://viewer:${CAM_PW}@" in text and PASSWORD not in text
        lines = {line.name: line for line in load_config(site.path).cameras[0].lines}
        assert list(lines) == ["old", "drawn"]
        assert lines["drawn"].directions == ("east", "west")
        assert near(lines["drawn"].points, [[150, 300], [820, 310]])
        assert near(lines["old"].points, [[100, 100], [400, 150]])
        assert site.host.config.cameras[0].lines == list(lines.values())
        check = run_edge("check", site.path, env={"CAM_PW": PASSWORD})
        assert check.returncode == 0, check.stdout + check.stderr

        # a bad save says why and leaves the file alone
        await rows.nth(0).locator("input.name").fill("drawn")
        await page.locator(f"{cam} .line-editor .save").click()
        await async_wait_for(lambda: page.evaluate("() => !!window.edge.editors.cam1.error"), 10)
        error = await page.locator(f"{cam} .line-editor .status.error").inner_text()
        assert "duplicate line names: drawn" in error and "HTTP 400" in error, error
        assert site.path.read_text() == text


async def test_clicks_map_through_the_bars_of_a_narrower_picture(
    site: EditorSite, browser: Browser
) -> None:
    """cam2 is 4:3 in a 16:9 box: bars left and right; a click beyond the picture clamps."""
    async with editing(browser, site, "cam2") as page:
        await page.locator(".tile[data-camera=cam2] .line-editor .add").click()
        await page.mouse.click(*await to_screen(page, "cam2", SOURCE["cam2"], 40, 200))
        x, y = await to_screen(page, "cam2", SOURCE["cam2"], 300, 30)
        await page.mouse.click(x + 50, y)  # in the bar right of the picture
        state = await editor_state(page, "cam2")
        assert len(state["lines"]) == 1, state
        assert near(state["lines"][0]["points"], [[40, 200], [319, 30]], 1.5), state


async def test_no_editor_without_the_config_api(served: Served, browser: Browser) -> None:
    page = await browser.new_page()
    try:
        await page.goto(served.base_url + "/?camera=cam1")
        await wait_decoding(page, "cam1")
        assert await page.evaluate("() => Object.keys(window.edge.editors).length") == 0
        assert await page.locator(".edit-lines").count() == 0
    finally:
        await page.close()


async def test_the_editor_passes_the_token_on(
    served: Served,
    camsim: CameraSimulator,
    browser: Browser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAM_PW", PASSWORD)
    token = "editor-token-5678"
    async with editor_site(served, camsim, tmp_path / "cameras.yaml", token) as site:
        async with editing(browser, site, "cam1", f"&token={token}") as page:
            rows = page.locator(".tile[data-camera=cam1] .line-editor tbody tr")
            await rows.nth(0).locator("button.delete").click()
            await page.locator(".tile[data-camera=cam1] .line-editor .save").click()
            await async_wait_for(
                lambda: page.evaluate("() => window.edge.editors.cam1.status.startsWith('saved')"),
                10,
            )
        assert [line.name for line in load_config(site.path).cameras[0].lines] == ["gone"]
