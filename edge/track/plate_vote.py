"""One plate per track out of several OCR reads: a vote per character position.

Each read of a track is a few characters long and any of them may be wrong, missing or extra
(`8` for `B`, a dropped `1`, a bolt read as `I`). The reads are aligned on a reference read (the
medoid: the read closest, in edit operations, to all the others) with `difflib`, so that reads of
different lengths still vote on the positions they share. Every aligned position, and every gap
between two reference positions where some read has extra characters, is a column; each read
votes in every column (a character, an insertion, or nothing) with its OCR confidence as weight.
The plate is the concatenation of the column winners.

Only plate-like strings take part: `plate_pattern` (full match on the normalised text) keeps the
state names, slogans and dealer frames that OCR also finds on a vehicle out of the vote.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.config import DEFAULT_PLATE_PATTERN


class Read(Protocol):
    """What the vote needs of a read (`edge.track.plates.PlateRead` has this shape)."""

    @property
    def text(self) -> str: ...
    @property
    def confidence(self) -> float: ...


@dataclass(frozen=True, slots=True)
class VotedPlate:
    """The plate of a track: its text, how sure the vote is (0–1), how many reads gave exactly
    this text, and how many plate-like reads voted."""

    text: str
    confidence: float
    agreed: int
    reads: int


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The plate pattern, or ValueError naming what is wrong with it (for the config check)."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


def is_plate_like(text: str, pattern: re.Pattern[str] | str = DEFAULT_PLATE_PATTERN) -> bool:
    """True when the normalised `text` fully matches the plate pattern."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    return bool(text) and rx.fullmatch(text) is not None


def _distance(a: str, b: str) -> int:
    """Edit operations between `a` and `b` (difflib's opcodes; a replace counts its longer side)."""
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _medoid(reads: Sequence[Read]) -> Read:
    """The read with the least confidence-weighted edit distance to the others; ties go to the
    read whose text the most confidence backs, then to the longer (a dropped character is a
    commoner OCR error than an invented one)."""
    backing: dict[str, float] = defaultdict(float)
    for r in reads:
        backing[r.text] += r.confidence

    def cost(r: Read) -> tuple[float, float, int]:
        spread = sum(o.confidence * _distance(r.text, o.text) for o in reads)
        return (spread, -backing[r.text], -len(r.text))

    return min(reads, key=cost)


def _columns(reference: str, text: str) -> list[str]:
    """`text` laid out on `reference`: 2n+1 columns, insertion slot before each reference
    position, the position itself, and a final insertion slot; '' where `text` has nothing."""
    cols = [""] * (2 * len(reference) + 1)
    ops = difflib.SequenceMatcher(None, reference, text, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "insert":
            cols[2 * i1] += text[j1:j2]
        elif tag in ("equal", "replace"):
            # A replace of unequal lengths maps position by position; what `text` has beyond
            # the reference span is an insertion after it.
            n = min(i2 - i1, j2 - j1)
            for k in range(n):
                cols[2 * (i1 + k) + 1] = text[j1 + k]
            if j2 - j1 > n:
                cols[2 * i2] += text[j1 + n : j2]
        # "delete": the reference positions stay '' (this read misses them)
    return cols


def vote(
    reads: Sequence[Read], pattern: re.Pattern[str] | str = DEFAULT_PLATE_PATTERN
) -> VotedPlate | None:
    """The plate a track's reads agree on, or None when no read is plate-like.

    Confidence: the weakest column's winning weight over the number of voting reads, so a lone
    read keeps its own confidence and a disputed character lowers the whole plate's.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    voters = [r for r in reads if is_plate_like(r.text, rx)]
    if not voters:
        return None
    reference = _medoid(voters).text
    tallies: list[dict[str, float]] = [defaultdict(float) for _ in range(2 * len(reference) + 1)]
    for r in voters:
        for tally, cell in zip(tallies, _columns(reference, r.text), strict=True):
            tally[cell] += r.confidence
    winners: list[str] = []
    weakest = 1.0
    for col, tally in enumerate(tallies):
        # Ties: the reference's own cell (a gap slot's '' or the medoid's character).
        own = "" if col % 2 == 0 else reference[col // 2]
        cell = max(tally, key=lambda c: (tally[c], c == own))
        winners.append(cell)
        weakest = min(weakest, tally[cell] / len(voters))
    text = "".join(winners)
    if not is_plate_like(text, rx):  # the vote of plate-like reads can still fall outside
        best = max(voters, key=lambda r: r.confidence)
        text, weakest = best.text, best.confidence / len(voters)
    agreed = sum(1 for r in voters if r.text == text)
    return VotedPlate(text, round(min(1.0, weakest), 4), agreed, len(voters))
