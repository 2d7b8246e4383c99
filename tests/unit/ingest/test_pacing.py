"""FPS cap and real-time pacing rules, on synthetic timestamps."""

from __future__ import annotations

import random

import pytest

from edge.ingest.pacing import FpsCap, FpsEstimator, RealtimePacer


def test_cap_to_half_the_rate_keeps_every_other_frame():
    cap = FpsCap(12.5)
    kept = [i for i in range(100) if cap.admit(i * 0.04)]
    assert kept == list(range(0, 100, 2))


def test_cap_tolerates_arrival_jitter():
    rng = random.Random(3)
    cap = FpsCap(10.0)
    times = [i / 30 + rng.uniform(-0.005, 0.005) for i in range(300)]  # 10 s at 30 fps
    kept = [t for t in times if cap.admit(t)]
    assert len(kept) == pytest.approx(100, abs=2)
    gaps = [b - a for a, b in zip(kept, kept[1:], strict=False)]
    assert min(gaps) > 0.07


def test_cap_above_the_source_rate_keeps_everything():
    cap = FpsCap(30.0)
    assert all(cap.admit(i * 0.04) for i in range(50))


def test_cap_restarts_when_time_goes_back_or_jumps():
    cap = FpsCap(5.0)
    assert cap.admit(10.0)
    assert not cap.admit(10.1)
    assert cap.admit(0.0)  # a looping file starts over
    assert cap.admit(100.0)  # a long gap: keep the next frame
    assert not cap.admit(100.1)
    assert cap.admit(100.2)


def test_cap_refuses_nonpositive_fps():
    with pytest.raises(ValueError):
        FpsCap(0)


def test_pacer_waits_for_each_frame_in_stream_time():
    p = RealtimePacer()
    assert p.delay(pts=5.0, now=100.0) == 0.0  # the first frame anchors the clocks
    assert p.delay(pts=5.04, now=100.0) == pytest.approx(0.04)
    assert p.delay(pts=5.08, now=100.05) == pytest.approx(0.03)
    assert p.delay(pts=5.12, now=100.2) == 0.0  # late: release at once


def test_pacer_reanchors_on_loop_and_after_a_long_lag():
    p = RealtimePacer(max_lag_s=1.0)
    p.delay(pts=0.0, now=0.0)
    assert p.delay(pts=9.0, now=9.0) == 0.0
    assert p.delay(pts=0.0, now=9.04) == 0.0  # the file looped: new anchor
    assert p.delay(pts=0.04, now=9.04) == pytest.approx(0.04)
    assert p.delay(pts=0.08, now=20.0) == 0.0  # consumer stalled for 11 s: no catch-up burst
    assert p.delay(pts=0.12, now=20.0) == pytest.approx(0.04)


def test_estimator_measures_the_rate_once_its_window_is_full():
    est = FpsEstimator(window=10)
    rates = [est.add(i * 0.04) for i in range(12)]
    assert rates[:9] == [None] * 9
    assert rates[9] == pytest.approx(25.0) and rates[11] == pytest.approx(25.0)


def test_estimator_starts_again_when_time_goes_back_or_stands_still():
    est = FpsEstimator(window=5)
    for i in range(4):
        assert est.add(10 + i * 0.1) is None
    assert est.add(0.0) is None  # a looping file: the jump back never enters the mean
    assert est.add(0.0) is None  # a repeated timestamp starts again too
    rates = [est.add(i / 12.5) for i in range(1, 5)]
    assert rates == [None, None, None, pytest.approx(12.5)]


def test_estimator_needs_two_frames():
    with pytest.raises(ValueError):
        FpsEstimator(window=1)
