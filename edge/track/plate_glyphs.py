"""The characters of one text line cut apart, and the views of them a recogniser reads one by one.

A line recogniser reads a plate as a word: what lies between and beside the characters (an EU
band, a sticker between the halves, the plate's frame) and its neighbours shape how it reads each
character, and a narrow plate font read in context gives way to the letters of words (the open
`4` of a Californian plate read as `L`). Plate characters stand apart from each other, so they can
be cut out: the line is binarised (Otsu, both polarities tried: dark on light and light on dark),
and its connected components of one height, side by side on one row, are the characters.

`glyph_views` renders each character alone on the plate's background at several margins and
widths; reading every view and voting per character (`edge.track.plate_vote`) gives the read
the recogniser makes most often on that character, not the one a single framing happens to give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

LINE_PX = 128
"""Lines (with their margin) are scaled up to this height before cutting, which makes their
characters at least the 64 px the recogniser reads at: it then only ever scales a view down."""
MARGIN = 0.2
"""Room kept around the detector's line box, in line heights: its box can clip a character."""
PADS = (0.1, 0.25, 0.5)
"""Background border around a character in a view, in character heights."""
STRETCHES = (0.7, 1.0, 1.4)
"""Horizontal scales of a character in a view: narrow and wide plate fonts."""
MAX_GLYPHS = 12
MIN_SKEW_DEG = 1.0
"""Lines tilted more than this are levelled before cutting (a camera rarely sees plates level)."""


@dataclass(frozen=True, slots=True)
class Glyphs:
    """The characters of one line: `grey` the line scaled to `LINE_PX`, the row `top`:`bottom`
    that holds the characters, each character's columns (x1, x2), the background's grey level."""

    grey: np.ndarray
    top: int
    bottom: int
    columns: tuple[tuple[int, int], ...]
    background: int


def _row_of_characters(binary: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the components of `binary` that look like characters of one row, left to
    right: at least a third of the crop's height, not wider than tall by much, and of the row's
    own height and level (the median's), which leaves out bands, bolts, frames and small print."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary)
    height = binary.shape[0]
    boxes = [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h, _ in stats[1:count]
        if 0.35 * height < h < 0.95 * height and w < 1.2 * h
    ]
    if not boxes:
        return []
    mid_h = float(np.median([b[3] for b in boxes]))
    mid_y = float(np.median([b[1] + b[3] / 2 for b in boxes]))
    row = [
        b
        for b in boxes
        if abs(b[3] - mid_h) <= 0.25 * mid_h and abs(b[1] + b[3] / 2 - mid_y) <= 0.25 * mid_h
    ]
    return sorted(row)


def _characters(grey: np.ndarray) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """The row of characters of `grey` and its binarisation, in whichever polarity (dark on
    light first) gives more characters."""
    best: tuple[list[tuple[int, int, int, int]], np.ndarray] | None = None
    for polarity in (cv2.THRESH_BINARY_INV, cv2.THRESH_BINARY):
        _, binary = cv2.threshold(grey, 0, 255, polarity | cv2.THRESH_OTSU)
        row = _row_of_characters(binary)
        if best is None or len(row) > len(best[0]):
            best = (row, binary)
    assert best is not None
    return best


def _slant(row: Sequence[tuple[int, int, int, int]]) -> float:
    """The rotation in degrees (OpenCV's: counter-clockwise positive) that levels the row, from
    a straight line through its characters' centres; 0 for fewer than 3 characters."""
    if len(row) < 3:
        return 0.0
    xs = [x + w / 2 for x, _, w, _ in row]
    ys = [y + h / 2 for _, y, _, h in row]
    slope = float(np.polyfit(xs, ys, 1)[0])
    return float(np.degrees(np.arctan(slope)))


def cut_line(bgr: np.ndarray, box: tuple[float, float, float, float]) -> Glyphs | None:
    """The characters of the text line at `box` (x1, y1, x2, y2, `bgr` pixels), or None when the
    line does not split into 2 to `MAX_GLYPHS` characters of one row."""
    x1, y1, x2, y2 = box
    h = y2 - y1
    if h < 4 or x2 - x1 < 4:
        return None
    m = MARGIN * h
    rows, cols = bgr.shape[:2]
    top, bottom = max(0, int(y1 - m)), min(rows, int(np.ceil(y2 + m)))
    left, right = max(0, int(x1 - m)), min(cols, int(np.ceil(x2 + m)))
    if bottom - top < 4 or right - left < 4:
        return None
    grey = cv2.cvtColor(bgr[top:bottom, left:right], cv2.COLOR_BGR2GRAY)
    scale = max(1.0, LINE_PX / (bottom - top))
    if scale > 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    row, binary = _characters(grey)
    angle = _slant(row)
    if abs(angle) >= MIN_SKEW_DEG:  # levelled, the characters' columns no longer overlap
        centre = (grey.shape[1] / 2, grey.shape[0] / 2)
        turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
        grey = cv2.warpAffine(grey, turn, (grey.shape[1], grey.shape[0]),
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        row, binary = _characters(grey)
    if not 2 <= len(row) <= MAX_GLYPHS:
        return None
    background = int(np.median(grey[binary == 0])) if (binary == 0).any() else 255
    return Glyphs(
        grey=grey,
        top=min(b[1] for b in row),
        bottom=max(b[1] + b[3] for b in row),
        columns=tuple((b[0], b[0] + b[2]) for b in row),
        background=background,
    )


def glyph_views(
    glyphs: Glyphs, pads: Sequence[float] = PADS, stretches: Sequence[float] = STRETCHES
) -> list[list[np.ndarray]]:
    """Per view (every pad × stretch), the line's characters each alone on the background."""
    rows = glyphs.grey[glyphs.top : glyphs.bottom]
    height = glyphs.bottom - glyphs.top
    views = []
    for pad in pads:
        p = max(1, round(pad * height))
        for stretch in stretches:
            view = []
            for x1, x2 in glyphs.columns:
                glyph = rows[:, x1:x2]
                if stretch != 1.0:
                    width = max(1, round((x2 - x1) * stretch))
                    glyph = cv2.resize(glyph, (width, height), interpolation=cv2.INTER_CUBIC)
                view.append(cv2.copyMakeBorder(glyph, p, p, p, p, cv2.BORDER_CONSTANT,
                                               value=glyphs.background))  # fmt: skip
            views.append(view)
    return views
