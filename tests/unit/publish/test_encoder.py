"""CameraEncoder: real libx264/libvpx packets, keyframes by time and on request, lifecycle."""

from __future__ import annotations

import threading

import av
import cv2
import numpy as np
import pytest

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics
from edge.publish.encoder import CameraEncoder, open_codec
from edge.testing import wait_for


def _yuv(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bgr = np.zeros((h, w, 3), np.uint8)
    x = (seed * 7) % max(1, w - 40)
    cv2.rectangle(bgr, (x, 10), (x + 40, 50), (int(rng.integers(255)), 200, 30), -1)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


def _decode(codec: str, packets: list[av.Packet]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264" if codec == "h264" else "libvpx", "r")
    frames = []
    for p in packets:
        frames.extend(decoder.decode(av.Packet(bytes(p))))
    return frames


def _encoder(codec: str = "h264", interval: float = 1.0) -> CameraEncoder:
    stream = StreamConfig(keyframe_interval_s=interval)
    return CameraEncoder("cam", codec, stream, lambda p: None, EdgeMetrics())  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_packets_decode_to_the_input_size(codec: str) -> None:
    enc = _encoder(codec)
    packets = []
    for i in range(10):
        out = enc.encode(_yuv(320, 240, i), captured_at=100 + i * 0.04)
        assert len(out) == 1  # zero latency: one packet out per frame in
        packets += out
    assert packets[0].is_keyframe
    assert not any(p.is_keyframe for p in packets[1:])
    assert [p.pts for p in packets] == [round(i * 0.04 * 90000) for i in range(10)]
    assert all(p.time_base.denominator == 90000 for p in packets)
    frames = _decode(codec, packets)
    assert len(frames) == 10
    assert (frames[0].width, frames[0].height) == (320, 240)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_decoded_pictures_look_like_the_input(codec: str) -> None:
    bgr = np.zeros((360, 640, 3), np.uint8)
    bgr[:, :320] = (0, 0, 255)
    cv2.putText(bgr, "edge", (350, 200), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 6)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    enc = _encoder(codec)
    packets = [p for i in range(5) for p in enc.encode(yuv, i / 30)]
    for frame in _decode(codec, packets):
        out = frame.to_ndarray(format="bgr24").astype(np.int16)
        assert np.abs(out - bgr).mean() < 6  # not a flat picture: the content survives
        assert out[:, :300, 2].mean() > 230 and out[:, :300, :2].mean() < 25


def test_h264_is_constrained_baseline_annex_b_without_b_frames() -> None:
    enc = _encoder()
    first = enc.encode(_yuv(640, 360, 0), 0.0)[0]
    data = bytes(first)
    assert data.startswith(b"\x00\x00\x00\x01")  # Annex B, what aiortc's packetiser splits
    sps = data.index(b"\x00\x00\x00\x01\x67") + 5
    profile_idc, constraints = data[sps], data[sps + 1]
    assert profile_idc == 66 and constraints & 0x40  # baseline + constraint_set1 = constrained
    ctx = open_codec("h264", 640, 360, StreamConfig())
    assert ctx.max_b_frames == 0


def test_keyframe_on_request_and_by_time() -> None:
    enc = _encoder(interval=1.0)
    keys = []
    for i in range(60):  # 25 fps for 2.4 s, a request at frame 10
        if i == 10:
            enc.request_keyframe()
        out = enc.encode(_yuv(320, 240, i), captured_at=i * 0.04)
        keys += [i for p in out if p.is_keyframe]
    assert keys == [0, 10, 35]  # the periodic one counts from the last keyframe


def test_resolution_change_reopens_with_a_keyframe() -> None:
    enc = _encoder()
    enc.encode(_yuv(320, 240, 0), 0.0)
    enc.encode(_yuv(320, 240, 1), 0.04)
    out = enc.encode(_yuv(640, 360, 2), 0.08)
    assert out[0].is_keyframe
    assert (_decode("h264", out)[0].width) == 640


class _Picture:
    def __init__(self, yuv: np.ndarray, t: float, gate: threading.Event | None = None) -> None:
        self.captured_at = t
        self._yuv = yuv
        self._gate = gate

    def yuv420(self) -> np.ndarray:
        if self._gate is not None:
            self._gate.wait(5)
        return self._yuv


def test_thread_encodes_latest_only_and_frees_on_stop() -> None:
    metrics = EdgeMetrics()
    got: list[av.Packet] = []
    enc = CameraEncoder("cam", "h264", StreamConfig(), got.append, metrics)
    active = lambda: metrics.registry.get_sample_value("edge_encoders_active", {"camera": "cam"})  # noqa: E731
    gate = threading.Event()
    enc.start()
    assert enc.is_running and active() == 1
    enc.submit(_Picture(_yuv(320, 240, 0), 0.0, gate))  # the thread blocks on this one
    wait_for(lambda: enc._pending is None, 5)
    for i in range(1, 6):  # meanwhile five more arrive: only the newest survives
        enc.submit(_Picture(_yuv(320, 240, i), i * 0.04))
    gate.set()
    wait_for(lambda: len(got) == 2, 5)
    assert [p.pts for p in got] == [0, round(5 * 0.04 * 90000)]
    enc.stop()
    assert not enc.is_running
    assert enc._ctx is None
    assert active() == 0


def test_bad_picture_is_counted_and_the_thread_survives() -> None:
    got: list[av.Packet] = []
    enc = CameraEncoder("cam", "h264", StreamConfig(), got.append, EdgeMetrics())
    enc.start()
    try:
        enc.submit(_Picture(np.zeros((7, 5), np.uint8), 0.0))  # not a valid I420 size
        wait_for(lambda: enc.errors == 1, 5)
        enc.submit(_Picture(_yuv(320, 240, 1), 0.04))
        wait_for(lambda: len(got) == 1, 5)
        assert enc.is_running
    finally:
        enc.stop()
