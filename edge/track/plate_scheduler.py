"""Which crops of which tracks get read, on a bounded OCR pool that never holds up the video.

Per camera, `PlateScheduler.observe` keeps each confirmed track's best `ocr.candidates` crops
(largest, sharpest, fully inside the picture; see `edge.track.crops`), cut on the event loop
without converting the frame. Whenever the camera's previous attempt is done and the shared
OCR pool (`edge.track.ocr_pool`) has a free worker, the best unread crop of the track with the
fewest attempts is read there. While a vehicle approaches, better crops keep replacing the kept
ones, so attempts go to the views where the plate is largest rather than to the first frames. A
track stops being read after `ocr.attempts`, or once `ocr.agree` reads agree on its plate
(`edge.track.plate_vote`).

When the pool is busy, nothing waits: the crops stay kept for a later frame and the frame is
counted in `edge_ocr_skipped_total`. The pool may also refuse an attempt after it was planned (a
camera worker's reads go to the service's pool, whose state it learns only from the answer,
`edge.worker_plates`): the attempt is then given back (its crops unread, the track's budget
unspent) and counted as skipped the same way.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from edge.config import OcrConfig
from edge.metrics import EdgeMetrics
from edge.track.crops import VehicleCrop, cut, fully_inside, quality
from edge.track.events import PlateInfo
from edge.track.ocr_pool import OcrBusy, OcrPool, Outcome, ReadPool
from edge.track.plate_vote import VotedPlate, compile_pattern, vote
from edge.track.plates import PlateRead
from edge.track.snapshots import SnapshotNames, SnapshotSink
from edge.track.sort import TrackSummary
from edge.types import Detections, Frame

log = logging.getLogger(__name__)

CUT_WEIGHT = 0.1
"""Quality weight of a box cut by the picture's border: kept only when nothing better comes."""
GAIN = 1.1
"""A new crop must beat the worst kept one by this factor (consecutive frames differ little)."""
READ_GAIN = 1.3
"""A track's next attempt waits for a crop this much better than the best one read already (or
for `reread_after_frames`): with a fast OCR, attempts would otherwise all go to the first, small
views of an approaching vehicle."""


@dataclass(slots=True)
class _Candidate:
    quality: float
    crop: VehicleCrop
    read: bool = False


@dataclass(slots=True)
class _TrackPlate:
    attempts: int = 0
    candidates: list[_Candidate] = field(default_factory=list)
    """Best first, at most `ocr.candidates`."""
    reads: list[tuple[PlateRead, VehicleCrop]] = field(default_factory=list)
    voted: VotedPlate | None = None
    last_seen: int = 0
    read_quality: float = 0.0
    """Quality of the best crop read so far."""
    read_frame: int = 0


@dataclass(frozen=True, slots=True)
class OcrJob:
    """One planned attempt: the track and the crop to read, and what the track had read before
    it (restored if the pool refuses the attempt)."""

    track_id: int
    crop: VehicleCrop
    before: tuple[float, int] = (0.0, 0)
    """The track's `read_quality` and `read_frame` before this attempt."""


