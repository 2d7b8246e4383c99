"""The service's handle on one camera worker process, and the frames that view its slots.

Apart from `edge.workers` (which starts, feeds and restarts the workers) because these are the
pieces that outlive a worker's process or live outside the event loop: a `SlotFrame` may still sit
in the batcher, or in a batch thread, after its worker died and was restarted (its `generation`
tells), a `WorkerSender` sends from a thread of its own, and a batch thread hands a batch's slots
and detections straight back to the workers (`return_slots`, `send_results`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from edge.config import CameraConfig
from edge.infer.letterbox import Letterbox
from edge.ingest.slots import FrameRef, SlotArena, SlotSegments
from edge.metrics import DropReason, EdgeMetrics
from edge.types import Detections, Frame
from edge.worker_messages import pack_results


class SlotFrame:
    """A worker's picture as the batcher sees it: `prepared()` views its slot, `release()` hands
    the slot back (once)."""

    __slots__ = ("ref", "owner", "generation", "_arena", "_held", "camera_id", "seq", "received_at")

    def __init__(self, ref: FrameRef, owner: WorkerHandle, arena: SlotArena) -> None:
        # `generation`: the owner's process that filled the slot (a restart makes a new one);
        # `arena`: the owner's segment holding the slot (`owner.slots`).
        self.ref, self.owner, self.generation = ref, owner, owner.generation
        self._arena = arena  # keeps the mapping alive while the frame lives
        self._held = True
        self.camera_id, self.seq, self.received_at = ref.camera_id, ref.seq, ref.received_at

    @property
    def width(self) -> int:
        return self.ref.width

    @property
    def height(self) -> int:
        return self.ref.height

    def prepared(self) -> tuple[np.ndarray, Letterbox]:
        return self._arena.picture(self.ref), self.ref.letterbox()

    def release(self) -> None:
        """From the event loop's thread (a frame dropped, or its batch failed)."""
        if self._held:
            self._held = False
            self.owner.release(self.generation, self.ref.slot)
            self.owner.notify()

    def detach(self) -> bool:
        """From a batch thread: whether the slot was held, now handed back by the caller."""
        held, self._held = self._held, False
        return held


class WorkerSender:
    """Sends to one worker without blocking the event loop: a send blocks while the pipe is full,
    and the loop must keep reading that worker's frames meanwhile (or both would wait on each
    other, each blocked in its send).

    `send` (event loop) queues for a thread of its own; `send_now` (a batch thread, which may
    block) sends at once, so a batch's slots and detections reach the worker without waking
    another thread. One lock keeps the two from interleaving a message's bytes."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._broken = False
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, msg: tuple[Any, ...]) -> None:
        self._queue.put(msg)

    def send_now(self, msg: tuple[Any, ...]) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                self._conn.send(msg)
            except OSError:  # the worker died: its reader in the loop sees the end of the pipe
                self._broken = True

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (msg := self._queue.get()) is not None and not self._broken:
            self.send_now(msg)


@dataclass(eq=False)
class WorkerHandle:
    """One worker as the service tracks it across restarts: its cameras, its current process
    (`generation`), and the slots of its dropped frames, due back to it."""

    index: int
    cameras: tuple[CameraConfig, ...]
    generation: int = 0
    slots: SlotSegments = field(default_factory=SlotSegments)
    """The current process's segments (none while it is down)."""
    process: BaseProcess | None = None
    conn: Connection | None = None
    sender: WorkerSender | None = None
    started_at: float = 0.0
    failures: int = 0
    releases: list[int] = field(default_factory=list)
    watched: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """What the worker was told last: camera → codecs its viewers take (watched cameras only)."""
    on_release: Callable[[], None] | None = None
    retiring: bool = False
    """Stopped on purpose (a reload took its last camera away): its end is no death."""

    def tell_watched(self, watched: dict[str, tuple[str, ...]]) -> None:
        """Tell the worker its watched cameras' codecs, if they changed since it was told."""
        if watched != self.watched and self.sender is not None:
            self.watched = watched
            self.sender.send(("watch", watched))

    def release(self, generation: int, slot: int) -> None:
        if generation == self.generation:
            self.releases.append(slot)

    def notify(self) -> None:
        if self.on_release is not None:
            self.on_release()


def return_slots(frames: Sequence[Frame]) -> None:
    """In a batch thread, once the batch holds its pictures: their slots go back to their
    workers at once (so that a camera's next frame is letterboxed while this batch runs), in
    one message per worker, sent from this thread."""
    slots: dict[tuple[WorkerHandle, int], list[int]] = {}
    for frame in frames:
        if isinstance(frame, SlotFrame) and frame.detach():
            slots.setdefault((frame.owner, frame.generation), []).append(frame.ref.slot)
    for (w, generation), mine in slots.items():
        sender = w.sender
        if sender is not None and generation == w.generation:
            sender.send_now(("sync", mine, []))


def send_results(
    owner: Mapping[str, WorkerHandle],
    metrics: EdgeMetrics,
    frames: Sequence[Frame],
    detections: Sequence[Detections | None],
) -> None:
    """In a batch thread: the batch's detections go straight back to the workers of its frames
    (`owner`: each camera's worker now), one message per worker and batch."""
    by_worker: dict[WorkerHandle, list[tuple[str, int, float, Detections]]] = {}
    for frame, dets in zip(frames, detections, strict=True):
        w = owner.get(frame.camera_id)
        if dets is None or w is None:  # failed (counted by the batcher), or camera removed
            continue
        if (
            not isinstance(frame, SlotFrame)
            or frame.owner is not w  # a camera restarted by a reload runs in another worker now
            or frame.generation != w.generation
        ):  # inferred for a worker that died since: nobody tracks it
            metrics.count_drop(frame.camera_id, DropReason.ERROR)
            continue
        by_worker.setdefault(w, []).append((frame.camera_id, frame.seq, frame.received_at, dets))
    for w, mine in by_worker.items():
        sender = w.sender
        if sender is not None:
            sender.send_now(("sync", [], [pack_results(mine)]))
