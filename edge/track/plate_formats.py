"""A region's plate layouts, and a read fitted to them: `0`/`O`, `1`/`I`, `8`/`B`... settled.

OCR confuses the characters that plate fonts draw alike (`0` and `O`, `1` and `I`, `8` and `B`,
`5` and `S`, `2` and `Z`, `6` and `G`), and it reads a bolt, a frame's edge or a state's mark
beside the plate as one more character. Nothing in the text itself says which was meant; a
region's plate layouts do. This is what ALPR tools do per country (OpenALPR's postprocess
patterns, whose notation this follows): a layout is a string of `@` (a letter), `#` (a digit),
`?` (either) or a literal character, and a read is fitted to the layout it matches with the fewest
changes: a confusable character swapped for its twin of the kind the layout wants there, and at
most `MAX_TRIM` characters dropped from the read's ends. A read that fits no layout is left as read
(a plate from elsewhere stays legible); `edge.track.plates.pick_plate` prefers the reads that fit.

Layouts are a region's (Brazil `@@@####` and `@@@#@##`, Slovakia `@@###@@`...): there is no
default, since the layouts of one country turn the plates of another into wrong ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"}
"""A digit read where a layout wants a letter: the letter plate fonts draw alike. Pairs only
sometimes alike (`4`/`A`, `7`/`T`) are left out: with them, words fit layouts (`RENAULT` as
`REN4U17`)."""
TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "I": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
"""A letter read where a layout wants a digit: the digit plate fonts draw alike."""
LOOK_ALIKES = frozenset(frozenset(pair) for pair in (*TO_LETTER.items(), *TO_DIGIT.items()))
"""The pairs of characters plate fonts draw alike, whichever way round."""
MAX_TRIM = 1
"""Characters a fit may drop from each end of a read (a bolt, a frame's edge, a state's mark)."""


@dataclass(frozen=True, slots=True)
class Fit:
    """`text` fitted to a layout with `changes` (characters swapped or dropped)."""

    text: str
    changes: int


def _fit_one(text: str, layout: str) -> Fit | None:
    """`text` (as long as `layout`) made to match it by swapping confusables, or None."""
    out, changes = [], 0
    for ch, want in zip(text, layout, strict=True):
        if want == "?" or (want == "@" and ch.isalpha()) or (want == "#" and ch.isdigit()):
            out.append(ch)
            continue
        if want == "@":
            swapped = TO_LETTER.get(ch)
        elif want == "#":
            swapped = TO_DIGIT.get(ch)
        else:  # a literal
            swapped = want if (TO_LETTER.get(ch) == want or TO_DIGIT.get(ch) == want) else None
            if ch == want:
                out.append(ch)
                continue
        if swapped is None:
            return None
        out.append(swapped)
        changes += 1
    return Fit("".join(out), changes)


def fit(text: str, layouts: Sequence[str]) -> Fit | None:
    """The fit of the normalised `text` (A-Z, 0-9) to `layouts` with the fewest changes (ties:
    the earlier layout, then the fewer dropped characters), or None when none fits."""
    best: Fit | None = None
    for layout in layouts:
        extra = len(text) - len(layout)
        if not 0 <= extra <= 2 * MAX_TRIM:
            continue
        for start in range(extra + 1):
            if start > MAX_TRIM or extra - start > MAX_TRIM:
                continue
            got = _fit_one(text[start : start + len(layout)], layout)
            if got is None:
                continue
            got = Fit(got.text, got.changes + extra)
            if best is None or got.changes < best.changes:
                best = got
    return best
