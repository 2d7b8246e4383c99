"""Synchronous frame reader for offline commands (`edge detect`, `edge analyze`).

Live cameras go through `CameraSource` (latest-frame-only, reconnecting); recorded footage wants
the opposite: every frame, in order, as fast as the consumer takes them, then stop. Both open
through `edge.ingest.media`, so a URL here gets the same bounded reads and the same worded,
redacted errors (`OSError("cannot open URL: reason")`) as a camera of the service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction

import av

from edge.config import IngestConfig
from edge.ingest.media import MediaLocation, OpenError, error_reason, open_media
from edge.types import Frame

log = logging.getLogger(__name__)


def _pts_seconds(frame: av.VideoFrame) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * Fraction(frame.time_base))


def read_frames(source: str, camera_id: str = "file", timeout_s: float = 10.0) -> Iterator[Frame]:
    """Every decoded frame of a file or URL, in order; corrupt packets are skipped and logged.

    Raises OSError (cannot open, the stream broke) or ValueError (no video), with redacted
    messages that name the source."""
    media = MediaLocation.parse(source)
    ingest = IngestConfig(open_timeout_s=timeout_s, read_timeout_s=timeout_s)
    try:
        container = open_media(media, ingest)
    except OpenError as exc:
        raise OSError(f"cannot open {media.safe_url}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{media.safe_url} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        seq = errors = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    errors += 1
                    continue
                for image in frames:
                    yield Frame(camera_id, seq, _pts_seconds(image), time.monotonic(), image)
                    seq += 1
        except (av.error.ExitError, TimeoutError):
            raise OSError(f"{media.safe_url}: no data for {timeout_s:g} s, gave up") from None
        except av.error.FFmpegError as exc:
            raise OSError(f"{media.safe_url}: reading failed: {error_reason(exc)}") from None
        if errors:
            log.warning("camera %s: skipped %d corrupt packets", camera_id, errors)
