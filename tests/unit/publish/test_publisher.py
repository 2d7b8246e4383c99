"""CameraPublisher: no work while unwatched, one encoder per codec however many viewers."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics
from edge.publish.annotate import Overlay
from edge.publish.encoder import CameraEncoder
from edge.publish.publisher import CameraPublisher
from edge.testing import async_wait_for
from edge.testing import metric_value as sample
from edge.types import Detections, Frame


def _frame(seq: int, w: int = 768, h: int = 432) -> Frame:
    bgr = np.full((h, w, 3), 90, np.uint8)
    image = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
    return Frame("cam", seq, seq / 25, time.monotonic(), image)


async def test_unwatched_camera_does_no_work() -> None:
    metrics = EdgeMetrics()
    pub = CameraPublisher("cam", StreamConfig(), metrics)
    for i in range(5):
        pub.publish(_frame(i), Detections.empty(), Overlay("cam"))
    assert not pub.is_watched
    assert sample(metrics, "edge_frames_rendered_total", camera="cam") == 0
    assert sample(metrics, "edge_encoders_active", camera="cam") == 0


async def test_viewers_share_one_encoder_that_stops_with_the_last() -> None:
    metrics = EdgeMetrics()
    pub = CameraPublisher("cam", StreamConfig(max_width=640), metrics)
    tracks = [pub.attach("h264") for _ in range(3)]
    assert pub.encoder_count == 1
    assert sample(metrics, "edge_encoders_active", camera="cam") == 1
    assert sample(metrics, "edge_viewers", camera="cam") == 3
    reads = [asyncio.ensure_future(t.recv()) for t in tracks]
    await asyncio.sleep(0)
    for i in range(3):
        pub.publish(_frame(i), Detections.empty(), Overlay("cam"))
        await asyncio.sleep(0.05)
    packets = await asyncio.wait_for(asyncio.gather(*reads), 5)
    for stage in ("annotation", "encode", "send"):
        assert sample(metrics, "edge_stage_seconds_count", camera="cam", stage=stage) >= 1, stage
    assert sample(metrics, "edge_frames_rendered_total", camera="cam") >= 1
    assert sample(metrics, "edge_video_latency_seconds_count", camera="cam") >= 1
    assert sample(metrics, "edge_frames_published_total", camera="cam") == 0  # the app's count
    assert all(p is packets[0] for p in packets)  # the very same encoded packet for everyone
    assert packets[0].is_keyframe
    decoded = av.CodecContext.create("h264", "r").decode(av.Packet(bytes(packets[0])))
    assert (decoded[0].width, decoded[0].height) == (640, 360)  # capped at max_width
    encoder = pub.encoder("h264")
    assert encoder is not None
    for t in tracks:
        t.stop()
    assert pub.encoder_count == 0
    assert sample(metrics, "edge_viewers", camera="cam") == 0
    await async_wait_for(lambda: not encoder.is_running, 5)
    assert sample(metrics, "edge_encoders_active", camera="cam") == 0
    await pub.aclose()


async def test_two_codecs_render_each_frame_once() -> None:
    metrics = EdgeMetrics()
    pub = CameraPublisher("cam", StreamConfig(), metrics)
    h264, vp8 = pub.attach("h264"), pub.attach("vp8")
    assert pub.encoder_count == 2
    assert sample(metrics, "edge_encoders_active", camera="cam") == 2
    reads = [asyncio.ensure_future(t.recv()) for t in (h264, vp8)]
    await asyncio.sleep(0)
    pub.publish(_frame(0, 320, 240), Detections.empty(), Overlay("cam"))
    await asyncio.wait_for(asyncio.gather(*reads), 5)
    assert sample(metrics, "edge_frames_rendered_total", camera="cam") == 1
    await pub.aclose()
    assert pub.encoder_count == 0
    assert sample(metrics, "edge_encoders_active", camera="cam") == 0


async def test_packets_encoded_elsewhere_keep_increasing_time_across_a_restart() -> None:
    """`deliver` (a worker's packets): every viewer gets them; a restarted worker's encoder counts
    from 0 again, and its viewers still see time go on."""
    stream = StreamConfig(keyframe_interval_s=10)
    encoder = CameraEncoder("cam", "h264", stream, lambda p: None, EdgeMetrics())
    yuv = np.full((240 * 3 // 2, 320), 100, np.uint8)
    first = [p for i in range(3) for p in encoder.encode(yuv, i / 25)]
    restarted = CameraEncoder("cam", "h264", stream, lambda p: None, EdgeMetrics())
    second = [p for i in range(2) for p in restarted.encode(yuv, 7 + i / 25)]
    assert second[0].pts == 0 < first[-1].pts
    pub = CameraPublisher("cam", StreamConfig(), EdgeMetrics())
    track = pub.attach("h264")
    got = []
    reading = asyncio.ensure_future(track.recv())  # a viewer reads from a keyframe on
    await asyncio.sleep(0)
    for p in first + second:
        pub.deliver("h264", bytes(p), int(p.pts or 0), p.time_base, p.is_keyframe)
        await asyncio.sleep(0)
        got.append(await asyncio.wait_for(reading, 5))
        reading = asyncio.ensure_future(track.recv())
    reading.cancel()
    pts = [int(p.pts or 0) for p in got]
    assert pts[:3] == [int(p.pts or 0) for p in first]
    assert pts == sorted(set(pts)) and pts[3] - pts[2] == 3000  # a frame's time at 30 fps
    assert [p.is_keyframe for p in got] == [True, False, False, True, False]
    decoder = av.CodecContext.create("h264", "r")
    assert sum(len(decoder.decode(p)) for p in got[3:]) >= 1  # the packets are whole
    await pub.aclose()
