"""A batch's detections packed for a worker and unpacked there are each frame's, unchanged."""

from __future__ import annotations

import pickle

import numpy as np

from edge.types import Detections
from edge.worker_messages import pack_results, unpack_results


def _dets(n: int, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    return Detections(
        xyxy=rng.random((n, 4), dtype=np.float32) * 100,
        score=rng.random(n, dtype=np.float32),
        class_id=rng.integers(0, 8, n).astype(np.int64),
    )


def test_packed_results_come_back_per_frame() -> None:
    frames = [("a", 7, 1.5, _dets(3, 0)), ("b", 9, 1.6, _dets(0, 1)), ("c", 2, 1.7, _dets(5, 2))]
    for sent in (frames, frames[:1], frames[1:2]):
        packed = pickle.loads(pickle.dumps(pack_results(sent)))  # it crosses a pipe
        assert len(packed[0]) == len(sent) and len(packed) == 4  # three arrays, whatever the frames
        back = unpack_results(packed)
        assert [f[:3] for f in back] == [f[:3] for f in sent]
        for (_, _, _, got), (_, _, _, want) in zip(back, sent, strict=True):
            for name in ("xyxy", "score", "class_id"):
                a, b = getattr(got, name), getattr(want, name)
                assert a.dtype == b.dtype and np.array_equal(a, b)
