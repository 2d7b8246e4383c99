"""Metrics recorded in a worker process, replayed on the service's one `EdgeMetrics`.

Why: the registry that `/metrics` serves lives in the batching process, and every series must keep
its meaning whichever process saw the event (README's rules, e.g. decoded = published + dropped).
Rather than a second set of series per process, a worker's stages record into a `MetricsRecorder`
with `EdgeMetrics`' own API (`metrics.frames_decoded.labels(camera=c).inc()`,
`metrics.observe_stage(...)`); the recorder keeps each call as a small tuple, the worker ships them
in batches with its other messages, and `MetricsReplayer` applies them, with each labelled child
looked up once and cached (a `labels()` lookup costs more than the increment).
"""

from __future__ import annotations

from typing import Any

from edge.metrics import EdgeMetrics

Record = tuple[Any, ...]
"""("m", method, args) for an `EdgeMetrics` method; ("c", family, labels, op, args) for a call on
a labelled child (labels as sorted (name, value) pairs)."""

_TERMINAL = frozenset({"inc", "dec", "set", "observe"})


class _Child:
    __slots__ = ("_family", "_labels", "_out")

    def __init__(self, out: list[Record], family: str, labels: tuple[tuple[str, str], ...]) -> None:
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
    """Stands in for `EdgeMetrics` in a worker; `take()` returns and forgets what was recorded."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def take(self) -> list[Record]:
        # In place (decode threads append meanwhile): each step is atomic under the GIL, and a
        # record appended between the two lands after the slice and stays.
        out = self.records[:]
        del self.records[: len(out)]
        return _merge_increments(out)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(EdgeMetrics, name, None)
        if callable(attr):
            out = self.records
            return lambda *args: out.append(("m", name, args))
        return _Family(self.records, name)


def _merge_increments(records: list[Record]) -> list[Record]:
    """Increments of one child become one record (a camera's frames decoded since the last
    message, say); everything else keeps its order."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    out: list[Record] = []
    for rec in records:
        if rec[0] == "c" and rec[3] == "inc":
            key = (rec[1], rec[2])
            merged[key] = merged.get(key, 0.0) + (rec[4][0] if rec[4] else 1.0)
        else:
            out.append(rec)
    out.extend(("c", fam, labels, "inc", (n,)) for (fam, labels), n in merged.items())
    return out


class MetricsReplayer:
    """Applies records to `metrics`; a record that no longer fits is a bug, logged by the caller."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def replay(self, records: list[Record]) -> None:
        m, children = self.metrics, self._children
        for rec in records:
            if rec[0] == "c":
                _, family, labels, op, args = rec
                key = (family, labels)
                child = children.get(key)
                if child is None:
                    child = children[key] = getattr(m, family).labels(**dict(labels))
                getattr(child, op)(*args)
            else:
                getattr(m, rec[1])(*rec[2])
