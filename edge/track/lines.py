"""Counting vehicles that cross line segments, once per track and line, robust to box jitter.

The point that crosses is the bottom-centre of a track's box (where the vehicle touches the road,
so perspective does not shift it like the box centre). Each track has, per line, a *side* that
only changes when the point is clearly beyond the line: inside a dead band around the line the
side keeps its last value, so a box trembling on the line flips nothing; a new side also needs
`confirm` observations in a row.
A crossing is counted when the side changes and the path between the last point clearly on the
old side and the first point clearly on the new side passes through the segment (not merely the
infinite line), and only the first such crossing per track and line counts.

Directions: `LineConfig.directions[0]` is for crossing from the left to the right of p1→p2 as seen
in the image (y grows downwards): for a horizontal line drawn left to right, moving down the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.config import LineConfig
from edge.types import Detections


@dataclass(frozen=True, slots=True)
class Crossing:
    """One vehicle counted on one line."""

    line: str
    track_id: int
    class_id: int
    class_name: str
    direction: str
    point: tuple[float, float]
    """Where the path of the bottom-centre met the segment, in source pixels."""


@dataclass(slots=True)
class _Side:
    side: int = 0
    """+1 right of p1→p2, -1 left, 0 not yet known (only seen inside the band)."""
    anchor: tuple[float, float] = (0.0, 0.0)
    """Last point clearly on `side`."""
    counted: bool = False
    pending: int = 0
    """Side the point was last seen clearly on, while not yet confirmed."""
    pending_n: int = 0
    pending_point: tuple[float, float] = (0.0, 0.0)
    """First point of the pending run: where the path reached the new side."""


@dataclass(slots=True)
class _TrackState:
    last_seen: int
    sides: dict[str, _Side] = field(default_factory=dict)


class _Segment:
    def __init__(self, cfg: LineConfig) -> None:
        self.name = cfg.name
        self.directions = cfg.directions
        self.p1 = np.array(cfg.points[0], dtype=np.float64)
        self.p2 = np.array(cfg.points[1], dtype=np.float64)
        self.d = self.p2 - self.p1
        self.length = float(np.hypot(*self.d))

    def signed_distance(self, p: tuple[float, float]) -> float:
        """Positive on the right of p1→p2 in image coordinates (y down)."""
        return (
            float(self.d[0] * (p[1] - self.p1[1]) - self.d[1] * (p[0] - self.p1[0])) / self.length
        )

    def path_hits_segment(
        self, a: tuple[float, float], b: tuple[float, float]
    ) -> tuple[float, float] | None:
        """Where the path a→b (on opposite sides) meets the segment, or None if outside it."""
        da, db = self.signed_distance(a), self.signed_distance(b)
        if da == db:
            return None
        s = da / (da - db)
        x = (a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1]))
        t = float(np.dot(np.subtract(x, self.p1), self.d)) / (self.length**2)
        return x if 0.0 <= t <= 1.0 else None


class LineCounter:
    """Counts per line, class name and direction for one camera.

    The dead band's half-width around each line is, in pixels, at least
    `min_band_px`, and `band_fraction` of the box height (jitter grows with the box). A side
    (the first one too) is taken only after `confirm` observations clearly on it, so a single
    outlier box can neither count nor set up a count in the wrong direction.
    """

    def __init__(
        self,
        lines: Sequence[LineConfig],
        band_fraction: float = 0.1,
        min_band_px: float = 2.0,
        confirm: int = 1,
        forget_after: int = 300,
    ) -> None:
        self.segments = [_Segment(line) for line in lines]
        self.band_fraction = band_fraction
        self.min_band_px = min_band_px
        self.confirm = confirm
        self.forget_after = forget_after
        self.counts: dict[str, dict[str, dict[str, int]]] = {s.name: {} for s in self.segments}
        self._tracks: dict[int, _TrackState] = {}
        self._updates = 0

    def update(self, tracks: Detections, class_names: Sequence[str]) -> list[Crossing]:
        """Feed the confirmed tracks of one frame (with `track_id`); returns new crossings."""
        self._updates += 1
        crossings: list[Crossing] = []
        if tracks.track_id is not None:
            for box, tid, cid in zip(tracks.xyxy, tracks.track_id, tracks.class_id, strict=True):
                crossings.extend(self._update_track(int(tid), int(cid), box, class_names))
        if self._updates % 64 == 0:
            self._prune()
        return crossings

    def _update_track(
        self, tid: int, cid: int, box: np.ndarray, class_names: Sequence[str]
    ) -> list[Crossing]:
        state = self._tracks.setdefault(tid, _TrackState(self._updates))
        state.last_seen = self._updates
        point = (float(box[0] + box[2]) / 2.0, float(box[3]))
        band = max(self.min_band_px, self.band_fraction * float(box[3] - box[1]))
        out: list[Crossing] = []
        for seg in self.segments:
            side = state.sides.setdefault(seg.name, _Side())
            dist = seg.signed_distance(point)
            if abs(dist) <= band:
                continue  # in the dead band: nothing changes
            new_side = 1 if dist > 0 else -1
            if new_side == side.side:
                side.anchor, side.pending, side.pending_n = point, 0, 0
                continue
            if side.pending != new_side:
                side.pending, side.pending_n, side.pending_point = new_side, 0, point
            side.pending_n += 1
            if side.pending_n < self.confirm:
                continue
            if side.side == -new_side and not side.counted:
                hit = seg.path_hits_segment(side.anchor, side.pending_point)
                if hit is not None:
                    side.counted = True
                    out.append(self._count(seg, tid, cid, new_side, hit, class_names))
            side.side, side.anchor, side.pending, side.pending_n = new_side, point, 0, 0
        return out

    def _count(
        self,
        seg: _Segment,
        tid: int,
        cid: int,
        new_side: int,
        hit: tuple[float, float],
        class_names: Sequence[str],
    ) -> Crossing:
        direction = seg.directions[0] if new_side > 0 else seg.directions[1]
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        per_class = self.counts[seg.name].setdefault(name, {})
        per_class[direction] = per_class.get(direction, 0) + 1
        return Crossing(seg.name, tid, cid, name, direction, hit)

    def set_lines(self, lines: Sequence[LineConfig]) -> None:
        """Count on `lines` from the next update on (a config reload). A line kept as it was
        (same name, points and directions) keeps its counts and what it knows of each track; a
        new or moved line starts from zero, so a track near a moved line is never counted on the
        strength of where the old line was."""
        kept = {
            s.name
            for s in self.segments
            for line in lines
            if line.name == s.name
            and line.directions == s.directions
            and line.points == (tuple(s.p1.tolist()), tuple(s.p2.tolist()))
        }
        self.segments = [_Segment(line) for line in lines]
        self.counts = {s.name: self.counts[s.name] if s.name in kept else {}
                       for s in self.segments}  # fmt: skip
        for state in self._tracks.values():
            state.sides = {name: side for name, side in state.sides.items() if name in kept}

    def forget(self, track_id: int) -> None:
        """Drop what is remembered about a track that ended."""
        self._tracks.pop(track_id, None)

    def _prune(self) -> None:
        """Bound memory even if the caller never calls `forget`."""
        horizon = self._updates - self.forget_after
        for tid in [t for t, s in self._tracks.items() if s.last_seen < horizon]:
            del self._tracks[tid]

    def total(self, line: str | None = None) -> int:
        """Vehicles counted on one line (or all lines)."""
        names = [line] if line is not None else list(self.counts)
        return sum(n for name in names for d in self.counts[name].values() for n in d.values())
