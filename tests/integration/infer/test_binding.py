"""IOBinding under concurrent workers on the real model: results stay right, nothing hangs.

Where CUDA is present the detector runs on the GPU (where binding is the default); on a CPU-only
box binding is forced, which runs the same ORT calls with host memory.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.infer.detector import Detector
from edge.metrics import EdgeMetrics


@pytest.mark.timeout(120)
def test_three_workers_share_the_bound_session(dynamic_model: Path) -> None:
    det = Detector(DetectorConfig(model=dynamic_model, workers=3), EdgeMetrics(), io_binding=True)
    plain = Detector(
        DetectorConfig(model=dynamic_model, providers=[det.provider]),
        EdgeMetrics(),
        io_binding=False,
    )
    rng = np.random.default_rng(7)
    batches = [rng.uniform(0, 255, (1 + i % 3, 3, 416, 416)).astype(np.float32) for i in range(6)]
    expected = [plain.infer(b) for b in batches]
    errors: list[str] = []
    start = threading.Barrier(3)

    def worker(k: int) -> None:
        start.wait()
        for i in range(k, 30, 3):  # each thread its own order, batch sizes interleaved
            j = i % len(batches)
            if not np.allclose(det.infer(batches[j]), expected[j], atol=1e-4):
                errors.append(f"thread {k}, batch {j}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a bound run hung"
    assert not errors, errors
