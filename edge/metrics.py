"""What the stages record through: `EdgeMetrics`, one method per fact, over the families that
`edge.metric_families` declares on one injected `CollectorRegistry`.

Stages receive an `EdgeMetrics` and record into it; nothing registers at import time, so tests can
build as many independent instances as they like. Labels are bounded: camera id, stage, class,
line, direction, reason, state, sink, point, gpu; never a URL.

Invariants the dashboard, the alert rules and the end-to-end test rely on (per camera):
- `edge_stage_seconds_count{stage="decode"}` == `edge_frames_decoded_total`;
- `edge_stage_seconds_count{stage="inference"}` == `edge_frames_inferred_total` (the per-frame
  share of its batch's run time);
- `sum(edge_batch_size_sum)` == `sum(edge_frames_inferred_total)`;
- `edge_end_to_end_seconds_count` == `edge_frames_published_total`, where *published* means the
  frame's results left the pipeline (tracked, counted, handed to the encoder when watched), for
  every processed frame, watched or not (`observe_end_to_end`, called by the app);
- `edge_video_latency_seconds_count` == `edge_frames_rendered_total`: annotated pictures rendered
  for viewers, only while someone watches (`observe_rendered`, called by the publisher).
Call `init_camera` once per configured camera so that every per-camera series exists at 0 from the
start (Prometheus best practice: a missing series is not a zero, and rate() needs the zero).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from edge.ingest.state import CameraState
from edge.metric_families import (
    EVENT_DROP_REASONS,
    FPS_POINTS,
    STAGES,
    STORE_DELETE_REASONS,
    VIEWER_REFUSAL_REASONS,
    DropReason,
    MetricFamilies,
)

__all__ = [
    "CONTENT_TYPE",
    "EVENT_DROP_REASONS",
    "FPS_POINTS",
    "FPS_WINDOW_S",
    "STAGES",
    "STORE_DELETE_REASONS",
    "VIEWER_REFUSAL_REASONS",
    "CameraState",
    "DropReason",
    "EdgeMetrics",
    "RateMeter",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
FPS_WINDOW_S = 5.0
"""Window of the `edge_camera_fps` gauges: long enough that a decode thread starved for 0.2 s
by inference moves the reading by under 5 %, short enough to show a camera slowing down."""


class RateMeter:
    """Events per second over a sliding window; thread-safe, O(1) memory per second of window."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def tick_many(self, times: Sequence[float]) -> None:
        """`tick(t)` for each of `times` (in order), under one lock."""
        if times:
            with self._lock:
                self._times.extend(times)
                self._trim(times[-1])

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


