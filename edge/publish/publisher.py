"""`CameraPublisher`: the one entry point the pipeline calls for live video, per camera.

`attach(codec)` gives a viewer its track (the WebRTC layer does this per peer connection); each
codec has one `PacketFanout`, fed by one encoder however many viewers it has. A codec is watched
from its first viewer to the end of its last (H.264 normally; VP8 only while a browser without
H.264 watches). Where the encoding happens depends on where the camera's frames are:

- in this process (`ingest.processes: 0`): the app calls, on the event loop, for every frame
  that went through detection and tracking, `publisher.publish(frame, tracks, overlay)`; nobody
  watching: it returns at once, nothing is converted, drawn or encoded; someone watching: an
  O(1) latest-only hand-over to this process's `CameraRenderer` (edge.publish.render), which
  renders once and encodes once per watched codec in encoder threads;
- in a camera worker process (after `encode_remotely(remote)`): the worker runs the same
  `CameraRenderer`; the publisher tells `remote` when its watched codecs change and forwards
  keyframe requests (a viewer started reading, a browser's PLI), and `deliver(...)` feeds the
  packets that come back to the codec's fan-out. Their timestamps are kept increasing across a
  restart of the worker (whose new encoder counts from 0 again), so that receivers never see
  time go back.

Metrics recorded here: `edge_viewers`, and through the fan-out stage seconds "send" (packet
queued → taken by the viewer's sender) and drops "viewer_slow"; the renderer's (wherever it runs):
`edge_encoders_active`, `edge_frames_rendered_total`, `edge_video_latency_seconds`, FPS point
"rendered", stage seconds "annotation" and "encode". Frames *published* and end-to-end latency are
the pipeline's (`EdgeMetrics.observe_end_to_end`), for every processed frame whether watched or
not.
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction
from typing import Protocol

import av
import numpy as np

from edge.config import StreamConfig
from edge.metrics import EdgeMetrics
from edge.publish.annotate import Overlay
from edge.publish.encoder import CameraEncoder, Codec
from edge.publish.fanout import DEFAULT_QUEUE_PACKETS, EncodedVideoTrack, PacketFanout
from edge.publish.render import CameraRenderer
from edge.types import Detections, Frame

log = logging.getLogger(__name__)

RESUMED_GAP_S = 1 / 30
"""The picture time put between the last packet before a worker's restart and the first after."""


class RemoteEncoding(Protocol):
    """Whoever encodes a camera's pictures in another process (`edge.workers.WorkerPool`)."""

    def watch_changed(self, camera_id: str) -> None:
        """The camera's watched codecs (`CameraPublisher.watched_codecs`) changed."""

    def request_keyframe(self, camera_id: str, codec: Codec | None) -> None:
        """The codec's encoder (all when None) should make its next picture a keyframe."""


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
        self.renderer = CameraRenderer(camera_id, stream, metrics, self.max_width)
        self._queue_packets = queue_packets
        self._fanouts: dict[Codec, PacketFanout] = {}
        self._remote: RemoteEncoding | None = None
        self._pts_offset: dict[Codec, int] = {}
        self._last_pts: dict[Codec, int] = {}
        self.metrics.viewers.labels(camera=camera_id).set(0)
        self.metrics.encoders_active.labels(camera=camera_id).set(0)

    # -- pipeline side -------------------------------------------------------------------------
    @property
    def watched_codecs(self) -> frozenset[Codec]:
        return frozenset(c for c, f in self._fanouts.items() if f.viewer_count > 0)

    @property
    def is_watched(self) -> bool:
        return any(f.viewer_count > 0 for f in self._fanouts.values())

    def publish(self, frame: Frame | np.ndarray, tracks: Detections, overlay: Overlay) -> None:
        """Hand the newest frame to the running encoders; a no-op while nobody watches.

        `frame` is a decoded `Frame` (converted straight to output size) or a BGR array;
        `tracks` are in the frame's source pixels.
        """
        self.renderer.publish(frame, tracks, overlay)

    def encode_remotely(self, remote: RemoteEncoding) -> None:
        """From now on the camera's pictures are encoded by `remote` (before any viewer)."""
        self._remote = remote

    def deliver(
        self, codec: Codec, data: bytes, pts: int, time_base: Fraction, keyframe: bool
    ) -> None:
        """A packet encoded elsewhere, for the codec's viewers (event loop)."""
        fanout = self._fanouts.get(codec)
        if fanout is None or fanout.viewer_count == 0:
            return  # the last viewer left while the packet was on its way
        out = pts + self._pts_offset.get(codec, 0)
        last = self._last_pts.get(codec)
        if last is not None and out <= last:  # the worker restarted: its encoder counts anew
            gap = max(1, round(RESUMED_GAP_S / time_base))
            self._pts_offset[codec] = last + gap - pts
            out = last + gap
        self._last_pts[codec] = out
        packet = av.Packet(data)
        packet.pts = packet.dts = out
        packet.time_base = time_base
        packet.is_keyframe = keyframe
        fanout.publish(packet)

    # -- viewer side ---------------------------------------------------------------------------
    @property
    def viewer_count(self) -> int:
        return sum(f.viewer_count for f in self._fanouts.values())

    @property
    def encoder_count(self) -> int:
        """Encoders running in this process."""
        return len(self.renderer.codecs)

    def encoder(self, codec: Codec) -> CameraEncoder | None:
        return self.renderer.encoder(codec)

    def attach(self, codec: Codec = "h264") -> EncodedVideoTrack:
        """A new viewer's track (event loop); starts the codec's encoder for the first viewer."""
        fanout = self._fanouts.get(codec)
        if fanout is None:
            fanout = self._fanouts[codec] = PacketFanout(
                self.camera_id,
                asyncio.get_running_loop(),
                request_keyframe=lambda: self.request_keyframe(codec),
                on_viewers_changed=lambda f: self._viewers_changed(codec, f),
                metrics=self.metrics,
                queue_packets=self._queue_packets,
            )
        return fanout.add_viewer()

    def request_keyframe(self, codec: Codec | None = None) -> None:
        """Ask the codec's encoder (all encoders when None) for a keyframe next."""
        if self._remote is not None:
            self._remote.request_keyframe(self.camera_id, codec)
        else:
            self.renderer.request_keyframe(codec)

    def _viewers_changed(self, codec: Codec, fanout: PacketFanout) -> None:
        if self._remote is not None:
            self._remote.watch_changed(self.camera_id)
        elif fanout.viewer_count > 0:
            self.renderer.start(codec, fanout.publish_threadsafe)
        else:
            self.renderer.stop(codec)
        self.metrics.viewers.labels(camera=self.camera_id).set(self.viewer_count)

    async def aclose(self) -> None:
        """End every viewer's track and wait for the encoder threads to finish."""
        for fanout in list(self._fanouts.values()):
            fanout.close()
        await self.renderer.aclose()
