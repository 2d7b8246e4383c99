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
    live = SlotArena(segment_name(os.getpid(), 0, 3), 1, 2, 8, create=True)
    try:
        removed = remove_stale()
        assert stale.name in removed and live.name not in removed
        assert not (SHM_DIR / stale.name).exists() and (SHM_DIR / live.name).exists()
        assert all(n.startswith(SHM_PREFIX) for n in removed)
    finally:
        for a in (stale, live):
            a.unlink()
