"""Model-ready pictures in shared memory: a worker process writes, the batching process reads.

Why: a 720p frame pickled through a pipe costs megabytes of copying per frame in both processes;
a letterboxed uint8 picture at model resolution written once into a fixed slot costs the batching
process one copy (into its batch) and a descriptor of a few dozen bytes (`FrameRef`).

The mapping is never closed by hand: it goes with its `SlotArena` object, so whatever reads a slot
holds the arena meanwhile (a `SlotFrame` does). The arrays viewing it do not keep it: numpy holds
no buffer export of the segment, and a view read after its arena went reads unmapped memory and
crashes the process. One segment per worker generation for the cameras it starts with, and one more
per config reload that adds cameras to the running worker (`SlotSegments`: slot ids run on across a
generation's segments, so a `FrameRef`'s slot alone says where its picture lies);
`slots_per_camera` slots per camera, each `3×S×S` bytes. A slot is free, written (by the worker),
or held (by the batching process, from the descriptor's arrival until its batch copied it or it was
dropped); the batching process hands held slots back (a batch's in one message per worker), the
worker never writes a held one. Segment names start with `SHM_PREFIX` and the owning process id, so
that segments a crashed run left in /dev/shm are recognised and removed at the next start
(`remove_stale`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge.infer.letterbox import Letterbox

log = logging.getLogger(__name__)

SHM_PREFIX = "edge-slots-"
SHM_DIR = Path("/dev/shm")


def segment_name(owner_pid: int, worker: int, generation: int, part: int = 0) -> str:
    """`part`: the generation's segments after its first (cameras a reload added) count on."""
    name = f"{SHM_PREFIX}{owner_pid}-w{worker}-g{generation}"
    return f"{name}-s{part}" if part else name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink the segments of edge processes that no longer run; returns their names."""
    removed = []
    for path in sorted(shm_dir.glob(f"{SHM_PREFIX}*")):
        pid_text = path.name[len(SHM_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    if removed:
        log.info("removed %d shared-memory segment(s) of a previous run: %s", len(removed), removed)
    return removed


class FrameRef(NamedTuple):
    """What crosses the pipe for one picture: where it lies and how it was letterboxed. A named
    tuple of plain values: it pickles several times faster than a dataclass, and the batching
    process unpickles one per frame."""

    camera_id: str
    slot: int
    seq: int
    pts: float | None
    received_at: float
    """`time.monotonic()` when the worker decoded it (the clock is system-wide)."""
    geometry: tuple[float, int, int, int, int, int | None, int | None]
    """The `Letterbox` fields, in order (`letterbox()` rebuilds it)."""

    @classmethod
    def of(
        cls, camera_id: str, slot: int, seq: int, pts: float | None, received_at: float,
        lb: Letterbox,
    ) -> FrameRef:  # fmt: skip
        geometry = (lb.scale, lb.pad_x, lb.pad_y, lb.src_w, lb.src_h, lb.in_w, lb.in_h)
        return cls(camera_id, slot, seq, pts, received_at, geometry)

    def letterbox(self) -> Letterbox:
        return Letterbox(*self.geometry)

    @property
    def width(self) -> int:
        """The source picture's size."""
        return self.geometry[3]

    @property
    def height(self) -> int:
        return self.geometry[4]


def _no_tracking(name: str, rtype: str) -> None:
    """Stands in for `resource_tracker.register` while a segment opens (see `SlotArena`)."""


