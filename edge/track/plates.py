"""License plate reading on one picture: which text is the plate, and the OCR engines.

`PlateReader` wraps rapidocr (PP-OCR det/rec ONNX models shipped inside its wheel, offline on ONNX
Runtime); `edge.track.plate_easyocr` adds EasyOCR behind the same interface. OCR of a whole
vehicle returns every text on it — state names, slogans, dealer frames — so `pick_plate` keeps
the plate-like string. Which crops get read, and how a track's reads become one plate, is
`edge.track.plate_scheduler` and `edge.track.plate_vote`.

OCR engines are imported only when a reader first runs: the service starts fast with OCR off.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.config import DEFAULT_PLATE_PATTERN, OcrConfig
from edge.track.plate_formats import fit
from edge.track.plate_vote import is_plate_like

log = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[^0-9A-Z]")
_PAD_PX = 8


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate: normalised text (`EAZ6913`), OCR confidence 0–1, the text as recognised, and
    where it is (x1, y1, x2, y2) in the image read (frame pixels when it comes from the scheduler).
    """

    text: str
    confidence: float
    raw: str
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class TextCandidate:
    """One recognised text line; `box` (x1, y1, x2, y2) lets fragments of one plate be joined."""

    text: str
    score: float
    box: tuple[float, float, float, float] | None = None


def normalise_plate(text: str) -> str:
    """Upper-case and drop separators (`eaz-6913` → `EAZ6913`, `5AU 5341` → `5AU5341`)."""
    return _SEPARATORS.sub("", text.upper())


def plate_tier(text: str, pattern: re.Pattern[str] | str = DEFAULT_PLATE_PATTERN) -> int | None:
    """0 for a plate-like text (`pattern`) mixing letters and digits, 1 for one of a single kind,
    None when not plate-like."""
    if not is_plate_like(text, pattern):
        return None
    has_digit = any(c.isdigit() for c in text)
    has_letter = any(c.isalpha() for c in text)
    return 0 if has_digit and has_letter else 1


def _same_line_neighbours(a: TextCandidate, b: TextCandidate) -> bool:
    """True when `b` continues `a` on the same text line (a plate split at its separator)."""
    if a.box is None or b.box is None:
        return False
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    ha, hb = ay2 - ay1, by2 - by1
    if ha <= 0 or hb <= 0 or max(ha, hb) > 1.5 * min(ha, hb):
        return False
    overlap = min(ay2, by2) - max(ay1, by1)
    gap = bx1 - ax2
    # Overlapping boxes share a character that both recognised (`5AU5` + `5341` for `5AU 5341`):
    # joining those would invent a plate, so only fragments side by side are joined.
    return overlap >= 0.5 * min(ha, hb) and -0.1 * ha <= gap <= 1.5 * max(ha, hb)


def _stacked(a: TextCandidate, b: TextCandidate) -> bool:
    """True when `b` is the lower row of a two-row plate whose upper row is `a`: the rows share
    most of their width and the gap between them is under a row's height."""
    if a.box is None or b.box is None:
        return False
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    ha, hb = ay2 - ay1, by2 - by1
    wa, wb = ax2 - ax1, bx2 - bx1
    if min(ha, hb, wa, wb) <= 0 or max(ha, hb) > 2.0 * min(ha, hb):
        return False
    shared = min(ax2, bx2) - max(ax1, bx1)
    gap = by1 - ay2
    return shared >= 0.6 * min(wa, wb) and -0.2 * min(ha, hb) <= gap <= min(ha, hb)


