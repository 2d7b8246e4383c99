"""The aiortc viewer's receive loop: it must stop when cancelled, whatever the track does."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamTrack

from edge.publish.viewer_client import WebRtcViewer


class ReadyTrack(MediaStreamTrack):
    """A track whose next frame is always ready, so that a cancel lands as `recv` completes."""

    kind = "video"

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0)
        return av.VideoFrame(16, 16, "yuv420p")


@pytest.mark.asyncio
async def test_receive_stops_when_cancelled_while_a_frame_arrives() -> None:
    viewer = WebRtcViewer("http://unused", "cam1")
    try:
        viewer._on_track(ReadyTrack())  # noqa: SLF001 - what aiortc calls on a remote track
        for attempt in range(50):
            watching = asyncio.ensure_future(viewer.receive(lambda: False))
            for _ in range(attempt % 7 + 1):
                await asyncio.sleep(0)
            watching.cancel()
            done, _ = await asyncio.wait([watching], timeout=2)
            assert done, f"receive swallowed its cancel (attempt {attempt})"
            assert watching.cancelled()
        assert viewer.frames > 0
    finally:
        await viewer.close()