class SlotArena:
    """`cameras × per_camera` picture slots of `3×size×size` bytes in one shared segment, with
    the ids `base` .. `end - 1`."""

    def __init__(
        self, name: str, cameras: int, per_camera: int, size: int, *, create: bool, base: int = 0
    ) -> None:
        self.cameras, self.per_camera, self.size = cameras, per_camera, size
        self.base, self.end = base, base + cameras * per_camera
        self.slot_bytes = 3 * size * size
        nbytes = max(1, cameras * per_camera * self.slot_bytes)
        self.shm = shared_memory.SharedMemory(
            name=name, create=create, size=nbytes if create else 0
        )
        # The owner unlinks its segments itself (also a dead worker's, at once) and a crashed
        # run's at the next start; Python's resource tracker would unlink a segment when any
        # process that merely attached it exits, under the feet of the others.
        with contextlib.suppress(Exception):
            resource_tracker.unregister(self.shm._name, "shared_memory")  # type: ignore[attr-defined]
        self.name = name
        self._flat = np.ndarray((nbytes,), np.uint8, self.shm.buf)

    def camera_slots(self, camera: int) -> range:
        """The slot ids of the segment's `camera`-th camera."""
        start = self.base + camera * self.per_camera
        return range(start, start + self.per_camera)

    def view(self, slot: int, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Slot `slot` as a 3×H×W uint8 array (S×S unless a rect letterbox made it smaller)."""
        h, w = height or self.size, width or self.size
        start = (slot - self.base) * self.slot_bytes
        return self._flat[start : start + 3 * h * w].reshape(3, h, w)

    def picture(self, ref: FrameRef) -> np.ndarray:
        return self.view(ref.slot, ref.geometry[6], ref.geometry[5])

    def unlink(self) -> None:
        unregister = resource_tracker.unregister
        resource_tracker.unregister = _no_tracking  # type: ignore[assignment]
        try:
            with contextlib.suppress(FileNotFoundError):
                self.shm.unlink()
        finally:
            resource_tracker.unregister = unregister


class FreeSlots:
    """The worker's book of which of a camera's slots it may write (pure logic, no memory)."""

    def __init__(self, arena_slots: dict[str, range]) -> None:
        self._free: dict[str, list[int]] = {}
        self._owner: dict[int, str] = {}
        self.add(arena_slots)

    def add(self, arena_slots: dict[str, range]) -> None:
        """Cameras (a reload added) and their slots, all free."""
        for cam, slots in arena_slots.items():
            self.remove(cam)
            self._free[cam] = list(slots)
            self._owner.update(dict.fromkeys(slots, cam))

    def remove(self, camera_id: str) -> None:
        """Forget a camera (a reload removed it): its slots coming back later are ignored."""
        for slot in [s for s, cam in self._owner.items() if cam == camera_id]:
            del self._owner[slot]
        self._free.pop(camera_id, None)

    def take(self, camera_id: str) -> int | None:
        """A free slot of the camera, or None when the batching process holds all of them."""
        free = self._free.get(camera_id)
        return free.pop() if free else None

    def give_back(self, slot: int) -> None:
        cam = self._owner.get(slot)
        if cam is not None and slot not in self._free[cam]:
            self._free[cam].append(slot)

    def free_count(self, camera_id: str) -> int:
        return len(self._free.get(camera_id, ()))


class SlotSegments:
    """One worker generation's segments (both processes keep one): which segment holds a slot,
    and which cameras each segment's slots serve, so that a segment whose cameras a reload all
    removed goes (pure book-keeping: the caller maps and unlinks)."""

    def __init__(self) -> None:
        self._by_slot: dict[int, SlotArena] = {}
        self._segment: dict[str, SlotArena] = {}
        """Camera → the segment of its slots."""
        self.arenas: list[SlotArena] = []
        self.next_slot = 0
        """The first slot id of the generation's next segment."""

    def add(self, arena: SlotArena, cameras: Sequence[str]) -> dict[str, range]:
        """A segment for `cameras` (in its order), its ids after the others'; returns each
        camera's slots."""
        if arena.base < self.next_slot or arena.cameras != len(cameras):
            raise ValueError(
                f"segment {arena.name}: slots from {arena.base} for {arena.cameras} camera(s), "
                f"expected from {self.next_slot} on for {len(cameras)}"
            )
        self.arenas.append(arena)
        self._by_slot.update(dict.fromkeys(range(arena.base, arena.end), arena))
        self._segment.update(dict.fromkeys(cameras, arena))
        self.next_slot = arena.end
        return {cam: arena.camera_slots(i) for i, cam in enumerate(cameras)}

    def get(self, slot: int) -> SlotArena | None:
        """The segment holding `slot`; None once its cameras are all removed."""
        return self._by_slot.get(slot)

    def remove_camera(self, camera_id: str) -> SlotArena | None:
        """Forget a camera; returns its segment when no camera is left in it."""
        arena = self._segment.pop(camera_id, None)
        if arena is None or any(a is arena for a in self._segment.values()):
            return None
        self.arenas.remove(arena)
        for slot in range(arena.base, arena.end):
            del self._by_slot[slot]
        return arena
