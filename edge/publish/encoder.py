"""One video encoder per camera and codec, shared by every viewer of that camera.

Encoding is the expensive part of live video: per-viewer encoding (aiortc's default) costs a
camera's encode once per browser. Here each camera has at most one H.264 encoder (and one VP8
encoder only while a browser without H.264 watches); its packets are fanned out as they are.

`CameraEncoder` owns a named thread that exists only while it is started: the camera's renderer
(`edge.publish.render`, in the service's process or in the camera's worker) starts it on a codec's
first viewer and stops it (freeing the codec context) after the last one leaves.
Pictures are handed over latest-only, so a slow encode skips frames instead of queueing them.
Keyframes come every `keyframe_interval_s` of picture time and on `request_keyframe()` (a viewer
joined, or a browser sent a PLI), which is what lets a new viewer start within a frame or two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
import numpy as np
from av.video.frame import PictureType

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics

log = logging.getLogger(__name__)

Codec = Literal["h264", "vp8"]
TIME_BASE = Fraction(1, 90000)
"""RTP's video clock, so aiortc converts timestamps without rounding."""
DEFAULT_FPS = 25.0


class Picture(Protocol):
    """A frame ready to be encoded; rendered lazily and at most once however many codecs use it."""

    captured_at: float
    """time.monotonic() when the camera frame arrived; drives pts and keyframe timing."""

    def yuv420(self) -> np.ndarray:
        """The picture as an (H·3/2)×W uint8 I420 plane stack (cv2.COLOR_BGR2YUV_I420)."""
        ...


def open_codec(
    codec: Codec, width: int, height: int, stream: StreamConfig, fps: float = DEFAULT_FPS
) -> av.VideoCodecContext:
    """A low-latency encoder: no B-frames, no lookahead, one packet out per frame in.

    `fps` matters: with the 1/90000 time base and no frame rate, x264's rate control assumes
    90 000 fps and spends ~22 bits per frame (a flat grey picture).
    """
    if codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        kbps = stream.bitrate_kbps
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",  # x264 marks it constrained baseline (42c0xx), as WebRTC wants
            "level": "3.1",
            "forced-idr": "1",
            "x264-params": f"scenecut=0:vbv-maxrate={kbps}:vbv-bufsize={kbps}:repeat-headers=1",
        }
    else:
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
            "auto-alt-ref": "0",
        }
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = TIME_BASE
    ctx.framerate = Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = stream.bitrate_kbps * 1000
    ctx.max_b_frames = 0
    # Keyframes are forced by time (see CameraEncoder); this is only a backstop for long gaps.
    ctx.gop_size = 600
    ctx.thread_count = 1
    ctx.open()
    return ctx


class CameraEncoder:
    """Encodes one camera's pictures with one codec in its own thread, packets to `on_packet`.

    `on_packet` is called from the encoder thread; it must not block (the fan-out hands packets
    to the event loop with call_soon_threadsafe).
    """

    def __init__(
        self,
        camera_id: str,
        codec: Codec,
        stream: StreamConfig,
        on_packet: Callable[[av.Packet[Any]], None],
        metrics: EdgeMetrics,
        fps: float | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.fps = fps or DEFAULT_FPS
        """Expected frame rate, for rate control (the camera's source FPS when known)."""
        self.codec: Codec = codec
        self.stream = stream
        self.metrics = metrics
        self._on_packet = on_packet
        self._ctx: av.VideoCodecContext | None = None
        self._size = (0, 0)
        self._t0: float | None = None
        self._last_pts = -1
        self._last_key_at: float | None = None
        self._keyframe_requested = False
        self._pending: Picture | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.frames_encoded = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.errors = 0

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a CameraEncoder is started once")
        self._thread = threading.Thread(
            target=self._run, name=f"encode:{self.camera_id}:{self.codec}", daemon=True
        )
        self.metrics.encoders_active.labels(camera=self.camera_id).inc()
        self._thread.start()
        log.info("camera %s: %s encoder started", self.camera_id, self.codec)

    def submit(self, picture: Picture) -> None:
        """Hand over the newest picture (any thread); an unencoded older one is replaced."""
        with self._cond:
            self._pending = picture
            self._cond.notify()

    def request_keyframe(self) -> None:
        """Make the next encoded picture a keyframe (any thread)."""
        self.keyframe_requests += 1
        self._keyframe_requested = True

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread (waiting up to `timeout` s; None = don't wait) and free the codec."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify()
        thread = self._thread
        if timeout is not None and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def encode(self, yuv: np.ndarray, captured_at: float) -> list[av.Packet[Any]]:
        """Encode one I420 picture synchronously (the thread's body; also usable directly)."""
        height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
        if self._ctx is None or self._size != (width, height):
            self._ctx = open_codec(self.codec, width, height, self.stream, self.fps)
            self._size = (width, height)
            self._keyframe_requested = True
        if self._t0 is None:
            self._t0 = captured_at
        pts = max(self._last_pts + 1, round((captured_at - self._t0) * 90000))
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = pts
        frame.time_base = TIME_BASE
        interval = self.stream.keyframe_interval_s
        if (
            self._keyframe_requested
            or self._last_key_at is None
            or captured_at - self._last_key_at >= interval
        ):
            self._keyframe_requested = False
            frame.pict_type = PictureType.I
        packets = list(self._ctx.encode(frame))
        for packet in packets:
            packet.time_base = TIME_BASE
            if packet.is_keyframe:
                self._last_key_at = captured_at
                self.keyframes += 1
        self.frames_encoded += 1
        return packets

    def _next_picture(self) -> Picture | None:
        with self._cond:
            while self._pending is None and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            picture, self._pending = self._pending, None
            return picture

    def _run(self) -> None:
        try:
            while (picture := self._next_picture()) is not None:
                self._encode_one(picture)
        finally:
            self._ctx = None  # frees the codec context and its buffers
            self.metrics.encoders_active.labels(camera=self.camera_id).dec()
            log.info(
                "camera %s: %s encoder stopped after %d frames",
                self.camera_id,
                self.codec,
                self.frames_encoded,
            )

    def _encode_one(self, picture: Picture) -> None:
        try:
            yuv = picture.yuv420()
            started = time.perf_counter()
            packets = self.encode(yuv, picture.captured_at)
            self.metrics.observe_stage(self.camera_id, "encode", time.perf_counter() - started)
        except Exception:  # a bad frame must not end the stream
            self.errors += 1
            log.exception("camera %s: %s encode failed", self.camera_id, self.codec)
            self._ctx = None  # reopen on the next picture
            return
        for packet in packets:
            self._on_packet(packet)
