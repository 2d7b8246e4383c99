"""What crosses a camera worker's pipe besides plain tuples: its spec (at the spawn), the status
it reports per camera, and a batch's detections packed as bytes.

Apart from `edge.camera_worker` (the worker's body) and `edge.workers` (the service's side)
because both ends use them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edge.config import CameraConfig, IngestConfig, OcrConfig, StreamConfig, TrackerConfig
from edge.infer.letterbox import LetterboxSpec
from edge.types import Detections

Counts = dict[str, dict[str, dict[str, int]]]
"""Line → class → direction → vehicles counted."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, picklable (it crosses the spawn)."""

    index: int
    generation: int
    shm_name: str
    cameras: tuple[CameraConfig, ...]
    ingest: IngestConfig
    tracker: TrackerConfig
    class_names: tuple[str, ...]
    letterbox: LetterboxSpec
    """The detector's, always uint8: the slots hold pictures, the graph casts and scales."""
    slots_per_camera: int
    log_level: int = logging.INFO
    counts: dict[str, Counts] = field(default_factory=dict)
    """Per camera, the line counts its previous worker reported last: a restarted worker counts
    on from them (its tracks start afresh)."""
    stream: StreamConfig = field(default_factory=StreamConfig)
    """The live video's settings: watched cameras are annotated and encoded in the worker."""
    ocr: OcrConfig | None = None
    """Set when plates are read: the worker schedules them (`edge.worker_plates`)."""
    snapshots: bool = False
    """Whether the service writes snapshots (`ocr.snapshots.dir`)."""


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """What /api/cameras shows of a camera that a worker owns."""

    state: str
    source_fps: float | None
    last_error: str | None
    last_error_at: float | None
    counts: Counts
    size: tuple[int, int] | None


Packed = tuple[str, bytes]
"""An array as its dtype and bytes: pickled an order of magnitude faster than the array."""
Results = tuple[list[tuple[str, int, float, int]], Packed, Packed, Packed]
"""A batch's detections for one worker: (camera, seq, received_at, boxes) per frame in order, then
every frame's boxes, scores and class ids, concatenated (three arrays per message, not per frame:
pickling an array costs more than its few boxes)."""


def _pack(array: np.ndarray) -> Packed:
    return array.dtype.str, np.ascontiguousarray(array).tobytes()


def _unpack(packed: Packed, columns: int = 0) -> np.ndarray:
    out = np.frombuffer(packed[1], dtype=np.dtype(packed[0])).copy()  # writable, as unpickled
    return out.reshape(-1, columns) if columns else out


def pack_results(frames: list[tuple[str, int, float, Detections]]) -> Results:
    """(camera, seq, received_at, detections) of frames → `Results`."""
    index = [(cam, seq, at, len(d.score)) for cam, seq, at, d in frames]
    dets = [f[3] for f in frames]
    if len(dets) == 1:
        return index, _pack(dets[0].xyxy), _pack(dets[0].score), _pack(dets[0].class_id)
    return (
        index,
        _pack(np.concatenate([d.xyxy for d in dets])),
        _pack(np.concatenate([d.score for d in dets])),
        _pack(np.concatenate([d.class_id for d in dets])),
    )


def unpack_results(results: Results) -> list[tuple[str, int, float, Detections]]:
    """`pack_results`' frames back (each frame's arrays are views of the message's)."""
    index = results[0]
    xyxy, score, class_id = _unpack(results[1], 4), _unpack(results[2]), _unpack(results[3])
    out, at = [], 0
    for cam, seq, received_at, n in index:
        end = at + n
        dets = Detections(xyxy[at:end], score[at:end], class_id[at:end])
        out.append((cam, seq, received_at, dets))
        at = end
    return out
