"""Viewers that stop reading cost the others nothing: not FPS, not a second encoder."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser

from edge.testing import async_wait_for

from .conftest import MIN_LIVE_FPS, Served, decoded_fps, wait_decoding

pytestmark = pytest.mark.asyncio(loop_scope="module")

WINDOW_S = 3.0
MIN_FPS_RATIO = 0.85
"""The browser's decode rate with stalled viewers present, relative to before. At 29.97 fps a 3 s
window counts ~90 frames, so one late frame at either edge is ~1 %; the rest of the margin
absorbs CPU noise on a 2-core CI box. A design that blocks on a slow viewer drops to ~0."""


async def _start_frozen_viewer(base_url: str, camera: str) -> subprocess.Popen[str]:
    script = Path(__file__).with_name("frozen_viewer.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), base_url, camera], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
    assert line.strip() == "CONNECTED", line
    os.kill(proc.pid, signal.SIGSTOP)  # frozen: its socket fills up, it answers nothing
    return proc


async def test_stalled_viewers_do_not_change_another_viewers_fps(
    served: Served, browser: Browser
) -> None:
    page = await browser.new_page()
    frozen: subprocess.Popen[str] | None = None
    publisher = served.service.publishers["cam1"]
    stuck = publisher.attach("h264")
    try:
        await page.goto(served.base_url + "/?camera=cam1")
        await wait_decoding(page, "cam1", frames=10)
        before = await decoded_fps(page, "cam1", WINDOW_S)

        # 1. a viewer process that connected over WebRTC, then froze (SIGSTOP)
        frozen = await _start_frozen_viewer(served.base_url, "cam1")
        # 2. a viewer whose send path stopped taking packets after the first one
        await asyncio.wait_for(stuck.recv(), 10)
        drops_at_start = served.sample(
            "edge_frames_dropped_total", camera="cam1", reason="viewer_slow"
        )
        await async_wait_for(lambda: stuck.packets_dropped > 30, 10)

        during = await decoded_fps(page, "cam1", WINDOW_S)
        assert served.sample("edge_viewers", camera="cam1") == 3
        assert served.sample("edge_encoders_active", camera="cam1") == 1
        assert stuck.queued <= 15  # its queue stays bounded
        drops = served.sample("edge_frames_dropped_total", camera="cam1", reason="viewer_slow")
        assert drops - drops_at_start >= 30
        print(f"browser fps before {before:.1f}, with stalled viewers {during:.1f}")
        assert before > MIN_LIVE_FPS
        assert during >= MIN_FPS_RATIO * before, (before, during)
    finally:
        stuck.stop()
        if frozen is not None:
            frozen.kill()
            frozen.wait(5)
        await page.close()
