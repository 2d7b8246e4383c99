"""Fan one encoder's packets out to every viewer of a camera; no viewer can hurt the others.

Each viewer gets an `EncodedVideoTrack`, an aiortc track whose `recv()` returns the encoder's
`av.Packet[Any]`s as they are (aiortc packetises them without re-encoding). Every viewer has its own
small bounded queue: a viewer that stops reading loses packets (counted as
`frames_dropped{reason="viewer_slow"}`) while the encoder and the other viewers carry on.

Dropping H.264 packets breaks the picture until the next keyframe, so a viewer that overflowed
discards everything up to the next keyframe instead of decoding garbage; it does not ask for an
extra keyframe (that would cost every other viewer bandwidth), it waits for the periodic one.
A viewer that starts reading (its connection is up) asks for a keyframe at once, so it shows a
picture within a frame or two.

All methods run on the event loop except `publish_threadsafe`, which the encoder thread calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.metrics import DropReason, EdgeMetrics

log = logging.getLogger(__name__)

DEFAULT_QUEUE_PACKETS = 15
"""Half a second at 30 fps: rides out a hiccup of the send loop, short enough for latency."""


class EncodedVideoTrack(MediaStreamTrack):
    """One viewer's view of a camera's shared encoder output."""

    kind = "video"

    def __init__(self, fanout: PacketFanout, queue_packets: int) -> None:
        super().__init__()
        self._fanout = fanout
        self._queue: deque[tuple[av.Packet[Any], float]] = deque()
        self._queue_packets = queue_packets
        self._wakeup = asyncio.Event()
        self._is_reading = False
        self._is_waiting_keyframe = True
        self.packets_sent = 0
        self.packets_dropped = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def recv(self) -> av.Packet[Any]:
        if not self._is_reading:
            # The transport is up: start from a fresh keyframe rather than stale packets.
            self._is_reading = True
            self._queue.clear()
            self._is_waiting_keyframe = True
            self._fanout.request_keyframe()
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        packet, produced_at = self._queue.popleft()
        self._fanout.observe_send(time.monotonic() - produced_at)
        self.packets_sent += 1
        return packet

    def offer(self, packet: av.Packet[Any], produced_at: float) -> int:
        """Queue a packet for this viewer; returns how many packets it dropped doing so."""
        if not self._is_reading or self.readyState != "live":
            return 0  # not connected yet: it will start from a requested keyframe
        dropped = 0
        if len(self._queue) >= self._queue_packets:
            dropped += len(self._queue)
            self._queue.clear()
            self._is_waiting_keyframe = True
        if self._is_waiting_keyframe:
            if not packet.is_keyframe:
                self.packets_dropped += dropped + 1
                return dropped + 1
            self._is_waiting_keyframe = False
        self._queue.append((packet, produced_at))
        self._wakeup.set()
        self.packets_dropped += dropped
        return dropped

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._queue.clear()
            self._wakeup.set()
            self._fanout.remove_viewer(self)


class PacketFanout:
    """The viewers of one camera and codec, fed by one encoder."""

    def __init__(
        self,
        camera_id: str,
        loop: asyncio.AbstractEventLoop,
        request_keyframe: Callable[[], None],
        metrics: EdgeMetrics,
        on_viewers_changed: Callable[[PacketFanout], None] | None = None,
        queue_packets: int = DEFAULT_QUEUE_PACKETS,
    ) -> None:
        if queue_packets < 1:
            raise ValueError("queue_packets must be >= 1")
        self.camera_id = camera_id
        self.metrics = metrics
        self.request_keyframe = request_keyframe
        self._loop = loop
        self._on_viewers_changed = on_viewers_changed
        self._queue_packets = queue_packets
        self._viewers: set[EncodedVideoTrack] = set()
        self.packets_published = 0

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    def add_viewer(self) -> EncodedVideoTrack:
        track = EncodedVideoTrack(self, self._queue_packets)
        self._viewers.add(track)
        self._changed()
        return track

    def remove_viewer(self, track: EncodedVideoTrack) -> None:
        if track in self._viewers:
            self._viewers.discard(track)
            track.stop()
            self._changed()

    def publish_threadsafe(self, packet: av.Packet[Any]) -> None:
        """Called by the encoder thread for each packet."""
        produced_at = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(self.publish, packet, produced_at)
        except RuntimeError:
            pass  # the loop is closing; nobody is left to watch

    def publish(self, packet: av.Packet[Any], produced_at: float | None = None) -> None:
        """Give a packet to every viewer (event loop)."""
        produced_at = time.monotonic() if produced_at is None else produced_at
        self.packets_published += 1
        dropped = 0
        for track in list(self._viewers):
            dropped += track.offer(packet, produced_at)
        if dropped:
            self.metrics.count_drop(self.camera_id, DropReason.VIEWER_SLOW, dropped)

    def observe_send(self, seconds: float) -> None:
        self.metrics.observe_stage(self.camera_id, "send", seconds)

    def close(self) -> None:
        """Stop every viewer's track (their peer connections see the track end)."""
        for track in list(self._viewers):
            track.stop()

    def _changed(self) -> None:
        if self._on_viewers_changed is not None:
            self._on_viewers_changed(self)
