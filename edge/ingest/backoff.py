"""Reconnect delays: exponential backoff with full jitter.

Many cameras behind one switch that reboots all drop at once; full jitter (a delay drawn
uniformly between 0 and the current ceiling) spreads their reconnects instead of hammering the
recorder in waves. The ceiling doubles per failed attempt up to a cap and goes back to the start
only once a connection has stayed healthy for a while, so a camera that flaps every few seconds
does not reconnect at full speed forever.

A refused login skips the doubling (`next_delay(at_maximum=True)`): a wrong password stays wrong,
and cameras lock accounts after a few failures, so it waits between half the cap and the cap
(still jittered, since every camera of a site tends to get the same wrong password at once).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from edge.config import IngestConfig


@dataclass(frozen=True, slots=True)
class BackoffStep:
    """One delay handed out: the ceiling it was drawn under and the delay itself, in seconds."""

    attempt: int
    ceiling: float
    delay: float


class Backoff:
    """Delays for attempt 0, 1, 2, …: uniform in [0, min(maximum, initial · 2^attempt)]."""

    def __init__(
        self,
        initial_s: float = 0.5,
        maximum_s: float = 30.0,
        healthy_reset_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or maximum_s < initial_s:
            raise ValueError("need 0 < initial_s <= maximum_s")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.healthy_reset_s = healthy_reset_s
        self.attempt = 0
        self.history: deque[BackoffStep] = deque(maxlen=64)
        self._rng = rng or random.Random()

    @classmethod
    def from_config(cls, config: IngestConfig, rng: random.Random | None = None) -> Backoff:
        return cls(config.backoff_initial_s, config.backoff_max_s, config.healthy_reset_s, rng)

    @property
    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # 2**attempt overflows a float after ~1000 doublings; the cap is reached long before.
        exponent = min(self.attempt, 64)
        return min(self.maximum_s, self.initial_s * 2.0**exponent)

    def next_delay(self, at_maximum: bool = False) -> float:
        """Draw the delay before the next attempt and raise the ceiling for the one after.

        `at_maximum`: jump to the cap at once and draw from its upper half."""
        if at_maximum:
            while self.ceiling < self.maximum_s:
                self.attempt += 1
        ceiling = self.ceiling
        delay = self._rng.uniform(ceiling / 2 if at_maximum else 0.0, ceiling)
        self.history.append(BackoffStep(self.attempt, ceiling, delay))
        self.attempt += 1
        return delay

    def connection_ended(self, healthy_for_s: float) -> None:
        """A connection that streamed for `healthy_reset_s` or longer earns a fresh start."""
        if healthy_for_s >= self.healthy_reset_s:
            self.reset()

    def reset(self) -> None:
        self.attempt = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(attempt={self.attempt}, ceiling={self.ceiling:.3g}s, "
            f"initial={self.initial_s}s, max={self.maximum_s}s)"
        )
