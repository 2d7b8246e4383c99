"""The OCR workers all cameras share: a bounded pool that refuses rather than queues.

`OcrPool` runs the reads on threads of the service's process (tests, scripted readers);
`ProcessOcrPool`, what the service uses, runs them in worker processes, each with its own reader
built from `OcrConfig`. A process keeps OCR off the video's interpreter lock: rapidocr's pre- and
post-processing is Python, and a thread holding the lock while the CPU is busy elsewhere stalls
the event loop and the batcher with it. Either way the workers run at a lower priority
(`OCR_NICE`), so that on a busy CPU OCR gets the time detection leaves, and a pool with every
worker busy answers None at once: the video never waits for OCR.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import numpy as np

from edge.config import OcrConfig
from edge.track.crops import VehicleCrop
from edge.track.plates import PlateRead, PlateReader, ReaderUnavailable, make_reader

log = logging.getLogger(__name__)

OCR_NICE = 19
"""Scheduling niceness of OCR workers (threads or processes): the lowest, so that a CPU the
video keeps busy gives OCR what is left (at 10, OCR on 2 cores still cost the video 10-25 % of
its frames: BENCHMARKS.md)."""

Outcome = tuple[PlateRead | None, str | None]
"""One crop's read, or the error that stopped it (as text: it may come from another process)."""
ReadFn = Callable[[np.ndarray], PlateRead | None]


class OcrBusy(RuntimeError):
    """A read refused after it was asked for: the pool that would run it had no free worker
    (`edge.worker_plates`, where the pool is in another process)."""


class ReadPool(Protocol):
    """What a `PlateScheduler` reads on: `OcrPool`, or a camera worker's stand-in for the
    service's pool. `try_read`'s future may fail with `OcrBusy` (counted as skipped)."""

    def has_room(self) -> bool: ...
    def try_read(self, crops: list[VehicleCrop], read: ReadFn) -> Future[list[Outcome]] | None: ...


def _lower_priority() -> None:
    """Make the calling thread nicer (Linux: niceness is per thread; elsewhere nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), OCR_NICE)
    except (AttributeError, OSError):
        pass


def read_crops(read: ReadFn, crops: list[VehicleCrop]) -> list[Outcome]:
    """Each crop converted to BGR and read; a failing read costs only its crop."""
    out: list[Outcome] = []
    for crop in crops:
        try:
            out.append((read(crop.to_bgr()), None))
        except Exception as exc:  # the engine's own failure: reported, never fatal
            out.append((None, f"{type(exc).__name__}: {exc}"))
    return out


class OcrPool:
    """`workers` OCR threads; `try_read` refuses (None) when all are busy, never queues."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._busy = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | ProcessPoolExecutor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ocr", initializer=_lower_priority
        )

    def has_room(self) -> bool:
        with self._lock:
            return self._busy < self.workers

    def try_read(self, crops: list[VehicleCrop], read: ReadFn) -> Future[list[Outcome]] | None:
        """Read `crops` with `read` on a free worker, or None at once when there is none."""
        with self._lock:
            if self._busy >= self.workers:
                return None
            self._busy += 1
        try:
            fut = self._submit(crops, read)
        except BaseException:
            self._release(None)
            raise
        fut.add_done_callback(self._release)
        return fut

    def _submit(self, crops: list[VehicleCrop], read: ReadFn) -> Future[list[Outcome]]:
        return self._executor.submit(read_crops, read, crops)

    def _release(self, _: object) -> None:
        with self._lock:
            self._busy -= 1

    def start(self) -> None:
        """Ready the workers (nothing to do for threads)."""

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_worker_reader: PlateReader | None = None


def _init_worker(config: OcrConfig) -> None:
    global _worker_reader
    try:
        os.nice(OCR_NICE)
    except OSError:
        pass
    import cv2

    cv2.setNumThreads(1)  # one core's worth of OCR per worker, not a thread per core
    _worker_reader = make_reader(config)
    _worker_reader.warm_up()


def _read_in_worker(crops: list[VehicleCrop]) -> list[Outcome]:
    assert _worker_reader is not None
    return read_crops(_worker_reader.read, crops)


def _ready() -> bool:
    return _worker_reader is not None


class ProcessOcrPool(OcrPool):
    """`workers` OCR processes (spawned), each loading its reader from `config` at `start`.

    `try_read`'s `read` is not used: the workers read with their own reader, the one
    `make_reader(config)` gives, as a reader in this process would."""

    def __init__(self, config: OcrConfig, workers: int = 1) -> None:
        self.workers = workers
        self.config = config
        self.backend = config.backend
        self.restarts = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(self.config,),
        )  # fmt: skip

    def start(self) -> None:
        """Start every worker and load its models (blocking; seconds): ReaderUnavailable when
        they cannot load, so that this shows at start."""
        try:
            ready = [self._executor.submit(_ready) for _ in range(self.workers)]
            if not all(f.result() for f in ready):
                raise ReaderUnavailable("ocr: an OCR worker process has no reader")
        except BrokenProcessPool:
            raise ReaderUnavailable(
                f"ocr.backend {self.backend}: the OCR worker process failed to load its "
                "models (see the log above)"
            ) from None

    def _submit(self, crops: list[VehicleCrop], read: ReadFn) -> Future[list[Outcome]]:
        try:
            return self._executor.submit(_read_in_worker, crops)
        except BrokenProcessPool:
            # A worker died (killed, crashed in a native library): the reads in flight failed
            # with it; new workers are spawned for this read and the next (they load their
            # models first, so this read takes seconds longer).
            log.error("OCR worker process died; starting new ones")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            self.restarts += 1
            return self._executor.submit(_read_in_worker, crops)