class EdgeMetrics(MetricFamilies):
    """The façade stages record through: one method per fact, labelled children cached."""

    def __init__(
        self, registry: CollectorRegistry | None = None, process: bool = False, gpu: bool = False
    ) -> None:
        """`process`: add process_* (RSS, CPU, fds); `gpu`: add edge_gpu_* when a GPU is usable."""
        super().__init__(registry, process, gpu)
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        self._meters: dict[tuple[str, str], RateMeter] = {}
        self._meters_lock = threading.Lock()
        self._cameras_seen: set[str] = set()

    def set_camera_state(self, camera: str, state: CameraState) -> None:
        """One-hot `edge_camera_state` and `edge_camera_up` (1 only while streaming).

        The first state of a camera also creates its per-camera series at 0 (see `init_camera`),
        so a source alone makes the camera visible to every panel and rule."""
        if camera not in self._cameras_seen:
            self._cameras_seen.add(camera)
            self._zero_camera_series(camera)
        for s in CameraState:
            self.camera_state.labels(camera=camera, state=s).set(1 if s == state else 0)
        self.camera_up.labels(camera=camera).set(1 if state == "streaming" else 0)

    def tick_fps(self, camera: str, point: str, now: float | None = None) -> None:
        """Count one frame at `point` (see FPS_POINTS) for the `edge_camera_fps` gauge."""
        self._meter(camera, point).tick(now)

    def tick_fps_many(self, camera: str, point: str, times: Sequence[float]) -> None:
        """`tick_fps` for frames counted elsewhere at these times (a worker process's)."""
        self._meter(camera, point).tick_many(times)

    def _meter(self, camera: str, point: str) -> RateMeter:
        key = (camera, point)
        with self._meters_lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = RateMeter(FPS_WINDOW_S)
                self.fps.labels(camera=camera, point=point).set_function(meter.rate)
        return meter

    def fps_rates(self, camera: str) -> dict[str, float]:
        """Current FPS of one camera at each point (for the API)."""
        with self._meters_lock:
            meters = {p: m for (c, p), m in self._meters.items() if c == camera}
        return {point: meter.rate() for point, meter in meters.items()}

    def observe_stage(self, camera: str, stage: str, seconds: float) -> None:
        self._child(self.stage_seconds, camera, stage).observe(seconds)

    def _child(self, family: MetricWrapperBase, *labels: str) -> Any:
        """`family.labels(*labels)`, looked up once: a `labels()` lookup costs more than the
        increment, and these run several times per frame in the batching process."""
        key = (family, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    # --- helpers the stages and the app call -------------------------------------------------

    @classmethod
    def for_service(cls, gpu: bool = True) -> EdgeMetrics:
        """The instance `edge run` serves: process RSS/CPU and, when present, GPU metrics.

        Also turns off the client's `*_created` series process-wide: they double the series count
        and no panel or rule uses them."""
        disable_created_metrics()  # type: ignore[no-untyped-call]
        return cls(process=True, gpu=gpu)

    def init_camera(
        self,
        camera: str,
        classes: Iterable[str] = (),
        lines: Iterable[tuple[str, Sequence[str]]] = (),
    ) -> None:
        """Create the camera's series at 0: frame counters, drops by reason, state, viewers,
        detections per class and line crossings per (line, class, direction). Idempotent; never
        resets a value already recorded."""
        if camera not in self._cameras_seen:
            self.set_camera_state(camera, CameraState.CONNECTING)
        classes = list(classes)
        for cls_name in classes:
            self.detections.labels(camera=camera, **{"class": cls_name})
        for line, directions in lines:
            for cls_name in classes:
                for direction in directions:
                    self.line_crossings.labels(
                        camera=camera, line=line, direction=direction, **{"class": cls_name}
                    )

    def _zero_camera_series(self, camera: str) -> None:
        for counter in (
            self.frames_received,
            self.frames_decoded,
            self.frames_inferred,
            self.frames_published,
            self.frames_rendered,
            self.reconnects,
            self.unauthorized,
            self.decode_errors,
            self.tracks_confirmed,
            self.ocr_attempts,
            self.ocr_reads,
            self.ocr_skipped,
        ):
            counter.labels(camera=camera)
        for reason in DropReason:
            self._child(self.frames_dropped, camera, reason)
        self.viewers.labels(camera=camera)  # a new child starts at 0; an existing one is kept
        self.encoders_active.labels(camera=camera)
        for stage in STAGES:
            self.stage_seconds.labels(camera=camera, stage=stage)
        self.end_to_end_seconds.labels(camera=camera)
        self.video_latency_seconds.labels(camera=camera)
        for point in FPS_POINTS:
            self._meter(camera, point)

    def init_sink(self, sink: str) -> None:
        """Create an event sink's series at 0 (queue length, emitted, drops by reason)."""
        self.events_emitted.labels(sink=sink)
        self.events_queue.labels(sink=sink).set(0)
        for reason in EVENT_DROP_REASONS:
            self.events_dropped.labels(sink=sink, reason=reason)

    def init_store(self) -> None:
        """Create the store's deletion series at 0 (one per reason)."""
        for reason in STORE_DELETE_REASONS:
            self.store_events_deleted.labels(reason=reason)

    def set_source_fps(self, camera: str, fps: float | None) -> None:
        """The rate the camera advertises; the FPS alert compares the decoded rate with it."""
        if fps is not None and fps > 0:
            self.source_fps.labels(camera=camera).set(fps)

    def count_detections(
        self, camera: str, class_ids: np.ndarray, class_names: Sequence[str]
    ) -> None:
        """One frame's detections, by class name."""
        if not len(class_ids):
            return
        ids, counts = np.unique(class_ids, return_counts=True)
        for cid, n in zip(ids.tolist(), counts.tolist(), strict=True):
            name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
            self.detections.labels(camera=camera, **{"class": name}).inc(n)

    def set_provider(self, provider: str, **details: object) -> None:
        """`edge_onnx_info{provider=...}`: which execution provider really runs."""
        self.provider.info({"provider": provider, **{k: str(v) for k, v in details.items()}})

    def observe_batch(self, size: int, capacity: int) -> None:
        """One inference batch: its size and fill (size over the frames that would fill it); its
        run time is `Detector.infer`'s to record."""
        self.batch_size.observe(size)
        self.batch_fill_ratio.observe(min(1.0, size / max(1, capacity)))

    def observe_end_to_end(self, camera: str, seconds: float) -> None:
        """One frame published: receive → published latency, counter and FPS together."""
        self._child(self.end_to_end_seconds, camera).observe(seconds)
        self._child(self.frames_published, camera).inc()
        self.tick_fps(camera, "published")

    def observe_rendered(self, camera: str, seconds: float) -> None:
        """One annotated picture rendered for viewers: video latency, counter and FPS together."""
        self._child(self.video_latency_seconds, camera).observe(seconds)
        self._child(self.frames_rendered, camera).inc()
        self.tick_fps(camera, "rendered")

    def count_reload(self, result: str) -> None:
        """One reload of the config file, by its outcome (RELOAD_RESULTS)."""
        self.config_reloads.labels(result=result).inc()

    def count_viewer_refused(self, reason: str) -> None:
        """One offer refused or one never-connected viewer dropped (VIEWER_REFUSAL_REASONS)."""
        self.viewers_refused.labels(reason=reason).inc()

    def count_inferred(self, camera: str) -> None:
        self._child(self.frames_inferred, camera).inc()

    def count_drop(self, camera: str, reason: DropReason, n: int = 1) -> None:
        """`n` frames of `camera` dropped: the one way a stage records a drop."""
        self._child(self.frames_dropped, camera, reason).inc(n)

    def exposition(self) -> bytes:
        """The text format for `GET /metrics` (serve with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
