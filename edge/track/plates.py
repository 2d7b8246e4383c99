"""License plate reading on confirmed tracks: which string is the plate, and when to try.

`PlateReader` wraps rapidocr (PP-OCR det/rec ONNX models shipped inside its wheel, offline on ONNX
Runtime). OCR of a whole vehicle returns every text on it — state names, slogans, dealer frames —
so `pick_plate` keeps the plate-like string. `PlateScheduler` spends a few attempts per track
(the original app used 5), only on boxes wide enough to hold legible characters, a bounded number
per frame, in a worker thread so the event loop never waits on OCR.

rapidocr is imported only when a reader first runs: the service starts fast with OCR disabled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from edge.config import OcrConfig
from edge.metrics import EdgeMetrics
from edge.types import Detections, Frame

log = logging.getLogger(__name__)

PLATE_MIN_CHARS = 5
PLATE_MAX_CHARS = 8
_SEPARATORS = re.compile(r"[^0-9A-Z]")
_ALNUM = re.compile(r"^[0-9A-Z]+$")
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


def plate_tier(text: str) -> int | None:
    """0 for 5–8 letters and digits mixed, 1 for 5–8 digits only, None when not plate-like.

    Letters-only strings are refused: they are state names and slogans far more often than plates.
    """
    if not (PLATE_MIN_CHARS <= len(text) <= PLATE_MAX_CHARS) or not _ALNUM.match(text):
        return None
    has_digit = any(c.isdigit() for c in text)
    has_letter = any(c.isalpha() for c in text)
    if has_digit and has_letter:
        return 0
    return 1 if has_digit else None


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


def _joined_pairs(candidates: Sequence[TextCandidate]) -> list[TextCandidate]:
    pairs: list[TextCandidate] = []
    for a in candidates:
        for b in candidates:
            if a is b or a.box is None or b.box is None or not _same_line_neighbours(a, b):
                continue
            box = (
                min(a.box[0], b.box[0]),
                min(a.box[1], b.box[1]),
                b.box[2],
                max(a.box[3], b.box[3]),
            )
            pairs.append(TextCandidate(f"{a.text} {b.text}", min(a.score, b.score), box))
    return pairs


def pick_plate(
    candidates: Sequence[TextCandidate | tuple[str, float]], min_confidence: float = 0.0
) -> PlateRead | None:
    """The plate among all text read on a vehicle, or None.

    Preference: a single line of 5–8 mixed letters and digits, then one made of two neighbouring
    fragments, then digits-only lines; highest confidence within a tier. Lines scored below
    `min_confidence` are ignored before choosing.
    """
    cands = [
        c if isinstance(c, TextCandidate) else TextCandidate(c[0], float(c[1])) for c in candidates
    ]
    cands = [c for c in cands if c.score >= min_confidence]
    ranked: list[tuple[int, float, PlateRead]] = []
    for joined, cand_list in ((False, cands), (True, _joined_pairs(cands))):
        for c in cand_list:
            text = normalise_plate(c.text)
            tier = plate_tier(text)
            if tier is None:
                continue
            rank = tier * 2 + (1 if joined else 0)
            ranked.append((rank, -c.score, PlateRead(text, float(c.score), c.text, c.box)))
    if not ranked:
        return None
    ranked.sort(key=lambda r: (r[0], r[1]))
    return ranked[0][2]


class PlateReader:
    """rapidocr on a BGR image (a vehicle crop or a whole photo) → the plate on it, or None.

    Thread-safe (rapidocr keeps per-call state, so calls are serialised). Models load on the first
    `read` or on `warm_up()`; call that from a worker thread, it takes about a second.
    """

    def __init__(
        self,
        min_confidence: float = 0.8,
        threads: int = 1,
        min_width: int = 160,
    ) -> None:
        self.min_confidence = min_confidence
        """Plates read below this are dropped: garbage on video overlays scores about 0.55, the real
        plates in the test photos above 0.99."""
        self.threads = threads
        self.min_width = min_width
        """Smaller crops are upscaled to this width: the text detector misses tiny characters."""
        self._engine: Callable[[np.ndarray], object] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            self._load()

    def _load(self) -> Callable[[np.ndarray], object]:
        if self._engine is None:
            from rapidocr import RapidOCR  # lazy: heavy import, only when OCR is enabled

            self._engine = RapidOCR(
                params={
                    "Global.log_level": "error",
                    "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
        return self._engine

    def candidates(self, bgr: np.ndarray) -> list[TextCandidate]:
        """Every text line rapidocr recognises on `bgr`, boxes in `bgr`'s pixels."""
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
            out = self._load()(bgr)
        txts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        boxes = getattr(out, "boxes", None)
        if not txts or scores is None or boxes is None:
            return []
        result = []
        for text, score, quad in zip(txts, scores, boxes, strict=True):
            q = np.asarray(quad, dtype=np.float64) / scale - pad
            (x1, y1), (x2, y2) = q.min(axis=0), q.max(axis=0)
            box = (float(x1), float(y1), float(x2), float(y2))
            result.append(TextCandidate(str(text), float(score), box))
        return result

    def read(self, bgr: np.ndarray) -> PlateRead | None:
        return pick_plate(self.candidates(bgr), self.min_confidence)


