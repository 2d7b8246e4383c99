"""`CameraRenderer`: the render + encode half of a camera's live video.

Apart from the viewers' side (`edge.publish.publisher`) because it runs wherever the camera's
frames are: in the service's process for a camera it decodes itself, in a camera worker process
(`ingest.processes` ≥ 1) otherwise, whose encoded packets then cross the worker's pipe to the
service's fan-out. Either way a watched frame is handed over latest-only (O(1)) to the running
codecs' encoder threads; the first thread that takes it converts it straight to the output size
(`StreamConfig.max_width` cap, never upscaled), annotates it and turns it into I420, once, and
each codec encodes that.

Metrics recorded here (through `EdgeMetrics` or, in a worker, a `MetricsRecorder` with its API):
`edge_encoders_active`, `edge_frames_rendered_total`, `edge_video_latency_seconds`, FPS point
"rendered", stage seconds "annotation" (render) and "encode".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import av
import cv2
import numpy as np

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics, RateMeter
from edge.publish.annotate import Overlay, annotate, output_size
from edge.publish.encoder import CameraEncoder, Codec
from edge.types import Detections, Frame

PacketSink = Callable[["av.Packet[Any]"], None]
"""Where an encoder thread hands its packets; it must not block."""


class RenderedPicture:
    """A frame plus what to draw on it; rendered on first use, once, by whichever encoder asks."""

    def __init__(
        self,
        renderer: CameraRenderer,
        source: Frame | np.ndarray,
        tracks: Detections,
        overlay: Overlay,
        captured_at: float,
    ) -> None:
        self.captured_at = captured_at
        self._renderer = renderer
        self._source = source
        self._tracks = tracks
        self._overlay = overlay
        self._yuv: np.ndarray | None = None
        self._lock = threading.Lock()

    def yuv420(self) -> np.ndarray:
        with self._lock:
            if self._yuv is None:
                self._yuv = self._renderer.render(self._source, self._tracks, self._overlay)
                self._renderer.rendered(self.captured_at)
            return self._yuv


class CameraRenderer:
    """One camera's running encoders (at most one per codec) and the pictures they share."""

    def __init__(
        self, camera_id: str, stream: StreamConfig, metrics: EdgeMetrics, max_width: int
    ) -> None:
        self.camera_id = camera_id
        self.stream = stream
        self.metrics = metrics
        self.max_width = max_width
        self._encoders: dict[Codec, CameraEncoder] = {}
        self._stopped: list[CameraEncoder] = []
        self._fps = RateMeter()
        self._input_fps = RateMeter()

    @property
    def codecs(self) -> frozenset[Codec]:
        return frozenset(self._encoders)

    def encoder(self, codec: Codec) -> CameraEncoder | None:
        return self._encoders.get(codec)

    def publish(self, frame: Frame | np.ndarray, tracks: Detections, overlay: Overlay) -> None:
        """Hand the newest frame to the running encoders; a no-op while none runs.

        `frame` is a decoded `Frame` (converted straight to output size) or a BGR array;
        `tracks` are in the frame's source pixels.
        """
        self._input_fps.tick()  # cheap, and tells a starting encoder the real frame rate
        if not self._encoders:
            return
        captured_at = frame.received_at if isinstance(frame, Frame) else time.monotonic()
        picture = RenderedPicture(self, frame, tracks, overlay, captured_at)
        for encoder in self._encoders.values():
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

        `edge_frames_published_total` / end-to-end latency are the pipeline's to record, for
        every processed frame, watched or not (`EdgeMetrics.observe_end_to_end`)."""
        self._fps.tick()
        self.metrics.observe_rendered(self.camera_id, max(0.0, time.monotonic() - captured_at))

    def start(self, codec: Codec, on_packet: PacketSink) -> None:
        """Run the codec's encoder (a no-op while it runs); packets go to `on_packet`."""
        if codec in self._encoders:
            return
        encoder = CameraEncoder(
            self.camera_id,
            codec,
            self.stream,
            on_packet,
            self.metrics,
            fps=self._input_fps.rate() or None,
        )
        self._encoders[codec] = encoder
        encoder.start()

    def stop(self, codec: Codec) -> None:
        """Stop the codec's encoder without waiting (its thread frees the codec)."""
        encoder = self._encoders.pop(codec, None)
        if encoder is not None:
            encoder.stop(timeout=None)  # never block the event loop
            self._stopped = [e for e in self._stopped if e.is_running] + [encoder]

    def request_keyframe(self, codec: Codec | None = None) -> None:
        """Ask the codec's encoder (all encoders when None) for a keyframe next."""
        for name, encoder in self._encoders.items():
            if codec in (None, name):
                encoder.request_keyframe()

    async def aclose(self) -> None:
        """Stop every encoder and wait for their threads to finish."""
        for codec in list(self._encoders):
            self.stop(codec)
        stopping = [e for e in self._stopped if e.is_running]
        for encoder in stopping:
            await asyncio.to_thread(encoder.stop, 5.0)
        self._stopped.clear()
