"""Pure batching policy of the cross-camera `Batcher`: no asyncio, no threads, no clock of its own.

Why a module of its own: these are the decisions (how long a batch may wait, how many frames make
it full, which frame of a camera is kept, whether a camera still counts as streaming) that tests
can check exactly with made-up timestamps, apart from the threads and the event loop in
`batcher.py`. The plain result and counter records live here too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from edge.types import Frame

DEFAULT_FPS = 25.0
"""Frame rate assumed for the deadline while no camera's rate is known."""
MAX_ESTIMATED_FPS = 120.0


def batch_deadline_s(
    fps_values: Iterable[float | None], deadline_ms: float | None, default_fps: float = DEFAULT_FPS
) -> float:
    """Configured deadline, else one frame interval of the fastest camera whose rate is known."""
    if deadline_ms is not None:
        return deadline_ms / 1000.0
    known = [f for f in fps_values if f is not None and f > 0]
    return 1.0 / min(max(known) if known else default_fps, MAX_ESTIMATED_FPS)


def batch_capacity(
    n_streaming: int, max_batch: int, dynamic_batch: bool, free_workers: int = 1
) -> int:
    """Frames that make a batch full: the streaming cameras shared out over the free workers
    (so that they run side by side instead of one waiting), capped; 1 for a frozen model."""
    if not dynamic_batch:
        return 1
    share = -(-n_streaming // max(1, free_workers))  # ceiling
    return max(1, min(share, max_batch))


@dataclass(slots=True)
class Pending:
    frame: Frame
    submitted_at: float
    """When this frame reached the batcher (its queue wait starts here)."""
    waiting_since: float
    """When the camera's slot became occupied; a superseding frame keeps it, so the deadline of a
    camera that keeps sending can never be pushed back."""


class LatestSlots:
    """At most one pending frame per camera: a newer frame replaces the older one."""

    def __init__(self) -> None:
        self._slots: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._slots

    def put(self, frame: Frame, now: float) -> Frame | None:
        """Store `frame`; return the frame it superseded, if any."""
        old = self._slots.get(frame.camera_id)
        since = old.waiting_since if old else now
        self._slots[frame.camera_id] = Pending(frame, submitted_at=now, waiting_since=since)
        return old.frame if old else None

    def waiting(self, busy: Collection[str] = ()) -> list[Pending]:
        """Pending frames of cameras not in `busy` (those with a frame in a running batch)."""
        return [p for c, p in self._slots.items() if c not in busy]

    def oldest_waiting_since(self, busy: Collection[str] = ()) -> float | None:
        return min((p.waiting_since for p in self.waiting(busy)), default=None)

    def pop_stale(self, now: float, stale_s: float) -> list[Frame]:
        """Remove and return frames received more than `stale_s` before `now`."""
        stale = [c for c, p in self._slots.items() if now - p.frame.received_at > stale_s]
        return [self._slots.pop(c).frame for c in stale]

    def pop_all(self) -> list[Frame]:
        """Remove and return every pending frame (the batcher stops: they will never run)."""
        frames = [p.frame for p in self._slots.values()]
        self._slots.clear()
        return frames

    def take(self, n: int, busy: Collection[str] = ()) -> list[Pending]:
        """Remove and return up to `n` frames of cameras not in `busy`, longest-waiting first (so
        nobody starves)."""
        chosen = sorted(self.waiting(busy), key=lambda p: p.waiting_since)[:n]
        for p in chosen:
            del self._slots[p.frame.camera_id]
        return chosen


@dataclass(slots=True)
class CameraActivity:
    """What the batcher knows of one camera's liveness and frame rate."""

    enabled: bool = True
    fps: float | None = None
    """Rate given by `set_streaming` (the source's advertised rate)."""
    last_submit: float | None = None
    interval_ewma: float | None = None

    def record_submit(self, now: float) -> None:
        if self.last_submit is not None:
            dt = now - self.last_submit
            if dt > 0:
                prev = self.interval_ewma
                self.interval_ewma = dt if prev is None else 0.8 * prev + 0.2 * dt
        self.last_submit = now

    def rate(self) -> float | None:
        if self.fps:
            return self.fps
        if self.interval_ewma:
            return 1.0 / self.interval_ewma
        return None

    def is_streaming(self, now: float, stale_s: float) -> bool:
        """Enabled and sent a frame recently (within the stale budget or 2.5 frame intervals)."""
        if not self.enabled or self.last_submit is None:
            return False
        rate = self.rate()
        window = max(stale_s, 2.5 / rate) if rate else stale_s
        return now - self.last_submit <= window


class BatchQueue:
    """The batcher's state between frames and batches: each camera's latest pending frame and
    activity, the cameras with a frame in a running batch, and when the next batch is due. No lock
    and no clock of its own: the batcher holds its lock around every call and passes the time."""

    def __init__(
        self, max_batch: int, workers: int, dynamic: bool, stale_s: float,
        deadline_ms: float | None,
    ) -> None:  # fmt: skip
        self.max_batch, self.workers, self.dynamic = max_batch, workers, dynamic
        self.stale_s, self.deadline_ms = stale_s, deadline_ms
        self.slots = LatestSlots()
        self.cameras: dict[str, CameraActivity] = {}
        self.busy: set[str] = set()
        """Cameras with a frame in a running batch."""
        self.running = 0
        """Batches being run."""

    def offer(self, frame: Frame, now: float) -> Frame | None:
        """Keep `frame` as its camera's latest (which counts as streaming again); the frame it
        superseded, if any."""
        cam = self.cameras.setdefault(frame.camera_id, CameraActivity())
        cam.enabled = True
        cam.record_submit(now)
        return self.slots.put(frame, now)

    def set_streaming(self, camera_id: str, streaming: bool, fps: float | None) -> None:
        cam = self.cameras.setdefault(camera_id, CameraActivity())
        cam.enabled = streaming
        if fps is not None and fps > 0:
            cam.fps = fps

    def streaming(self, now: float) -> list[str]:
        return [c for c, a in self.cameras.items() if a.is_streaming(now, self.stale_s)]

    def policy(self, now: float) -> tuple[int, float]:
        """(capacity, deadline_s) in one pass over the cameras: the next batch's share of the
        streaming cameras that have no frame in a running batch, and how long its oldest frame
        may wait."""
        idle, rates = 0, []
        for camera_id, activity in self.cameras.items():
            if activity.is_streaming(now, self.stale_s):
                rates.append(activity.rate())
                idle += camera_id not in self.busy
        free = max(1, self.workers - self.running)
        capacity = batch_capacity(idle, self.max_batch, self.dynamic, free)
        return capacity, batch_deadline_s(rates, self.deadline_ms)

    def due(self, now: float) -> tuple[int, float | None]:
        """(capacity, seconds until the next batch is due): 0 when the idle cameras' pending
        frames fill a batch or the oldest has waited one deadline, None when none is pending."""
        since = self.slots.oldest_waiting_since(self.busy)
        if since is None:
            return 0, None
        capacity, deadline_s = self.policy(now)
        remaining = since + deadline_s - now
        if len(self.slots.waiting(self.busy)) >= capacity or remaining <= 0:
            return capacity, 0.0
        return capacity, remaining

    def take(self, capacity: int, now: float) -> tuple[list[Pending], list[Frame]]:
        """Up to one batch of the idle cameras' frames, their cameras now running, after taking
        out the frames gone stale (returned second: they are dropped)."""
        stale = self.slots.pop_stale(now, self.stale_s)
        batch = self.slots.take(capacity, self.busy)
        if batch:
            self.busy.update(p.frame.camera_id for p in batch)
            self.running += 1
        return batch, stale

    def pop_all(self) -> list[Frame]:
        """Every pending frame, taken out (the batcher stops)."""
        self.busy.clear()
        return self.slots.pop_all()

    def finish(self, cameras: Iterable[str]) -> None:
        """A batch of `cameras` ended: they may be batched again."""
        self.running -= 1
        self.busy.difference_update(cameras)


@dataclass(slots=True)
class BatcherStats:
    """Plain counters for tests and benchmarks (the Prometheus metrics carry the same facts)."""

    submitted: int = 0
    batches: int = 0
    frames_inferred: int = 0
    superseded: int = 0
    stale: int = 0
    errors: int = 0
    result_queue_drops: int = 0
    shutdown: int = 0
    """Frames pending and results no subscriber took when the batcher stopped."""
    batch_sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch_size(self) -> float:
        return self.frames_inferred / self.batches if self.batches else 0.0