def _union(parts: Sequence[TextCandidate], sep: str) -> TextCandidate:
    boxes = [p.box for p in parts if p.box is not None]
    box = (min(b[0] for b in boxes), min(b[1] for b in boxes),
           max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip
    return TextCandidate(sep.join(p.text for p in parts), min(p.score for p in parts), box)


def _joined_pairs(candidates: Sequence[TextCandidate]) -> list[TextCandidate]:
    """Plates OCR splits: two or three fragments side by side on one line (separators, seals and
    stickers between them), and the two rows of a two-row plate."""
    boxed = [c for c in candidates if c.box is not None]
    joined: list[TextCandidate] = []
    for a in boxed:
        for b in boxed:
            if a is b:
                continue
            if _stacked(a, b):
                joined.append(_union([a, b], "\n"))
            if not _same_line_neighbours(a, b):
                continue
            joined.append(_union([a, b], " "))
            joined.extend(_union([a, b, c], " ") for c in boxed
                          if c is not a and c is not b and _same_line_neighbours(b, c))  # fmt: skip
    return joined


def pick_plate(
    candidates: Sequence[TextCandidate | tuple[str, float]],
    min_confidence: float = 0.0,
    pattern: re.Pattern[str] | str = DEFAULT_PLATE_PATTERN,
    layouts: Sequence[str] = (),
) -> PlateRead | None:
    """The plate among all text read on a vehicle, or None.

    Preference: a text that fits one of the region's plate `layouts` (fitted to it,
    `edge.track.plate_formats`; the fewer changes the better), then a single plate-like line
    (`pattern`) of mixed letters and digits, then one made of neighbouring fragments (2 or 3 on a
    line, or 2 rows), then lines of one kind; highest confidence within a tier. Lines scored below
    `min_confidence` are ignored before choosing; a fitted text must still match `pattern`.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    cands = [
        c if isinstance(c, TextCandidate) else TextCandidate(c[0], float(c[1])) for c in candidates
    ]
    cands = [c for c in cands if c.score >= min_confidence]
    ranked: list[tuple[int, int, int, float, PlateRead]] = []
    for joined, cand_list in ((False, cands), (True, _joined_pairs(cands))):
        for c in cand_list:
            text = normalise_plate(c.text)
            fitted = fit(text, layouts) if layouts else None
            if fitted is not None:
                text = fitted.text
            tier = plate_tier(text, rx)
            if tier is None:
                continue
            rank = tier * 2 + (1 if joined else 0)
            read = PlateRead(text, float(c.score), c.text, c.box)
            changes = fitted.changes if fitted else 0
            ranked.append((0 if fitted else 1, changes, rank, -c.score, read))
    if not ranked:
        return None
    ranked.sort(key=lambda r: r[:4])
    return ranked[0][4]


class ReaderUnavailable(RuntimeError):
    """The configured OCR backend is not installed or cannot load; one line, with the fix."""


Quad = Sequence[Sequence[float]]


class PlateReader:
    """An OCR engine on a BGR image (a vehicle crop or a whole photo) → the plate on it, or None.

    This class runs rapidocr; subclasses override `_load` and `_recognise`. Thread-safe (calls
    are serialised: the engines keep per-call state). Models load on the first `read` or on
    `warm_up()`; call that from a worker thread, it takes a second or more.
    """

    name = "rapidocr"

    def __init__(
        self,
        min_confidence: float = 0.8,
        threads: int = 1,
        min_width: int = 160,
        pattern: str = DEFAULT_PLATE_PATTERN,
        layouts: Sequence[str] = (),
    ) -> None:
        self.min_confidence = min_confidence
        """Plates read below this are dropped: garbage on video overlays scores about 0.55, the real
        plates in the test photos above 0.99."""
        self.threads = threads
        self.min_width = min_width
        """Smaller crops are upscaled to this width: the text detectors miss tiny characters."""
        self.pattern = re.compile(pattern)
        self.layouts = tuple(layouts)
        """The region's plate layouts reads are fitted to (`edge.track.plate_formats`)."""
        self._engine: object | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """ReaderUnavailable unless the engine's package imports (cheap; no model loads)."""
        try:
            import rapidocr  # noqa: F401
        except ImportError:
            raise ReaderUnavailable(
                "ocr.backend rapidocr is not installed: pip install 'edge[ocr]'"
            ) from None

    def warm_up(self) -> None:
        with self._lock:
            if self._engine is None:
                self._engine = self._load()

    def _load(self) -> object:
        from rapidocr import RapidOCR  # lazy: heavy import, only when OCR is enabled

        return RapidOCR(
            params={
                "Global.log_level": "error",
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def _recognise(self, engine: object, bgr: np.ndarray) -> list[tuple[Quad, str, float]]:
        """(corner points, text, score) of every text line on `bgr`."""
        out = engine(bgr)  # type: ignore[operator]
        txts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        boxes = getattr(out, "boxes", None)
        if not txts or scores is None or boxes is None:
            return []
        return list(zip(boxes, (str(t) for t in txts), (float(x) for x in scores), strict=True))

    def candidates(self, bgr: np.ndarray) -> list[TextCandidate]:
        """Every text line the engine recognises on `bgr`, boxes in `bgr`'s pixels."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        if bgr.shape[0] < 8 or bgr.shape[1] < 8:
            return []
        import cv2  # lazy with the rest of OCR

        # A margin lets the text detector find characters that touch the crop's edge.
        pad = _PAD_PX
        bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        scale = 1.0
        if bgr.shape[1] < self.min_width:
            scale = self.min_width / bgr.shape[1]
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            lines = self._recognise(self._engine, bgr)
        result = []
        for quad, text, score in lines:
            q = np.asarray(quad, dtype=np.float64) / scale - pad
            (x1, y1), (x2, y2) = q.min(axis=0), q.max(axis=0)
            result.append(TextCandidate(text, score, (float(x1), float(y1), float(x2), float(y2))))
        return result

    def read(self, bgr: np.ndarray) -> PlateRead | None:
        return pick_plate(self.candidates(bgr), self.min_confidence, self.pattern, self.layouts)


def make_reader(config: OcrConfig, threads: int = 1) -> PlateReader:
    """The reader of `config.backend`; ReaderUnavailable (with the install command) when that
    backend is not installed, so that the service refuses to start rather than fail mid-run."""
    kw = {"min_confidence": config.confidence_floor, "threads": threads,
          "pattern": config.plate_pattern, "layouts": config.plate_layouts}  # fmt: skip
    if config.backend == "easyocr":
        from edge.track.plate_easyocr import EasyOcrReader

        reader: PlateReader = EasyOcrReader(**kw)  # type: ignore[arg-type]
    else:
        reader = PlateReader(**kw)  # type: ignore[arg-type]
    reader.check()
    return reader
