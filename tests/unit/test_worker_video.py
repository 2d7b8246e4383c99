"""A worker's live video: the watched codecs' encoders run, their packets go out whole (and
bounded), the metrics they record replay as the service's own would read."""

from __future__ import annotations

import asyncio
import pickle
import time
from fractions import Fraction

import av
import numpy as np

from edge.config import CameraConfig, LineConfig, StreamConfig
from edge.metrics import EdgeMetrics
from edge.metrics_relay import MetricsRecorder, MetricsReplayer
from edge.publish.encoder import TIME_BASE, CameraEncoder
from edge.testing import async_wait_for, metric_value
from edge.types import Detections, Frame
from edge.worker_video import MAX_PENDING, EncodedPacket, WorkerVideo

CAMERA = CameraConfig(
    id="cam",
    url="rtsp://127.0.0.1:1/x",
    name="Gate",
    width=320,
    lines=[LineConfig(name="l", points=[(0, 100), (640, 100)])],
)


def _frame(seq: int) -> Frame:
    bgr = np.full((360, 640, 3), 90, np.uint8)
    image = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
    return Frame("cam", seq, seq / 25, time.monotonic(), image)


def _video(sent: list[EncodedPacket], recorder: MetricsRecorder) -> WorkerVideo:
    return WorkerVideo([CAMERA], StreamConfig(), ("car",), recorder, sent.extend)


def _replayed(recorder: MetricsRecorder) -> EdgeMetrics:
    metrics = EdgeMetrics()
    MetricsReplayer(metrics).replay(pickle.loads(pickle.dumps(recorder.take())))
    return metrics


async def test_watched_codecs_are_encoded_once_each_and_sent_whole() -> None:
    sent: list[EncodedPacket] = []
    recorder = MetricsRecorder()
    video = _video(sent, recorder)
    video.watch({"cam": ["h264", "vp8"]})
    tracks = Detections(
        np.array([[10, 10, 200, 200]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)
    )
    for seq in range(5):
        video.publish("cam", _frame(seq), tracks, {"l": {"car": {"in": 3}}})
        await asyncio.sleep(0.05)
    await async_wait_for(lambda: {p[1] for p in sent} == {"h264", "vp8"}, 10)
    video.watch({})  # nobody watches any more: the encoders stop
    await video.aclose()
    h264 = [p for p in sent if p[1] == "h264"]
    first = pickle.loads(pickle.dumps(h264[0]))  # it crosses a pipe
    assert first[0] == "cam" and first[4] == TIME_BASE and first[5]  # a keyframe first
    decoded = av.CodecContext.create("h264", "r").decode(av.Packet(first[2]))
    assert (decoded[0].width, decoded[0].height) == (320, 180)  # the camera's width cap
    assert [p[3] for p in h264] == sorted({p[3] for p in h264})  # increasing pts
    metrics = _replayed(recorder)
    rendered = metric_value(metrics, "edge_frames_rendered_total", camera="cam")
    assert 1 <= rendered <= 5 and rendered <= len(h264)  # once per picture, whatever the codecs
    assert metric_value(metrics, "edge_stage_seconds_count", camera="cam", stage="encode") >= 2
    assert metric_value(metrics, "edge_encoders_active", camera="cam") == 0  # started, stopped


def test_the_overlay_shows_names_counts_and_the_plates_it_was_given() -> None:
    video = _video([], MetricsRecorder())
    video.set_plates("cam", {3: "AB 123"})
    overlay = video.overlay("cam", {"l": {"car": {"in": 2, "out": 1}, "bus": {"in": 1}}})
    assert (overlay.camera_name, tuple(overlay.class_names)) == ("Gate", ("car",))
    (line,) = overlay.lines
    assert (line.name, dict(line.counts)) == ("l", {"in": 3, "out": 1})
    assert overlay.plates == {3: "AB 123"}
    video.set_lines("cam", [LineConfig(name="m", points=[(0, 0), (9, 9)])], "Gate 2")
    overlay = video.overlay("cam", {})
    assert overlay.camera_name == "Gate 2" and [line.name for line in overlay.lines] == ["m"]


def _packets(n: int, every: int) -> list[av.Packet]:
    """`n` real H.264 packets, a keyframe every `every`."""
    stream = StreamConfig(keyframe_interval_s=10)  # longer than the packets: only those asked
    encoder = CameraEncoder("cam", "h264", stream, lambda p: None, EdgeMetrics())
    yuv = np.full((240 * 3 // 2, 320), 100, np.uint8)
    out: list[av.Packet] = []
    for i in range(n):
        if i % every == 0:
            encoder.request_keyframe()
        out += encoder.encode(yuv, i / 25)
    assert [p.is_keyframe for p in out] == [i % every == 0 for i in range(n)]
    return out


def _overflow(every: int) -> tuple[list[av.Packet], list[EncodedPacket], EdgeMetrics]:
    """MAX_PENDING + 15 packets queued while no event loop runs the flush (as if the worker were
    stuck sending), then flushed."""
    sent: list[EncodedPacket] = []
    recorder = MetricsRecorder()
    video = _video(sent, recorder)
    packets = _packets(MAX_PENDING + 15, every)
    for packet in packets:
        video._queue("cam", "h264", packet)  # what an encoder thread calls
    video._flush()
    return packets, sent, _replayed(recorder)


def test_a_stale_backlog_goes_and_the_stream_resumes_on_a_keyframe() -> None:
    """Past the cap the stream's waiting packets are dropped, and so is every packet up to its
    next keyframe (they could not be decoded without the dropped ones)."""
    every = 7
    assert MAX_PENDING % every  # the packet past the cap is no keyframe
    packets, sent, metrics = _overflow(every)
    resumed = next(i for i in range(MAX_PENDING, len(packets)) if packets[i].is_keyframe)
    assert [p[3] for p in sent] == [int(p.pts or 0) for p in packets[resumed:]]
    assert sent[0][5] and Fraction(sent[0][4]) == TIME_BASE
    dropped = metric_value(metrics, "edge_frames_dropped_total", camera="cam", reason="viewer_slow")
    assert dropped == resumed


def test_a_keyframe_past_the_cap_starts_the_stream_afresh() -> None:
    packets, sent, metrics = _overflow(every=MAX_PENDING)
    assert [p[3] for p in sent] == [int(p.pts or 0) for p in packets[MAX_PENDING:]]
    dropped = metric_value(metrics, "edge_frames_dropped_total", camera="cam", reason="viewer_slow")
    assert dropped == MAX_PENDING
