"""One batch as an inference thread runs it, and the frames' pictures handed back.

Apart from `edge.infer.batcher` (which decides *when* a batch runs) because this is the part that
runs it, in a batch thread: it may touch the event loop only through `call_soon_threadsafe`. The
batch itself goes the detector's one way, `Detector.detect_batch`, which also records the
detector's metrics.

Frames prepared elsewhere (a worker process's letterboxed picture in shared memory) carry
`prepared()` (the batch then only copies them in) and `release()`, called when the picture was
copied into its batch (from the event loop; or by `on_copied`, in the batch thread, where it is
set) or the frame was dropped (`release()` must be idempotent: a batch that fails releases its
frames again). Plain frames carry neither and are letterboxed in the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from edge.types import Detections, Frame

log = logging.getLogger(__name__)


class BatchDetector(Protocol):
    """What the batcher needs of `edge.infer.detector.Detector`."""

    is_dynamic_batch: bool
    max_batch: int
    workers: int

    def detect_batch(
        self,
        frames: Sequence[Frame],
        *,
        skip_bad: bool = False,
        copied: Callable[[], None] | None = None,
        count_detections: bool = True,
    ) -> list[Detections | None]: ...


def run_batch_job(
    detector: BatchDetector,
    frames: Sequence[Frame],
    on_copied: Callable[[Sequence[Frame]], None] | None,
    loop: asyncio.AbstractEventLoop | None,
    count_detections: bool = True,
) -> list[Detections | None]:
    """One batch, in the batch thread; a frame that cannot be preprocessed (a broken picture) is
    left out alone (None). Once the batch holds the pictures, `on_copied(frames)` is called here,
    or, without it, frames that hold a picture are released on `loop`."""
    copied = None
    if on_copied is not None:

        def copied() -> None:  # the pictures are free once they are in the batch
            try:
                on_copied(frames)
            except Exception:
                log.exception("on_copied callback failed")

    elif any(hasattr(f, "release") for f in frames) and loop is not None:
        running = loop

        def copied() -> None:
            running.call_soon_threadsafe(release_all, frames)

    return detector.detect_batch(
        frames, skip_bad=True, copied=copied, count_detections=count_detections
    )


def release_all(frames: Sequence[Frame]) -> None:
    for frame in frames:
        release(frame)


def release(frame: Frame) -> None:
    """A frame that leaves the batcher (batched, dropped) gives back what holds its picture: a
    worker's shared-memory slot (`edge.ingest.slots`); plain frames hold nothing."""
    hand_back = getattr(frame, "release", None)
    if hand_back is not None:
        hand_back()
