"""Viewers that stop reading cost the others nothing: not frames, not a second encoder."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest
from playwright.async_api import Browser

from edge.testing import async_wait_for

from .conftest import Served, assert_live, decoded_share, start_viewer_process, wait_decoding

pytestmark = pytest.mark.asyncio(loop_scope="module")

WINDOW_S = 3.0


async def test_stalled_viewers_do_not_change_another_viewers_frames(
    served: Served, browser: Browser
) -> None:
    """The browser decodes what the encoder sends while two other viewers have stopped reading.

    Compared with what was sent, not with a frame rate: on a loaded machine both slow down
    together; a design that waits for the slowest viewer leaves the browser with next to none."""
    page = await browser.new_page()
    frozen: subprocess.Popen[str] | None = None
    publisher = served.service.publishers["cam1"]
    stuck = publisher.attach("h264")

    def rendered() -> float:
        return served.sample("edge_frames_rendered_total", camera="cam1")

    try:
        await page.goto(served.base_url + "/?camera=cam1")
        await wait_decoding(page, "cam1", frames=10)
        assert_live(*await decoded_share(page, "cam1", rendered, WINDOW_S), "before")

        # 1. a viewer process that connected over WebRTC, then froze (SIGSTOP)
        frozen, _ = await start_viewer_process(served.base_url, "cam1")
        os.kill(frozen.pid, signal.SIGSTOP)  # its socket fills up, it answers nothing
        # 2. a viewer whose send path stopped taking packets after the first one
        await asyncio.wait_for(stuck.recv(), 10)
        drops_at_start = served.sample(
            "edge_frames_dropped_total", camera="cam1", reason="viewer_slow"
        )
        await async_wait_for(lambda: stuck.packets_dropped > 30, 10)

        decoded, sent = await decoded_share(page, "cam1", rendered, WINDOW_S)
        print(f"browser decoded {decoded} of {sent} frames sent, beside two stalled viewers")
        assert_live(decoded, sent, "with stalled viewers")
        assert served.sample("edge_viewers", camera="cam1") == 3
        assert served.sample("edge_encoders_active", camera="cam1") == 1
        assert stuck.queued <= 15  # its queue stays bounded
        drops = served.sample("edge_frames_dropped_total", camera="cam1", reason="viewer_slow")
        assert drops - drops_at_start >= 30
    finally:
        stuck.stop()
        if frozen is not None:
            frozen.kill()
            frozen.wait(5)
        await page.close()
