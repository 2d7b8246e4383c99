"""Metrics recorded in a worker process, replayed on the service's one `EdgeMetrics`.

Why: the registry that `/metrics` serves lives in the batching process, and every series must keep
its meaning whichever process saw the event (README's rules, e.g. decoded = published + dropped).
Rather than a second set of series per process, a worker's stages record into a `MetricsRecorder`
with `EdgeMetrics`' own API (`metrics.frames_decoded.labels(camera=c).inc()`,
`metrics.observe_stage(...)`); the recorder keeps each call as a small tuple, and `take()` merges
them into a few records per series: the increments of a counter into one, the observations of a
histogram into one list, the FPS ticks of a point into one list of times. The worker ships them a
few times a second, and `MetricsReplayer` applies each merged record at once, with each labelled
child looked up once and cached. The batching process therefore spends per series and shipment
what it spent per frame and call before (it caps the whole box).

`observe_many` is the histogram side of that: a list of observations in one pass.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from edge.metrics import EdgeMetrics

Labels = tuple[tuple[str, str], ...]
Record = tuple[Any, ...]
"""What crosses the pipe, after `take()`:
- ("c", family, labels, "inc", (n,)): the merged increments of a labelled child (labels as sorted
  (name, value) pairs); ("c", family, labels, op, args) for any other call on one (`set`, ...);
- ("o", family, labels, [seconds...]): observations of a labelled histogram child;
- ("t", camera, point, [time...]): `tick_fps` calls (their `time.monotonic()`);
- ("m", method, args): any other `EdgeMetrics` method call, in order."""

_TERMINAL = frozenset({"inc", "dec", "set", "observe"})
_STAGE_FAMILY = "stage_seconds"
_END_TO_END_FAMILY = "end_to_end_seconds"


class _Child:
    __slots__ = ("_family", "_labels", "_out")

    def __init__(self, out: list[Record], family: str, labels: Labels) -> None:
        self._out, self._family, self._labels = out, family, labels

    def __getattr__(self, op: str) -> Any:
        if op not in _TERMINAL:
            raise AttributeError(f"a worker cannot call {self._family}.labels(...).{op}")
        out, family, labels = self._out, self._family, self._labels
        return lambda *args: out.append(("c", family, labels, op, args))


class _Family:
    __slots__ = ("_name", "_out")

    def __init__(self, out: list[Record], name: str) -> None:
        self._out, self._name = out, name

    def labels(self, **labels: str) -> _Child:
        return _Child(self._out, self._name, tuple(sorted(labels.items())))


class MetricsRecorder:
    """Stands in for `EdgeMetrics` in a worker; `take()` returns and forgets what was recorded,
    merged (see module doc)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def take(self) -> list[Record]:
        # In place (decode threads append meanwhile): each step is atomic under the GIL, and a
        # record appended between the two lands after the slice and stays.
        out = self.records[:]
        del self.records[: len(out)]
        return merge(out)

    # The calls made per frame, recorded as what they do (`merge` groups them by series).
    def observe_stage(self, camera: str, stage: str, seconds: float) -> None:
        labels = (("camera", camera), ("stage", stage))
        self.records.append(("c", _STAGE_FAMILY, labels, "observe", (seconds,)))

    def observe_end_to_end(self, camera: str, seconds: float) -> None:
        labels = (("camera", camera),)
        self.records.append(("c", _END_TO_END_FAMILY, labels, "observe", (seconds,)))
        self.records.append(("c", "frames_published", labels, "inc", ()))
        self.records.append(("t", camera, "published", time.monotonic()))

    def observe_rendered(self, camera: str, seconds: float) -> None:
        labels = (("camera", camera),)
        self.records.append(("c", "video_latency_seconds", labels, "observe", (seconds,)))
        self.records.append(("c", "frames_rendered", labels, "inc", ()))
        self.records.append(("t", camera, "rendered", time.monotonic()))

    def tick_fps(self, camera: str, point: str, now: float | None = None) -> None:
        # `time.monotonic()` is system-wide: the service's FPS window takes the worker's times.
        self.records.append(("t", camera, point, time.monotonic() if now is None else now))

    def count_drop(self, camera: str, reason: str, n: int = 1) -> None:
        labels = (("camera", camera), ("reason", str(reason)))
        self.records.append(("c", "frames_dropped", labels, "inc", (n,)))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(EdgeMetrics, name, None)
        if callable(attr):
            out = self.records
            return lambda *args: out.append(("m", name, args))
        return _Family(self.records, name)


def merge(records: list[Record]) -> list[Record]:
    """One record per counter child (its increments summed), per histogram child (its
    observations listed) and per FPS point (its ticks listed); every other call keeps its order,
    before them (a camera's state set before its first frames, say)."""
    incs: dict[tuple[str, Labels], float] = {}
    observed: dict[tuple[str, Labels], list[float]] = {}
    ticks: dict[tuple[str, str], list[float]] = {}
    out: list[Record] = []
    for rec in records:
        kind = rec[0]
        if kind == "c" and rec[3] == "inc":
            key = (rec[1], rec[2])
            incs[key] = incs.get(key, 0.0) + (rec[4][0] if rec[4] else 1.0)
        elif kind == "c" and rec[3] == "observe":
            observed.setdefault((rec[1], rec[2]), []).append(rec[4][0])
        elif kind == "t":
            ticks.setdefault((rec[1], rec[2]), []).append(rec[3])
        else:
            out.append(rec)
    out.extend(("c", fam, labels, "inc", (n,)) for (fam, labels), n in incs.items())
    out.extend(("o", fam, labels, values) for (fam, labels), values in observed.items())
    out.extend(("t", cam, point, times) for (cam, point), times in ticks.items())
    return out


def observe_many(child: Any, values: Sequence[float]) -> None:
    """`child.observe(v)` for each of `values` (a labelled histogram child), with one increment
    per bucket hit and one of the sum: what the client's `observe` does per value, by its
    internal layout (non-cumulative bucket counters, the sum); values fall in the first bucket
    whose upper bound is ≥ them, as there. Falls back to `observe` per value if the layout is not
    the known one."""
    bounds: list[float] | None = getattr(child, "_upper_bounds", None)
    buckets: list[Any] | None = getattr(child, "_buckets", None)
    total: Any = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for v in values:
            child.observe(v)
        return
    if len(values) == 1:
        child.observe(values[0])
        return
    hits: dict[int, int] = {}
    for v in values:
        i = bisect_left(bounds, v)
        hits[i] = hits.get(i, 0) + 1
    total.inc(float(sum(values)))
    for i, n in hits.items():
        buckets[i].inc(n)


class MetricsReplayer:
    """Applies records to `metrics`; a record that no longer fits is a bug, logged by the caller."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, Labels], Any] = {}

    def child(self, family: str, labels: Labels) -> Any:
        """The labelled child, looked up once."""
        key = (family, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = getattr(self.metrics, family).labels(**dict(labels))
        return child

    def replay(self, records: list[Record]) -> None:
        m = self.metrics
        for rec in records:
            kind = rec[0]
            if kind == "c":
                _, family, labels, op, args = rec
                getattr(self.child(family, labels), op)(*args)
            elif kind == "o":
                observe_many(self.child(rec[1], rec[2]), rec[3])
            elif kind == "t":
                m.tick_fps_many(rec[1], rec[2], rec[3])
            else:
                getattr(m, rec[1])(*rec[2])