class PlateScheduler:
    """Per camera: the kept crops of each track, which get read, and each track's voted plate.

    A track's first attempt is made as soon as it has a crop; later ones when a crop `READ_GAIN`
    better than those read has come, or `reread_after_frames` after the last.

    `read` is any BGR → PlateRead | None callable (normally `PlateReader.read`); it runs on `pool`
    (default: a pool of its own with one thread). With `snapshots`, crops keep being collected
    after a track's plate is settled, and its best crop is saved when it ends.
    """

    def __init__(
        self,
        camera_id: str,
        config: OcrConfig,
        read: Callable[..., PlateRead | None],
        metrics: EdgeMetrics,
        pool: ReadPool | None = None,
        max_per_frame: int = 1,
        stale_after_frames: int = 1000,
        reread_after_frames: int = 25,
        snapshots: SnapshotSink | None = None,
    ) -> None:
        if max_per_frame < 1:
            raise ValueError("max_per_frame must be at least 1")
        self.camera_id = camera_id
        self.config = config
        self.metrics = metrics
        self.max_per_frame = max_per_frame
        self.stale_after_frames = stale_after_frames
        self.reread_after_frames = reread_after_frames
        """A vehicle that stops growing (parked, receding) is read again after this many frames,
        so that its reads can still be voted on."""
        self.snapshots = snapshots
        self.pattern = compile_pattern(config.plate_pattern)
        self._read = read
        self._pool = pool
        self._tracks: dict[int, _TrackPlate] = {}
        self._frames = 0
        self._task: asyncio.Task[None] | None = None
        self._reading: set[int] = set()
        """Tracks whose attempt is in flight."""
        self.on_done: Callable[[], None] | None = None
        """Called on the event loop after each attempt (`follow`)."""

    @property
    def pool(self) -> ReadPool:
        if self._pool is None:
            self._pool = OcrPool(1)
        return self._pool

    # ---- pure bookkeeping -------------------------------------------------------------------

    def observe(self, frame: Frame, tracks: Detections) -> None:
        """Offer this frame's confirmed tracks as crops; call once per tracked frame."""
        self._frames += 1
        if tracks.track_id is not None:
            for box, tid in zip(tracks.xyxy, tracks.track_id, strict=True):
                state = self._tracks.setdefault(int(tid), _TrackPlate())
                state.last_seen = self._frames
                self._offer(state, frame, tuple(float(v) for v in box))  # type: ignore[arg-type]
        self._evict_stale()

    def _offer(
        self, state: _TrackPlate, frame: Frame, box: tuple[float, float, float, float]
    ) -> None:
        width, height = box[2] - box[0], box[3] - box[1]
        if width < self.config.min_box_width or height <= 0:
            return
        if not (self._wants_attempt(state) or self.snapshots is not None):
            return
        weight = 1.0 if fully_inside(box, frame.width, frame.height) else CUT_WEIGHT
        kept = state.candidates
        full = len(kept) >= self.config.candidates
        # Quality never exceeds the area: most boxes are refused before any pixel is touched.
        if full and width * height * weight <= kept[-1].quality * GAIN:
            return
        crop = cut(frame, box)
        if crop is None:
            return
        q = quality(crop) * weight
        if full:
            if q <= kept[-1].quality * GAIN:
                return
            kept.pop()
        keys = [-c.quality for c in kept]
        kept.insert(bisect.bisect_right(keys, -q), _Candidate(q, crop))

    def plan(self) -> list[OcrJob]:
        """The attempts to make now (counted as spent): best unread crops, fewest-tried first."""
        options: list[tuple[int, float, int, _Candidate]] = []
        for tid, state in self._tracks.items():
            cand = self._due(state)
            if cand is not None:
                options.append((state.attempts, -cand.quality, tid, cand))
        options.sort(key=lambda o: (o[0], o[1]))
        jobs = []
        for _, _, tid, cand in options[: self.max_per_frame]:
            state = self._tracks[tid]
            jobs.append(OcrJob(tid, cand.crop, (state.read_quality, state.read_frame)))
            cand.read = True
            state.attempts += 1
            state.read_quality = max(state.read_quality, cand.quality)
            state.read_frame = self._frames
        return jobs

    def refund(self, jobs: Iterable[OcrJob]) -> None:
        """Undo `plan` for attempts the pool refused: their crops unread, the budget unspent."""
        for job in jobs:
            state = self._tracks.get(job.track_id)
            if state is None:
                continue
            state.attempts = max(0, state.attempts - 1)
            state.read_quality, state.read_frame = job.before
            for cand in state.candidates:
                if cand.crop is job.crop:
                    cand.read = False

    def _due(self, state: _TrackPlate) -> _Candidate | None:
        """The track's best unread crop, if an attempt on it is due now."""
        if not self._wants_attempt(state):
            return None
        cand = next((c for c in state.candidates if not c.read), None)
        if cand is None or state.attempts == 0:
            return cand
        if cand.quality >= state.read_quality * READ_GAIN:
            return cand
        return cand if self._frames - state.read_frame >= self.reread_after_frames else None

    def record(self, track_id: int, crop: VehicleCrop, read: PlateRead | None) -> bool:
        """Add a read to its track's vote; True when the voted plate changed."""
        state = self._tracks.get(track_id)
        if state is None or read is None:
            return False
        state.reads.append((read, crop))
        before = state.voted
        state.voted = vote([r for r, _ in state.reads], self.pattern)
        return state.voted != before

    def best(self, track_id: int) -> VotedPlate | None:
        state = self._tracks.get(track_id)
        return state.voted if state else None

    def best_crop(self, track_id: int) -> VehicleCrop | None:
        """The track's best crop so far (largest and sharpest, inside the picture if ever)."""
        state = self._tracks.get(track_id)
        return state.candidates[0].crop if state and state.candidates else None

    def plate_crop(self, track_id: int) -> tuple[VehicleCrop, PlateRead] | None:
        """The surest read of the voted plate and the crop it was read on."""
        state = self._tracks.get(track_id)
        if state is None or state.voted is None:
            return None
        same = [(r, c) for r, c in state.reads if r.text == state.voted.text]
        if not same:
            return None
        read, crop = max(same, key=lambda rc: rc[0].confidence)
        return crop, read

    def info(self, track_id: int, ended: bool, when: datetime | None = None) -> PlateInfo | None:
        """What a track's event carries: its voted plate and, when it `ended`, the names of its
        snapshots (queued for writing now)."""
        voted = self.best(track_id)
        info = PlateInfo()
        if voted is not None:
            info = PlateInfo(voted.text, voted.confidence, voted.agreed)
        crop = self.best_crop(track_id) if ended and self.snapshots is not None else None
        if self.snapshots is not None and crop is not None:
            plate = self.plate_crop(track_id)
            names = self.snapshots.names(
                self.camera_id, track_id, when or datetime.now(UTC), plate is not None
            )
            if plate is not None and plate[1].box is not None:
                # the plate's crop may be another frame than the vehicle's best one
                self.snapshots.save(SnapshotNames(names.vehicle, None), crop)
                self.snapshots.save(SnapshotNames(names.plate or "", None), plate[0],
                                    crop_box=plate[1].box)  # fmt: skip
            else:
                names = SnapshotNames(names.vehicle, None)
                self.snapshots.save(names, crop)
            info = replace(info, snapshot=names.vehicle, plate_snapshot=names.plate)
        return None if info == PlateInfo() else info

    def follow(self, release: Callable[[], Iterable[TrackSummary]]) -> None:
        """After each attempt, `release()` (`CameraTracking.release`: the end events that waited
        for it) and forget the tracks it returns."""

        def done() -> None:
            self.forget(s.track_id for s in release())

        self.on_done = done

    def reading(self, track_id: int) -> bool:
        """Whether an attempt on the track is in flight (its end event waits for it)."""
        return track_id in self._reading

    def attempts(self, track_id: int) -> int:
        state = self._tracks.get(track_id)
        return state.attempts if state else 0

    @property
    def plates(self) -> dict[int, VotedPlate]:
        """Voted plate of every live track that has one."""
        return {tid: s.voted for tid, s in self._tracks.items() if s.voted is not None}

    def forget(self, track_ids: Iterable[int]) -> dict[int, VotedPlate]:
        """Drop ended tracks; returns their final plates."""
        final: dict[int, VotedPlate] = {}
        for tid in track_ids:
            state = self._tracks.pop(int(tid), None)
            if state is not None and state.voted is not None:
                final[int(tid)] = state.voted
        return final

    def kept_bytes(self) -> int:
        """Memory held by kept crops (bounded by tracks × `ocr.candidates`)."""
        return sum(c.crop.nbytes for s in self._tracks.values() for c in s.candidates)

    def _wants_attempt(self, state: _TrackPlate) -> bool:
        if state.attempts >= self.config.attempts:
            return False
        agree = self.config.agree
        return not (agree and state.voted is not None and state.voted.agreed >= agree)

    def _evict_stale(self) -> None:
        """Memory bound when ended tracks are never `forget`-ed (counted in `observe` calls)."""
        horizon = self._frames - self.stale_after_frames
        for tid in [t for t, s in self._tracks.items() if s.last_seen < horizon]:
            del self._tracks[tid]

    # ---- OCR off the event loop ------------------------------------------------------------

    def submit(self, frame: Frame, tracks: Detections) -> bool:
        """Keep this frame's crops, and start reading the best ones if the camera's previous
        attempt is done and the pool has a free worker. Never waits; loop thread only. False
        when an attempt was due but the pool was busy (counted in `edge_ocr_skipped_total`)."""
        self.observe(frame, tracks)
        busy = (self._task is not None and not self._task.done()) or not self.pool.has_room()
        if busy:
            if self._any_due():
                self.metrics.ocr_skipped.labels(camera=self.camera_id).inc()
                return False
            return True
        jobs = self.plan()
        if jobs:
            self._task = task = asyncio.ensure_future(self._run(jobs))
            task.add_done_callback(self._log_failure)
        return True

    async def maybe_read(self, frame: Frame, tracks: Detections) -> dict[int, VotedPlate]:
        """`observe` and read the planned crops, awaiting them (tests, offline analysis); returns
        the tracks whose voted plate changed."""
        self.observe(frame, tracks)
        jobs = self.plan()
        before = {tid: self.best(tid) for tid in {j.track_id for j in jobs}}
        if jobs:
            await self._run(jobs)
        return {tid: v for tid in before if (v := self.best(tid)) is not None and v != before[tid]}

    async def drain(self) -> None:
        """Wait for a background attempt to finish (shutdown, tests)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _any_due(self) -> bool:
        return any(self._due(s) is not None for s in self._tracks.values())

    async def _run(self, jobs: list[OcrJob]) -> None:
        ids = {j.track_id for j in jobs}
        self._reading |= ids
        try:
            await self._read_jobs(jobs)
        finally:
            self._reading -= ids
            if self.on_done is not None:
                self.on_done()

    async def _read_jobs(self, jobs: list[OcrJob]) -> None:
        crops = [j.crop for j in jobs]
        fut = self.pool.try_read(crops, self._read)
        while fut is None:  # another camera's attempt took the worker (maybe_read only)
            await asyncio.sleep(0.01)
            fut = self.pool.try_read(crops, self._read)
        try:
            outcomes = await asyncio.wrap_future(fut)
        except OcrBusy:
            self.refund(jobs)
            self.metrics.ocr_skipped.labels(camera=self.camera_id).inc()
            return
        except Exception:  # made, and failed with the pool (a dead OCR process)
            self.metrics.ocr_attempts.labels(camera=self.camera_id).inc(len(jobs))
            raise
        self.metrics.ocr_attempts.labels(camera=self.camera_id).inc(len(jobs))
        for job, outcome in zip(jobs, outcomes, strict=True):
            self.record(job.track_id, job.crop, self._in_frame(job, outcome))

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("camera %s: plate OCR failed: %r", self.camera_id, task.exception())

    def _in_frame(self, job: OcrJob, outcome: Outcome) -> PlateRead | None:
        """A crop's read with its box moved to frame pixels; a failure logged and counted as
        a read-less attempt."""
        read, error = outcome
        if error is not None:
            log.error("camera %s: OCR of track %d failed: %s", self.camera_id, job.track_id, error)
        if read is None:
            return None
        self.metrics.ocr_reads.labels(camera=self.camera_id).inc()
        if read.box is None:
            return read
        x0, y0 = job.crop.box[:2]
        x1, y1, x2, y2 = read.box
        return replace(read, box=(x1 + x0, y1 + y0, x2 + x0, y2 + y0))
