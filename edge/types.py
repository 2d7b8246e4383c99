"""Small typed values passed downstream between stages.

Stages never hand each other tuples or dicts: a `Frame` leaves ingest, `Detections` leave the
detector (and come back from the tracker with `track_id` filled in). Both are frozen so that a
stage can never change what another stage is still reading.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import VideoReformatter

_reformatters = threading.local()


def convert(
    image: av.VideoFrame, width: int | None = None, height: int | None = None, fmt: str = "bgr24"
) -> np.ndarray:
    """`image` as an array of `fmt`, scaled during the colour conversion; safe to call on the
    same picture from several threads at once, and after a fork.

    Why not `image.reformat(...)`: PyAV keeps one swscale context per frame, and two threads
    converting the same frame at once (the inference workers, the plate reader, the publisher)
    deadlock in it (seen: two threads, two sizes, hung within 6000 conversions). One reformatter
    per thread shares nothing. Single-threaded swscale, because a context with scaler threads
    hangs a forked child that uses or frees it (the threads stay behind in the parent); the
    pipeline's parallelism is across cameras anyway."""
    reformatter = getattr(_reformatters, "value", None)
    if reformatter is None:
        reformatter = _reformatters.value = VideoReformatter()
    return reformatter.reformat(image, width, height, fmt, threads=1).to_ndarray()


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture of one camera.

    The picture stays in the decoder's own format (usually YUV 4:2:0): converting a full-size frame
    to BGR costs ten times the decode, so consumers ask for the size they need with `to_bgr`.
    """

    camera_id: str
    seq: int
    pts: float | None
    """Presentation time in seconds from the stream, None when the stream gives none."""
    received_at: float
    """`time.monotonic()` when the decoder produced the frame."""
    image: av.VideoFrame

    @property
    def width(self) -> int:
        return int(self.image.width)

    @property
    def height(self) -> int:
        return int(self.image.height)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle the picture's planes, so that a stage can move to a worker process.

        `av.VideoFrame` itself does not pickle. The planes travel in the decoder's own format
        (no colour conversion); `received_at` stays valid as the monotonic clock is system-wide.
        """
        image = self.image
        fmt = image.format.name if image.format.name in _PICKLED_FORMATS else "yuv420p"
        planes = convert(image, fmt=fmt)
        return _rebuild_frame, (self.camera_id, self.seq, self.pts, self.received_at, fmt, planes)

    def to_bgr(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """The picture as an H×W×3 uint8 BGR array, scaled during the colour conversion."""
        return convert(self.image, width or self.width, height or self.height)


_PICKLED_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12", "gray", "rgb24", "bgr24"})


def _rebuild_frame(
    camera_id: str, seq: int, pts: float | None, received_at: float, fmt: str, planes: np.ndarray
) -> Frame:
    return Frame(camera_id, seq, pts, received_at, av.VideoFrame.from_ndarray(planes, format=fmt))


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes of one frame as columns (supervision's layout): row i of every array is one object.

    `xyxy` is in source-frame pixels. `track_id` is None until a tracker has assigned identities.
    """

    xyxy: np.ndarray = field(default_factory=_empty_boxes)
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    track_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must be n×4, got {self.xyxy.shape}")
        for name in ("score", "class_id"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.track_id is not None and self.track_id.shape != (n,):
            raise ValueError(f"track_id must have shape ({n},), got {self.track_id.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls()


@dataclass(frozen=True, slots=True)
class DetectedFrame:
    """A frame together with what the detector found on it (and, later, tracks)."""

    frame: Frame
    detections: Detections
    inferred_at: float
    """`time.monotonic()` when the batch holding this frame finished inference."""
