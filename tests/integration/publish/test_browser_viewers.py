"""A real Chromium watches the viewer page: live video per camera, shared encoders, refusals."""

from __future__ import annotations

import base64

import pytest
from playwright.async_api import Browser, Page

from edge.config import StreamConfig
from edge.publish.viewer_client import WebRtcViewer
from edge.publish.web import create_app
from edge.publish.webrtc import WebRtcGateway
from edge.testing import async_wait_for

from .conftest import (
    ARTIFACTS,
    EXPECTED_SIZE,
    FIRST_FRAME_LIVENESS_MS,
    Served,
    assert_live,
    decoded_share,
    frame_pixels,
    serving,
    viewer_stats,
    wait_decoding,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def rendered(served: Served, camera: str) -> float:
    return served.sample("edge_frames_rendered_total", camera=camera)


async def test_grid_page_plays_every_camera_at_configured_size(
    served: Served, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 700})
    try:
        await page.goto(served.base_url + "/")
        for camera in EXPECTED_SIZE:
            await wait_decoding(page, camera, frames=5)
        for camera, (w, h) in EXPECTED_SIZE.items():
            decoded, sent = await decoded_share(
                page, camera, lambda c=camera: rendered(served, c), 2.0
            )
            assert_live(decoded, sent, camera)
            stats = await viewer_stats(page, camera)
            assert (stats["frameWidth"], stats["frameHeight"]) == (w, h)
            assert (stats["videoWidth"], stats["videoHeight"]) == (w, h)
            assert stats["codec"] == "h264"
            assert stats["firstFrameMs"] < FIRST_FRAME_LIVENESS_MS, stats
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
        # One after another: the first starts the encoder, the next two join it running and get
        # a picture without waiting for the periodic keyframe (one is forced for them).
        for _ in range(3):
            pages.append(page := await browser.new_page())
            await page.goto(served.base_url + "/?camera=cam1")
            stats = await wait_decoding(page, "cam1", frames=5)
            assert (stats["frameWidth"], stats["frameHeight"]) == EXPECTED_SIZE["cam1"]
            assert stats["firstFrameMs"] < FIRST_FRAME_LIVENESS_MS, stats
        assert served.sample("edge_viewers", camera="cam1") == 3
        assert served.sample("edge_encoders_active", camera="cam1") == 1
        assert served.service.publishers["cam1"].encoder_count == 1
        assert served.sample("edge_encoders_active", camera="cam2") == 0  # nobody watches it
        for i, page in enumerate(pages):  # every viewer keeps decoding what the one encoder sends
            decoded, sent = await decoded_share(page, "cam1", lambda: rendered(served, "cam1"), 2.0)
            assert_live(decoded, sent, f"viewer {i}")
    finally:
        for page in pages:
            await page.close()
    await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam1") == 0, 5)


async def test_every_new_viewer_starts_from_a_keyframe(served: Served, browser: Browser) -> None:
    """Joining a camera nobody watches: its encoder starts, and the first frame is a keyframe.

    How fast is for bench/bench_viewers.py (offer → first frame); here only that it happens."""
    for _ in range(3):  # a fresh viewer each time, its encoder started for it and stopped after
        page = await browser.new_page()
        try:
            await page.goto(served.base_url + "/?camera=cam2")
            stats = await wait_decoding(page, "cam2")
            await async_wait_for(
                lambda p=page: p.evaluate("() => window.edge.viewers.cam2.firstFrameMs"), 5
            )
            stats = await viewer_stats(page, "cam2")
            assert stats["keyFramesDecoded"] >= 1
            assert stats["firstFrameMs"] < FIRST_FRAME_LIVENESS_MS, stats
        finally:
            await page.close()
        await async_wait_for(lambda: served.sample("edge_encoders_active", camera="cam2") == 0, 5)


async def test_refused_page_says_why_and_joins_when_a_slot_frees(
    served: Served, browser: Browser
) -> None:
    stream = StreamConfig(max_width=served.stream.max_width, max_viewers_per_camera=1)
    app = create_app(served.service, stream, gateway=WebRtcGateway(stream))
    async with serving(app) as base:
        holder = await WebRtcViewer(base, "cam2", local_address="127.0.0.2").connect()
        page = await browser.new_page()
        try:
            await holder.recv()
            await page.goto(base + "/?camera=cam2")
            note = page.locator(".tile[data-camera=cam2] .note")
            await async_wait_for(lambda: note.inner_text(), 10)
            text = await note.inner_text()
            assert "stream.max_viewers_per_camera = 1" in text and "503" in text, text
            await holder.close()  # the slot frees; the page retries after Retry-After
            stats = await wait_decoding(page, "cam2", frames=5, timeout=20)
            assert stats["framesDecoded"] >= 5
            assert await note.inner_text() == ""
        finally:
            await holder.close()
            await page.close()
    await async_wait_for(lambda: served.sample("edge_viewers", camera="cam2") == 0, 5)
