"""Live video of the cameras a worker process owns: annotated and encoded in the worker.

Part of the wiring, like `edge.camera_worker` (whose event loop drives it): for each camera
someone watches, the worker runs that camera's `CameraRenderer` (the very code the service runs
for a camera of its own, `edge.publish.render`): a watched frame, once tracked, is handed over
latest-only to the encoder threads of the codecs the service asked for, which convert and annotate
it once and encode it once per codec. The packets go back over the worker's pipe to the service's
fan-out, which serves every viewer of the codec with them as they are.

Messages (see `edge.camera_worker` for the rest of the protocol):
- service → worker: ("watch", {camera: [codec]}): the cameras watched now and, for each, the
  codecs its viewers take (H.264; VP8 only while a browser without H.264 watches): encoders start
  and stop to match; ("keyframe", camera, codec | None): a viewer started reading, or a browser
  lost pictures (PLI);
- worker → service: ("packets", [EncodedPacket], records, events), one message per turn of the
  worker's event loop that had packets.

Bounded: the encoders' pictures are latest-only, and packets waiting for the pipe are capped at
`MAX_PENDING`; past it (the service is not reading) a stream's waiting packets are dropped
(counted as `viewer_slow`: video its viewers miss), it asks its encoder for a keyframe and sends
nothing until that keyframe, so that viewers resume on a clean picture.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import av

from edge.config import CameraConfig, LineConfig, StreamConfig
from edge.metrics import DropReason
from edge.publish.annotate import Overlay, line_overlays
from edge.publish.encoder import Codec
from edge.publish.render import CameraRenderer
from edge.types import Detections, Frame

MAX_PENDING = 60
"""Packets waiting for the pipe, all cameras together (two seconds of one camera at 30 fps)."""

EncodedPacket = tuple[str, Codec, bytes, int, Any, bool]
"""(camera, codec, data, pts, time_base, keyframe): what `CameraPublisher.deliver` takes."""


class WorkerVideo:
    """The renderers of one worker's watched cameras, and their packets on their way out."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        stream: StreamConfig,
        class_names: Sequence[str],
        metrics: Any,
        send: Callable[[list[EncodedPacket]], None],
    ) -> None:
        """`metrics`: the worker's `MetricsRecorder`; `send(packets)`: called on the event loop."""
        self.stream, self.class_names, self.metrics = stream, tuple(class_names), metrics
        self._send = send
        self.names = {c.id: c.display_name for c in cameras}
        self.lines: dict[str, list[LineConfig]] = {c.id: list(c.lines) for c in cameras}
        self.widths = {c.id: c.width for c in cameras}
        self.plates: dict[str, dict[int, str]] = {}
        """Per camera, track id → plate text to draw (given by the service or the worker)."""
        self.renderers: dict[str, CameraRenderer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[EncodedPacket] = []
        self._resyncing: set[tuple[str, Codec]] = set()
        """Streams whose packets were dropped: nothing goes out until their next keyframe."""
        self._closing: list[CameraRenderer] = []

    # ---- service → worker ----

    def watch(self, watched: Mapping[str, Sequence[Codec]]) -> None:
        """Run exactly the encoders of `watched` (event loop)."""
        self._loop = asyncio.get_running_loop()
        for cam, idle in self.renderers.items():
            if cam not in watched:  # kept: a camera's renderers are few, and watched again
                for codec in idle.codecs:
                    idle.stop(codec)
        for cam, codecs in watched.items():
            if cam not in self.names:
                continue  # removed by a reload meanwhile
            renderer = self.renderers.get(cam)
            if renderer is None:
                width = self.widths.get(cam)
                max_width = min(self.stream.max_width, width or self.stream.max_width)
                renderer = CameraRenderer(cam, self.stream, self.metrics, max_width)
                self.renderers[cam] = renderer
            for codec in renderer.codecs - set(codecs):
                renderer.stop(codec)
            for codec in codecs:
                renderer.start(codec, self._sink(cam, codec))

    def request_keyframe(self, camera: str, codec: Codec | None) -> None:
        renderer = self.renderers.get(camera)
        if renderer is not None:
            renderer.request_keyframe(codec)

    def set_plates(self, camera: str, texts: Mapping[int, str]) -> None:
        """The plate texts to draw on the camera's tracks (the worker's own plate reads)."""
        self.plates[camera] = dict(texts)

    def set_lines(self, camera: str, lines: Sequence[LineConfig], name: str) -> None:
        self.lines[camera] = list(lines)
        self.names[camera] = name

    def add(self, camera: CameraConfig) -> None:
        """A camera a config reload gave the worker (watched once the service says so)."""
        self.names[camera.id] = camera.display_name
        self.lines[camera.id] = list(camera.lines)
        self.widths[camera.id] = camera.width

    def remove(self, camera: str) -> None:
        """The camera stops (a config reload): its encoders end."""
        self._close(camera)
        for mapping in (self.names, self.lines, self.widths, self.plates):
            mapping.pop(camera, None)

    # ---- pipeline ----

    def publish(self, camera: str, frame: Frame, tracks: Detections, counts: Any) -> None:
        """A watched camera's tracked frame, for its encoders (event loop; O(1) hand-over)."""
        renderer = self.renderers.get(camera)
        if renderer is not None:
            renderer.publish(frame, tracks, self.overlay(camera, counts))

    def overlay(self, camera: str, counts: Any) -> Overlay:
        """What the camera's picture shows besides its boxes, as the service draws it."""
        return Overlay(
            camera_name=self.names.get(camera, camera),
            class_names=self.class_names,
            lines=line_overlays(self.lines.get(camera, []), counts),
            plates=self.plates.get(camera, {}),
            clock=time.time(),
        )

    async def aclose(self) -> None:
        """Stop every encoder and wait for their threads (their gauges' last records)."""
        for cam in list(self.renderers):
            self._close(cam)
        closing, self._closing = self._closing, []
        for renderer in closing:
            await renderer.aclose()

    # ---- packets out ----

    def _sink(self, camera: str, codec: Codec) -> Callable[[av.Packet[Any]], None]:
        def on_packet(packet: av.Packet[Any]) -> None:  # in the encoder's thread
            self._queue(camera, codec, packet)

        return on_packet

    def _queue(self, camera: str, codec: Codec, packet: av.Packet[Any]) -> None:
        key, keyframe = (camera, codec), packet.is_keyframe
        with self._lock:
            if key in self._resyncing:
                if not keyframe:
                    self.metrics.count_drop(camera, DropReason.VIEWER_SLOW)
                    return
                self._resyncing.discard(key)
            if len(self._pending) >= MAX_PENDING:  # the stream's stale backlog goes
                mine = [p for p in self._pending if (p[0], p[1]) == key]
                self._pending = [p for p in self._pending if (p[0], p[1]) != key]
                if not keyframe:  # nor can this packet be decoded without them
                    self.metrics.count_drop(camera, DropReason.VIEWER_SLOW, len(mine) + 1)
                    self._resync(camera, codec)
                    return
                self.metrics.count_drop(camera, DropReason.VIEWER_SLOW, len(mine))
            was_empty = not self._pending
            self._pending.append(
                (camera, codec, bytes(packet), int(packet.pts or 0), packet.time_base, keyframe)
            )
        loop = self._loop
        if was_empty and loop is not None:
            try:
                loop.call_soon_threadsafe(self._flush)
            except RuntimeError:
                pass  # the loop is closing: the worker is stopping

    def _resync(self, camera: str, codec: Codec) -> None:
        """Drop the stream's packets until its next keyframe, asked for now (encoder thread)."""
        self._resyncing.add((camera, codec))
        renderer = self.renderers.get(camera)
        encoder = renderer.encoder(codec) if renderer is not None else None
        if encoder is not None:  # lookups only: safe from this thread
            encoder.request_keyframe()

    def _flush(self) -> None:
        with self._lock:
            out, self._pending = self._pending, []
        if out:
            self._send(out)

    def _close(self, camera: str) -> None:
        renderer = self.renderers.pop(camera, None)
        if renderer is not None:
            for codec in renderer.codecs:
                renderer.stop(codec)
            self._closing.append(renderer)
