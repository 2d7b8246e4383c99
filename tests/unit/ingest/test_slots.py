"""Shared-memory slots and their descriptors (`edge.ingest.slots`), in one process and across a
spawned one."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from edge.infer.letterbox import fit
from edge.ingest.slots import (
    SHM_DIR,
    SHM_PREFIX,
    FrameRef,
    FreeSlots,
    SlotArena,
    SlotSegments,
    remove_stale,
    segment_name,
)


@pytest.fixture
def arena():
    a = SlotArena(segment_name(os.getpid(), 9, 1), cameras=2, per_camera=3, size=32, create=True)
    yield a
    a.unlink()


def test_slots_are_disjoint_views(arena: SlotArena) -> None:
    assert list(arena.camera_slots(1)) == [3, 4, 5]
    for s in range(6):
        arena.view(s)[:] = s
    assert all(int(arena.view(s).min()) == int(arena.view(s).max()) == s for s in range(6))
    small = arena.view(4, 16, 32)  # a rect picture fills the slot's first bytes
    assert small.shape == (3, 16, 32) and (small == 4).all()


def test_a_spawned_process_writes_what_this_one_reads(arena: SlotArena) -> None:
    # another interpreter, as a worker is: attach the segment, write one slot, exit
    fill = (
        "import os; from edge.ingest.slots import SlotArena; "
        f"a = SlotArena({arena.name!r}, 2, 3, 32, create=False); a.view(2)[:] = 77; "
        "os._exit(0)  # a worker's way out: its mappings stay until the process is gone"
    )
    subprocess.run([sys.executable, "-c", fill], check=True, timeout=60)
    assert (arena.view(2) == 77).all() and (arena.view(1) == 0).all()
    assert (SHM_DIR / arena.name).exists()  # the child's exit did not unlink it


def test_descriptor_is_small_and_rebuilds_the_letterbox(arena: SlotArena) -> None:
    lb = fit(1280, 720, 32, center=False, rect=True)
    ref = FrameRef.of("cam-1", 4, 17, 0.68, 123.5, lb)
    back = pickle.loads(pickle.dumps(ref))
    assert back == ref and back.letterbox() == lb
    assert (back.width, back.height) == (1280, 720)
    assert len(pickle.dumps(ref)) < 200
    assert arena.picture(back).shape == (3, lb.in_h, lb.in_w)


def test_free_slots_hand_out_each_slot_once() -> None:
    free = FreeSlots({"a": range(0, 3), "b": range(3, 6)})
    taken = [free.take("a") for _ in range(3)]
    assert sorted(taken) == [0, 1, 2] and free.take("a") is None and free.free_count("b") == 3
    free.give_back(1)
    free.give_back(1)  # twice is still one slot
    assert free.free_count("a") == 1 and free.take("a") == 1


def test_stale_segments_of_dead_processes_are_removed() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    stale = SlotArena(segment_name(dead_pid, 0, 3), 1, 2, 8, create=True)
    added = SlotArena(segment_name(dead_pid, 0, 3, part=2), 1, 2, 8, create=True, base=2)
    live = SlotArena(segment_name(os.getpid(), 0, 3), 1, 2, 8, create=True)
    try:
        removed = remove_stale()
        assert stale.name in removed and added.name in removed and live.name not in removed
        assert not (SHM_DIR / stale.name).exists() and (SHM_DIR / live.name).exists()
        assert all(n.startswith(SHM_PREFIX) for n in removed)
    finally:
        for a in (stale, added, live):
            a.unlink()


def test_a_later_segment_carries_on_the_generations_slot_ids() -> None:
    """Cameras a reload adds get a segment whose slot ids follow the generation's others, so a
    slot id alone finds its segment; a segment goes once its cameras are all removed."""
    pid = os.getpid()
    segs = SlotSegments()
    first = SlotArena(segment_name(pid, 7, 1), 2, 2, 8, create=True)
    added = SlotArena(segment_name(pid, 7, 1, part=4), 1, 2, 8, create=True, base=4)
    try:
        assert added.name == f"{first.name}-s4" and first.name.endswith("-w7-g1")
        assert segs.add(first, ["a", "b"]) == {"a": range(0, 2), "b": range(2, 4)}
        assert segs.add(added, ["c"]) == {"c": range(4, 6)} and segs.next_slot == 6
        with pytest.raises(ValueError, match="slots from 0"):
            segs.add(first, ["x", "y"])  # its ids are taken
        added.view(5)[:] = 9
        assert segs.get(5) is added and segs.get(1) is first and segs.get(6) is None
        assert (added.view(5) == 9).all() and (added.view(4) == 0).all()
        assert (first.view(3) == 0).all()  # its own bytes: slot 5 is the added segment's second
        assert segs.remove_camera("a") is None  # b still uses the first segment
        assert segs.get(0) is first
        assert segs.remove_camera("c") is added and segs.get(4) is None
        assert segs.arenas == [first]
        assert segs.remove_camera("c") is None and segs.remove_camera("b") is first
        assert segs.arenas == [] and segs.next_slot == 6  # ids are never reused in a generation
    finally:
        for a in (first, added):
            a.unlink()
    assert not list(SHM_DIR.glob(f"{SHM_PREFIX}{pid}-w7-*"))


def test_free_slots_of_added_and_removed_cameras() -> None:
    free = FreeSlots({"a": range(0, 2)})
    free.add({"b": range(2, 4)})
    assert free.take("b") in (2, 3) and free.free_count("b") == 1
    free.remove("a")
    assert free.free_count("a") == 0 and free.take("a") is None
    free.give_back(0)  # a late slot of a removed camera is nobody's
    assert free.free_count("a") == 0
    free.add({"a": range(4, 6)})  # re-added under the same id: only its new slots
    free.give_back(1)
    assert sorted(free.take("a") for _ in range(2)) == [4, 5] and free.take("a") is None