_shared_executor: ThreadPoolExecutor | None = None
_shared_lock = threading.Lock()


def shared_ocr_executor() -> ThreadPoolExecutor:
    """One OCR thread for all cameras: OCR is CPU-bound, parallel runs would starve inference."""
    global _shared_executor
    with _shared_lock:
        if _shared_executor is None:
            _shared_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")
        return _shared_executor


def _in_frame(read: PlateRead | None, x0: int, y0: int) -> PlateRead | None:
    """A read on a crop, its box moved to frame pixels."""
    if read is None or read.box is None:
        return read
    x1, y1, x2, y2 = read.box
    return replace(read, box=(x1 + x0, y1 + y0, x2 + x0, y2 + y0))


@dataclass(slots=True)
class _TrackPlate:
    attempts: int = 0
    best: PlateRead | None = None
    last_seen: int = 0


@dataclass(frozen=True, slots=True)
class OcrJob:
    """One planned attempt: the track and its box in source-frame pixels."""

    track_id: int
    xyxy: tuple[int, int, int, int]


class PlateScheduler:
    """Per camera: which confirmed tracks get an OCR attempt now, and the best plate of each.

    At most `config.attempts` attempts per track (fewer once a read reaches `done_confidence`),
    only boxes at least `config.min_box_width` px wide, at most `max_per_frame` per frame, tracks
    with fewest attempts and widest boxes first. `read` is any BGR → PlateRead | None callable
    (normally `PlateReader.read`); it runs on `executor` (default: one OCR thread for all cameras).
    """

    def __init__(
        self,
        camera_id: str,
        config: OcrConfig,
        read: Callable[[np.ndarray], PlateRead | None],
        metrics: EdgeMetrics | None = None,
        max_per_frame: int = 2,
        done_confidence: float = 0.95,
        stale_after_frames: int = 1000,
        executor: Executor | None = None,
    ) -> None:
        if max_per_frame < 1:
            raise ValueError("max_per_frame must be at least 1")
        self.camera_id = camera_id
        self.config = config
        self.metrics = metrics or EdgeMetrics()
        self.max_per_frame = max_per_frame
        self.done_confidence = done_confidence
        self.stale_after_frames = stale_after_frames
        self._read = read
        self._executor = executor
        self._tracks: dict[int, _TrackPlate] = {}
        self._frames = 0
        self._task: asyncio.Task[dict[int, PlateRead]] | None = None

    # ---- pure bookkeeping -------------------------------------------------------------------

    def plan(self, tracks: Detections) -> list[OcrJob]:
        """Choose this frame's attempts and count them as spent; call once per tracked frame."""
        self._frames += 1
        if tracks.track_id is None or len(tracks) == 0:
            self._evict_stale()
            return []
        eligible: list[tuple[int, float, OcrJob]] = []
        for box, tid in zip(tracks.xyxy, tracks.track_id, strict=True):
            state = self._tracks.setdefault(int(tid), _TrackPlate())
            state.last_seen = self._frames
            width = float(box[2] - box[0])
            if width < self.config.min_box_width or not self._wants_attempt(state):
                continue
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            eligible.append((state.attempts, -width, OcrJob(int(tid), (x1, y1, x2, y2))))
        eligible.sort(key=lambda e: (e[0], e[1]))
        jobs = [e[2] for e in eligible[: self.max_per_frame]]
        for job in jobs:
            self._tracks[job.track_id].attempts += 1
        self._evict_stale()
        return jobs

    def record(self, track_id: int, read: PlateRead | None) -> bool:
        """Keep `read` if it beats the track's best; True when the best changed."""
        state = self._tracks.get(track_id)
        if state is None or read is None:
            return False
        if state.best is None or read.confidence > state.best.confidence:
            state.best = read
            return True
        return False

    def best(self, track_id: int) -> PlateRead | None:
        state = self._tracks.get(track_id)
        return state.best if state else None

    def attempts(self, track_id: int) -> int:
        state = self._tracks.get(track_id)
        return state.attempts if state else 0

    @property
    def plates(self) -> dict[int, PlateRead]:
        """Best read of every live track that has one."""
        return {tid: s.best for tid, s in self._tracks.items() if s.best is not None}

    def forget(self, track_ids: Iterable[int]) -> dict[int, PlateRead]:
        """Drop ended tracks; returns their final plates (for the track-end event)."""
        final: dict[int, PlateRead] = {}
        for tid in track_ids:
            state = self._tracks.pop(int(tid), None)
            if state is not None and state.best is not None:
                final[int(tid)] = state.best
        return final

    def _wants_attempt(self, state: _TrackPlate) -> bool:
        if state.attempts >= self.config.attempts:
            return False
        return state.best is None or state.best.confidence < self.done_confidence

    def _evict_stale(self) -> None:
        """Memory bound when ended tracks are never `forget`-ed (counted in `plan` calls)."""
        horizon = self._frames - self.stale_after_frames
        for tid in [t for t, s in self._tracks.items() if s.last_seen < horizon]:
            del self._tracks[tid]

    # ---- OCR off the event loop ------------------------------------------------------------

    async def maybe_read(self, frame: Frame, tracks: Detections) -> dict[int, PlateRead]:
        """Plan this frame's attempts and run them in the OCR thread; returns reads that improved
        a track's best plate (track id → read). Awaits the OCR: use `submit` to never wait."""
        jobs = self.plan(tracks)
        if not jobs:
            return {}
        loop = asyncio.get_running_loop()
        executor = self._executor or shared_ocr_executor()
        reads = await loop.run_in_executor(executor, self._run_jobs, frame, jobs)
        improved: dict[int, PlateRead] = {}
        for job, read in zip(jobs, reads, strict=True):
            if self.record(job.track_id, read) and read is not None:
                improved[job.track_id] = read
        return improved

    def submit(self, frame: Frame, tracks: Detections) -> bool:
        """Start `maybe_read` in the background unless one is still running (then no attempt is
        spent and False is returned). Results show up in `plates` / `best()`. Loop thread only."""
        if self._task is not None and not self._task.done():
            return False
        self._task = task = asyncio.ensure_future(self.maybe_read(frame, tracks))
        task.add_done_callback(self._log_failure)
        return True

    async def drain(self) -> None:
        """Wait for a background `submit` to finish (shutdown, tests)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _log_failure(self, task: asyncio.Task[dict[int, PlateRead]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("camera %s: plate OCR failed: %r", self.camera_id, task.exception())

    def _run_jobs(self, frame: Frame, jobs: list[OcrJob]) -> list[PlateRead | None]:
        """Worker thread: one full-resolution BGR conversion, then one OCR per crop."""
        bgr = frame.to_bgr()
        h, w = bgr.shape[:2]
        reads: list[PlateRead | None] = []
        for job in jobs:
            x1, y1, x2, y2 = job.xyxy
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            read: PlateRead | None = None
            if x2 > x1 and y2 > y1:
                self.metrics.ocr_attempts.labels(camera=self.camera_id).inc()
                try:
                    read = _in_frame(self._read(np.ascontiguousarray(bgr[y1:y2, x1:x2])), x1, y1)
                except Exception:
                    log.exception("camera %s: OCR of track %d failed", self.camera_id, job.track_id)
            if read is not None:
                self.metrics.ocr_reads.labels(camera=self.camera_id).inc()
            reads.append(read)
        return reads
