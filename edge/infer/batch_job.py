"""One batch as an inference thread runs it, and the frames' pictures handed back.

Apart from `edge.infer.batcher` (which decides *when* a batch runs, on the event loop) because
this is the part that runs off the loop, in a batch thread: it may touch the loop only through
`call_soon_threadsafe`.

Frames prepared elsewhere (a worker process's letterboxed picture in shared memory) carry
`prepared()` (the batch then only copies them in) and `release()`, called when the picture was
copied into its batch (from the event loop; or by `on_copied`, in the batch thread, where it is
set) or the frame was dropped, and again when a batched frame's results are delivered
(`release()` must be idempotent). Plain frames carry neither and are letterboxed here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import numpy as np

from edge.infer.detector import BatchOutcome, Prepare
from edge.infer.letterbox import Letterbox
from edge.types import Frame

log = logging.getLogger(__name__)


class BatchDetector(Protocol):
    """What the batcher needs of `edge.infer.detector.Detector`."""

    is_dynamic_batch: bool
    max_batch: int
    workers: int
    class_names: list[str]

    def preprocess(self, frame: Frame) -> tuple[np.ndarray, Letterbox]: ...
    def run_batch(
        self,
        jobs: Sequence[Prepare],
        skip_bad: Callable[[int], None] | None = None,
        copied: Callable[[], None] | None = None,
    ) -> BatchOutcome: ...


def run_batch_job(
    detector: BatchDetector,
    frames: Sequence[Frame],
    on_copied: Callable[[Sequence[Frame]], None] | None,
    loop: asyncio.AbstractEventLoop | None,
) -> BatchOutcome:
    """One batch, in the batch thread; a frame that cannot be preprocessed (a broken picture) is
    left out alone. Once the batch holds the pictures, `on_copied(frames)` is called here, or,
    without it, frames that hold a picture are released on `loop`."""

    def bad(i: int) -> None:
        f = frames[i]
        log.exception("camera %s: cannot preprocess frame %d", f.camera_id, f.seq)

    prepare = detector.preprocess
    jobs = [getattr(f, "prepared", None) or partial(prepare, f) for f in frames]
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

    if copied is None:
        return detector.run_batch(jobs, bad)
    return detector.run_batch(jobs, bad, copied=copied)


def release_all(frames: Sequence[Frame]) -> None:
    for frame in frames:
        release(frame)


def release(frame: Frame) -> None:
    """A frame that leaves the batcher (batched, dropped) gives back what holds its picture: a
    worker's shared-memory slot (`edge.ingest.slots`); plain frames hold nothing."""
    hand_back = getattr(frame, "release", None)
    if hand_back is not None:
        hand_back()
