"""Progress of long offline work (`edge detect`, `edge analyze`) on a terminal: frames done,
frames/s and time left. Quiet when stderr is not a terminal, so logs and pipes stay clean."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO, TypeVar

import av
from tqdm import tqdm

T = TypeVar("T")


def expected_frames(source: str) -> int | None:
    """The frame count a local file announces (or its duration × rate); None for a URL or when
    the container does not say."""
    if "://" in source:
        return None
    try:
        with av.open(source) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base and stream.average_rate:
                return int(stream.duration * stream.time_base * stream.average_rate)
    except (OSError, IndexError, av.error.FFmpegError):
        pass  # the reader itself reports what is wrong with the file
    return None


def frame_progress(
    frames: Iterable[T], source: str, max_frames: int | None, stream: TextIO | None = None
) -> Iterable[T]:
    out = stream or sys.stderr
    if not out.isatty():
        return frames
    total = expected_frames(source)
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    bar: Iterable[T] = tqdm(
        frames, total=total, unit="frame", file=out, dynamic_ncols=True, smoothing=0.1
    )
    return bar
