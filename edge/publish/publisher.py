"""`CameraPublisher`: the one entry point the pipeline calls for live video, per camera.

The app calls, on the event loop, for every frame that went through detection and tracking:

    publisher.publish(frame, tracks, overlay)

- nobody watching: returns at once, nothing is converted, drawn or encoded;
- someone watching: an O(1) hand-over of the newest frame to the camera's encoder thread(s)
  (latest-only: a frame not yet encoded is replaced). In that thread the frame is converted
  straight to the output size (`StreamConfig.max_width` cap, never upscaled), annotated, turned
  into I420 once, and encoded by each running codec (H.264; VP8 only while a browser without H.264
  watches).

`attach(codec)` gives a viewer its track (the WebRTC layer does this per peer connection); the
codec's encoder starts with its first viewer and stops, freeing the codec, after the last.

Metrics recorded here: `edge_viewers`, `edge_encoders_active`, `edge_frames_rendered_total`,
`edge_video_latency_seconds`, FPS point "rendered", stage seconds "annotation" (render), "encode"
and "send" (packet queued → taken by the viewer's sender), drops "viewer_slow". Frames
*published* and end-to-end latency are the app's (`EdgeMetrics.observe_end_to_end`), for every
processed frame whether watched or not.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics, RateMeter
from edge.publish.annotate import Overlay, annotate, output_size
from edge.publish.encoder import CameraEncoder, Codec
from edge.publish.fanout import DEFAULT_QUEUE_PACKETS, EncodedVideoTrack, PacketFanout
from edge.types import Detections, Frame

log = logging.getLogger(__name__)


class RenderedPicture:
    """A frame plus what to draw on it; rendered on first use, once, by whichever encoder asks."""

    def __init__(
        self,
        publisher: CameraPublisher,
        source: Frame | np.ndarray,
        tracks: Detections,
        overlay: Overlay,
        captured_at: float,
    ) -> None:
        self.captured_at = captured_at
        self._publisher = publisher
        self._source = source
        self._tracks = tracks
        self._overlay = overlay
        self._yuv: np.ndarray | None = None
        self._lock = threading.Lock()

    def yuv420(self) -> np.ndarray:
        with self._lock:
            if self._yuv is None:
                self._yuv = self._publisher.render(self._source, self._tracks, self._overlay)
                self._publisher.rendered(self.captured_at)
            return self._yuv


@dataclass
class _Channel:
    """One codec of one camera: its fan-out and, while watched, its encoder."""

    fanout: PacketFanout
    encoder: CameraEncoder | None = None


class CameraPublisher:
    """Live annotated video of one camera for any number of viewers, encoded once per codec."""

    def __init__(
        self,
        camera_id: str,
        stream: StreamConfig,
        metrics: EdgeMetrics,
        max_width: int | None = None,
        queue_packets: int = DEFAULT_QUEUE_PACKETS,
    ) -> None:
        self.camera_id = camera_id
        self.stream = stream
        self.metrics = metrics
        self.max_width = min(stream.max_width, max_width or stream.max_width)
        self._queue_packets = queue_packets
        self._channels: dict[Codec, _Channel] = {}
        self._stopped: list[CameraEncoder] = []
        self._fps = RateMeter()
        self._input_fps = RateMeter()
        self.metrics.viewers.labels(camera=camera_id).set(0)
        self.metrics.encoders_active.labels(camera=camera_id).set(0)

    # -- pipeline side -------------------------------------------------------------------------
    @property
    def is_watched(self) -> bool:
        return any(ch.encoder is not None for ch in self._channels.values())

    def publish(self, frame: Frame | np.ndarray, tracks: Detections, overlay: Overlay) -> None:
        """Hand the newest frame to the running encoders; a no-op while nobody watches.

        `frame` is a decoded `Frame` (converted straight to output size) or a BGR array;
        `tracks` are in the frame's source pixels.
        """
        self._input_fps.tick()  # cheap, and tells a starting encoder the real frame rate
        encoders = [ch.encoder for ch in self._channels.values() if ch.encoder is not None]
        if not encoders:
            return
        captured_at = frame.received_at if isinstance(frame, Frame) else time.monotonic()
        picture = RenderedPicture(self, frame, tracks, overlay, captured_at)
        for encoder in encoders:
            encoder.submit(picture)

    def render(
        self, source: Frame | np.ndarray, tracks: Detections, overlay: Overlay
    ) -> np.ndarray:
        """Convert at output size, annotate, and return I420 (runs in an encoder thread)."""
        started = time.perf_counter()
        if isinstance(source, Frame):
            src_wh = (source.width, source.height)
            out_w, out_h = output_size(*src_wh, self.max_width)
            canvas = source.to_bgr(out_w, out_h)
        else:
            src_wh = (source.shape[1], source.shape[0])
            out_w, out_h = output_size(*src_wh, self.max_width)
            canvas = cv2.resize(source, (out_w, out_h), interpolation=cv2.INTER_AREA)
        if overlay.fps is None:
            overlay = replace(overlay, fps=self._fps.rate())
        annotate(canvas, tracks, overlay, src_wh)
        yuv = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420)
        self.metrics.observe_stage(self.camera_id, "annotation", time.perf_counter() - started)
        return yuv

    def rendered(self, captured_at: float) -> None:
        """Count one picture rendered for viewers (`edge_frames_rendered_total`, video latency).

        `edge_frames_published_total` / end-to-end latency are the app's to record, for every
        processed frame, watched or not (`EdgeMetrics.observe_end_to_end`)."""
        self._fps.tick()
        self.metrics.observe_rendered(self.camera_id, max(0.0, time.monotonic() - captured_at))

    # -- viewer side ---------------------------------------------------------------------------
    @property
    def viewer_count(self) -> int:
        return sum(ch.fanout.viewer_count for ch in self._channels.values())

    @property
    def encoder_count(self) -> int:
        return sum(1 for ch in self._channels.values() if ch.encoder is not None)

    def encoder(self, codec: Codec) -> CameraEncoder | None:
        channel = self._channels.get(codec)
        return channel.encoder if channel else None

    def attach(self, codec: Codec = "h264") -> EncodedVideoTrack:
        """A new viewer's track (event loop); starts the codec's encoder for the first viewer."""
        channel = self._channels.get(codec)
        if channel is None:
            fanout = PacketFanout(
                self.camera_id,
                asyncio.get_running_loop(),
                request_keyframe=lambda: self.request_keyframe(codec),
                on_viewers_changed=lambda f: self._viewers_changed(codec, f),
                metrics=self.metrics,
                queue_packets=self._queue_packets,
            )
            channel = self._channels[codec] = _Channel(fanout)
        return channel.fanout.add_viewer()

    def request_keyframe(self, codec: Codec | None = None) -> None:
        """Ask the codec's encoder (all encoders when None) for a keyframe next."""
        for name, channel in self._channels.items():
            if channel.encoder is not None and codec in (None, name):
                channel.encoder.request_keyframe()

    def _viewers_changed(self, codec: Codec, fanout: PacketFanout) -> None:
        channel = self._channels[codec]
        if fanout.viewer_count > 0 and channel.encoder is None:
            channel.encoder = CameraEncoder(
                self.camera_id,
                codec,
                self.stream,
                fanout.publish_threadsafe,
                self.metrics,
                fps=self._input_fps.rate() or None,
            )
            channel.encoder.start()
        elif fanout.viewer_count == 0 and channel.encoder is not None:
            encoder, channel.encoder = channel.encoder, None
            encoder.stop(timeout=None)  # the thread frees the codec; never block the loop
            self._stopped = [e for e in self._stopped if e.is_running] + [encoder]
        self.metrics.viewers.labels(camera=self.camera_id).set(self.viewer_count)

    async def aclose(self) -> None:
        """End every viewer's track and wait for the encoder threads to finish."""
        for channel in list(self._channels.values()):
            channel.fanout.close()
        stopping = [e for e in self._stopped if e.is_running]
        for encoder in stopping:
            await asyncio.to_thread(encoder.stop, 5.0)
        self._stopped.clear()
