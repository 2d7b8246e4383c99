"""Backoff rules: doubling ceilings, the cap, full-jitter bounds, and when it starts over."""

from __future__ import annotations

import random

import pytest

from edge.config import IngestConfig
from edge.ingest.backoff import Backoff


def test_ceiling_doubles_from_initial_up_to_the_cap():
    b = Backoff(0.5, 30.0, 60.0, random.Random(0))
    ceilings = []
    for _ in range(10):
        ceilings.append(b.ceiling)
        b.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert [s.ceiling for s in b.history] == ceilings


def test_full_jitter_spreads_delays_over_zero_to_ceiling():
    b = Backoff(1.0, 1.0, 60.0, random.Random(42))
    delays = [b.next_delay() for _ in range(2000)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert min(delays) < 0.05 and max(delays) > 0.95  # the whole range, not a fixed delay
    assert sum(delays) / len(delays) == pytest.approx(0.5, abs=0.05)
    assert len({round(d, 6) for d in delays}) > 1900  # no two cameras in lockstep


def test_delays_never_exceed_the_cap_even_after_many_failures():
    b = Backoff(0.5, 30.0, 60.0, random.Random(1))
    for _ in range(5000):
        assert b.next_delay() <= 30.0
    assert b.ceiling == 30.0


def test_only_a_healthy_connection_resets_the_backoff():
    b = Backoff(0.5, 30.0, 60.0, random.Random(2))
    for _ in range(4):
        b.next_delay()
    b.connection_ended(healthy_for_s=59.9)  # flapping camera: keep backing off
    assert b.ceiling == 8.0
    b.connection_ended(healthy_for_s=60.0)
    assert b.ceiling == 0.5 and b.attempt == 0


def test_from_config_uses_ingest_values():
    cfg = IngestConfig(backoff_initial_s=0.2, backoff_max_s=1.0, healthy_reset_s=5.0)
    b = Backoff.from_config(cfg)
    assert (b.initial_s, b.maximum_s, b.healthy_reset_s) == (0.2, 1.0, 5.0)
    assert "ceiling=0.2s" in repr(b)


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_nonsense_bounds_are_refused(initial, maximum):
    with pytest.raises(ValueError):
        Backoff(initial, maximum)


def test_a_refused_login_waits_in_the_upper_half_of_the_cap_at_once():
    b = Backoff(0.5, 30.0, 60.0, random.Random(3))
    delays = [b.next_delay(at_maximum=True) for _ in range(500)]
    assert all(15.0 <= d <= 30.0 for d in delays)
    assert min(delays) < 16.0 and max(delays) > 29.0  # still jittered across the half
    assert {s.ceiling for s in b.history} == {30.0}
    assert b.next_delay() <= 30.0 and b.history[-1].ceiling == 30.0  # stays at the cap after


def test_a_refused_login_after_growing_delays_keeps_counting_attempts():
    b = Backoff(1.0, 8.0, 60.0, random.Random(4))
    b.next_delay()
    b.next_delay()
    assert b.ceiling == 4.0
    b.next_delay(at_maximum=True)
    assert b.history[-1].ceiling == 8.0 and b.attempt == 4
    b.connection_ended(healthy_for_s=60.0)  # a later healthy connection still starts over
    assert b.ceiling == 1.0
