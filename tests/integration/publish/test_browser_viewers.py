"""A real Chromium watches the viewer page: live video per camera, shared encoders, fast start."""

from __future__ import annotations

import base64

import pytest
from playwright.async_api import Browser, Page

from edge.testing import async_wait_for

from .conftest import (
    ARTIFACTS,
    EXPECTED_SIZE,
    MIN_LIVE_FPS,
    Served,
    decoded_fps,
    frame_pixels,
    viewer_stats,
    wait_decoding,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIRST_FRAME_LIMIT_MS = 1000.0
"""Product requirement: offer → first decoded frame under 1 s on loopback. The page measures from
*before* createOffer to the first frame handed to the compositor (requestVideoFrameCallback), so
the number includes candidate gathering, signalling, ICE/DTLS, the forced keyframe and decode;
typically 250–450 ms here, leaving > 2× margin on a loaded 2-core CI machine."""


async def test_grid_page_plays_every_camera_at_configured_size(
    served: Served, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 700})
    try:
        await page.goto(served.base_url + "/")
        for camera in EXPECTED_SIZE:
            await wait_decoding(page, camera, frames=5)
        first = {c: await viewer_stats(page, c) for c in EXPECTED_SIZE}
        fps = {c: await decoded_fps(page, c, 2.0) for c in EXPECTED_SIZE}
        for camera, (w, h) in EXPECTED_SIZE.items():
            stats = await viewer_stats(page, camera)
            assert stats["framesDecoded"] > first[camera]["framesDecoded"] + 5, camera
            assert fps[camera] > MIN_LIVE_FPS, (camera, fps)
            assert (stats["frameWidth"], stats["frameHeight"]) == (w, h)
            assert (stats["videoWidth"], stats["videoHeight"]) == (w, h)
            assert stats["codec"] == "h264"
            assert stats["firstFrameMs"] < FIRST_FRAME_LIMIT_MS, stats
        # the tiles show state and name; the status poll reaches the page
        await async_wait_for(lambda: page.locator(".tile .state.streaming").count(), 5)
        assert await page.locator(".tile").count() == 2
        assert "Overpass" in await page.locator(".tile[data-camera=cam1] .name").inner_text()
        await page.locator(".tile[data-camera=cam2]").click()  # click to enlarge
        assert "big" in (await page.locator(".tile[data-camera=cam2]").get_attribute("class"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "viewer_grid.png"))
        for camera in EXPECTED_SIZE:  # the decoded picture is the camera plus our header bar
            pixels = await frame_pixels(page, camera)
            png = base64.b64decode(pixels.pop("png").split(",", 1)[1])
            (ARTIFACTS / f"frame_{camera}.png").write_bytes(png)
            assert pixels["std"] > 20, (camera, pixels)  # a real scene, not a flat picture
            assert pixels["headerDark"] > 0.3 and pixels["headerBright"] > 0.05, (camera, pixels)
    finally:
        await page.close()
    # closing the tab (page's close beacon) frees the viewers and stops the encoders
    await async_wait_for(
        lambda: (
            served.sample("edge_viewers", camera="cam1") == 0
            and served.sample("edge_encoders_active", camera="cam1") == 0
        ),
        5,
    )


async def test_three_viewers_share_one_encoder(served: Served, browser: Browser) -> None:
    pages: list[Page] = []
    try:
        # One after another: the first starts the encoder, the next two join it running and must
        # still see a picture within the limit (a keyframe is forced for them, not waited for).
        # Each tab opens just before it is measured: on a 2-core machine, starting three renderer
        # processes at once delayed the first viewer's ICE/DTLS past the limit now and then.
        for _ in range(3):
            pages.append(page := await browser.new_page())
            await page.goto(served.base_url + "/?camera=cam1")
            stats = await wait_decoding(page, "cam1", frames=5)
            assert (stats["frameWidth"], stats["frameHeight"]) == EXPECTED_SIZE["cam1"]
            assert stats["firstFrameMs"] < FIRST_FRAME_LIMIT_MS, stats
        assert served.sample("edge_viewers", camera="cam1") == 3
        assert served.sample("edge_encoders_active", camera="cam1") == 1
        assert served.service.publishers["cam1"].encoder_count == 1
        assert served.sample("edge_encoders_active", camera="cam2") == 0  # nobody watches it
        for page in pages:  # every viewer keeps decoding
            assert await decoded_fps(page, "cam1", 1.0) > MIN_LIVE_FPS
    finally:
        for page in pages:
            await page.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam1") == 0, 5)


async def test_offer_to_first_frame_under_one_second(served: Served, browser: Browser) -> None:
    times = []
    for _ in range(3):  # a fresh viewer each time, joining a camera nobody else watches
        page = await browser.new_page()
        try:
            await page.goto(served.base_url + "/?camera=cam2")
            stats = await wait_decoding(page, "cam2")
            await async_wait_for(
                lambda p=page: p.evaluate("() => window.edge.viewers.cam2.firstFrameMs"), 5
            )
            times.append((await viewer_stats(page, "cam2"))["firstFrameMs"])
            assert stats["keyFramesDecoded"] >= 1
        finally:
            await page.close()
        await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)
    print(f"offer → first frame (ms): {[round(t) for t in times]}")
    assert max(times) < FIRST_FRAME_LIMIT_MS, times
