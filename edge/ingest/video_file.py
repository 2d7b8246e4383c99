"""Synchronous frame reader for offline commands (`edge detect`, `edge analyze`).

Live cameras go through `CameraSource` (latest-frame-only, reconnecting); recorded footage wants
the opposite: every frame, in order, as fast as the consumer takes them, then stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction

import av

from edge.redact import redact_url
from edge.types import Frame

log = logging.getLogger(__name__)


def _pts_seconds(frame: av.VideoFrame) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * Fraction(frame.time_base))


def read_frames(source: str, camera_id: str = "file", timeout_s: float = 10.0) -> Iterator[Frame]:
    """Every decoded frame of a file or URL, in order; corrupt packets are skipped and logged."""
    options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp") else {}
    try:
        container = av.open(source, options=options, timeout=(timeout_s, timeout_s))
    except (av.error.FFmpegError, OSError) as exc:
        raise OSError(f"cannot open {redact_url(source)}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{redact_url(source)} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        seq = errors = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                errors += 1
                continue
            for image in frames:
                yield Frame(camera_id, seq, _pts_seconds(image), time.monotonic(), image)
                seq += 1
        if errors:
            log.warning("camera %s: skipped %d corrupt packets", camera_id, errors)
