"""Every Prometheus metric edge exports, on one injected `CollectorRegistry`.

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

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from edge.gpu_metrics import GpuCollector, register_gpu_collector

CAMERA_STATES = ("connecting", "streaming", "stalled", "backoff", "unauthorized", "stopped")
STAGES = (
    "decode",
    "queue_wait",
    "preprocess",
    "inference",
    "postprocess",
    "tracking",
    "annotation",
    "encode",
    "send",
)
DROP_REASONS = ("superseded", "stale", "queue_full", "viewer_slow", "fps_cap", "error", "shutdown")
FPS_POINTS = ("decoded", "inferred", "published", "rendered")
EVENT_DROP_REASONS = ("queue_full", "failed", "rejected", "io_error")
STORE_DELETE_REASONS = ("retention", "size_cap")
VIEWER_REFUSAL_REASONS = (
    "server_full",
    "camera_full",
    "client_full",
    "content_type",
    "cross_site",
    "bad_offer",
    "too_large",
    "not_connected",
)
CONTENT_TYPE = CONTENT_TYPE_LATEST
FPS_WINDOW_S = 5.0
"""Window of the `edge_camera_fps` gauges: long enough that a decode thread starved for 0.2 s
by inference moves the reading by under 5 %, short enough to show a camera slowing down."""

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)


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

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


class EdgeMetrics:
    """The metric families, created on `registry` (a fresh private one by default)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, process: bool = False, gpu: bool = False
    ) -> None:
        """`process`: add process_* (RSS, CPU, fds); `gpu`: add edge_gpu_* when a GPU is usable."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.gpu: GpuCollector | None = register_gpu_collector(r) if gpu else None
        cam = ["camera"]
        # ingest
        self.frames_received = Counter(
            "edge_frames_received", "Video packets received from the camera.", cam, registry=r
        )
        self.frames_decoded = Counter("edge_frames_decoded", "Frames decoded.", cam, registry=r)
        self.frames_inferred = Counter(
            "edge_frames_inferred", "Frames that went through the detector.", cam, registry=r
        )
        self.frames_published = Counter(
            "edge_frames_published",
            "Frames whose results left the pipeline (tracked, counted, to the encoder if watched).",
            cam,
            registry=r,
        )
        self.frames_dropped = Counter(
            "edge_frames_dropped", "Frames dropped, by reason.", ["camera", "reason"], registry=r
        )
        self.fps = Gauge(
            "edge_camera_fps",
            "Frames per second at a point of the pipeline.",
            ["camera", "point"],
            registry=r,
        )
        self.source_fps = Gauge(
            "edge_camera_source_fps", "Frame rate the camera advertises.", cam, registry=r
        )
        self.camera_state = Gauge(
            "edge_camera_state",
            "1 for the camera's current state.",
            ["camera", "state"],
            registry=r,
        )
        self.camera_up = Gauge("edge_camera_up", "1 while the camera streams.", cam, registry=r)
        self.reconnects = Counter("edge_camera_reconnects", "Reconnect attempts.", cam, registry=r)
        self.worker_restarts = Counter(
            "edge_worker_restarts",
            "Camera worker processes restarted after dying.",
            ["worker"],
            registry=r,
        )
        self.unauthorized = Counter(
            "edge_camera_unauthorized",
            "Connection attempts the camera refused for its credentials (401/403).",
            cam,
            registry=r,
        )
        self.decode_errors = Counter(
            "edge_camera_decode_errors", "Corrupt packets or frames skipped.", cam, registry=r
        )
        # latency
        self.stage_seconds = Histogram(
            "edge_stage_seconds",
            "Per-frame time spent in a stage.",
            ["camera", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_inference_seconds = Histogram(
            "edge_batch_inference_seconds",
            "ONNX Runtime run time of one batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "edge_end_to_end_seconds",
            "From frame receipt to its results being published (see frames_published).",
            cam,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.frames_rendered = Counter(
            "edge_frames_rendered",
            "Annotated frames rendered for viewers (once per frame, whatever the codecs).",
            cam,
            registry=r,
        )
        self.video_latency_seconds = Histogram(
            "edge_video_latency_seconds",
            "From frame receipt to its annotated picture being rendered for the encoders.",
            cam,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # batching and model
        self.batch_size = Histogram(
            "edge_batch_size",
            "Frames per inference batch.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.batch_fill_ratio = Histogram(
            "edge_batch_fill_ratio",
            "Batch size over the frames that fill it (its worker's share of the idle streaming "
            "cameras, capped).",
            buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
            registry=r,
        )
        self.provider = Info("edge_onnx", "ONNX Runtime execution provider in use.", registry=r)
        self.detections = Counter(
            "edge_detections", "Detections after NMS, by class.", ["camera", "class"], registry=r
        )
        # tracking, counting, OCR, events
        self.tracks_confirmed = Counter(
            "edge_tracks_confirmed", "Tracks that reached confirmation.", cam, registry=r
        )
        self.line_crossings = Counter(
            "edge_line_crossings",
            "Vehicles counted crossing a line.",
            ["camera", "line", "class", "direction"],
            registry=r,
        )
        self.ocr_attempts = Counter("edge_ocr_attempts", "Plate OCR attempts.", cam, registry=r)
        self.ocr_reads = Counter("edge_ocr_reads", "Plates read.", cam, registry=r)
        self.ocr_skipped = Counter(
            "edge_ocr_skipped",
            "Frames on which an OCR attempt was due but every OCR thread was busy (the video "
            "never waits for OCR).",
            cam,
            registry=r,
        )
        self.snapshots_written = Counter(
            "edge_snapshots_written", "Vehicle and plate JPEG snapshots written.", registry=r
        )
        self.snapshots_deleted = Counter(
            "edge_snapshots_deleted",
            "Snapshots removed to stay under ocr.snapshots.max_mb (oldest first).",
            registry=r,
        )
        self.snapshots_dropped = Counter(
            "edge_snapshots_dropped",
            "Snapshots not written: the writer's queue was full or the disk refused them.",
            registry=r,
        )
        self.snapshots_bytes = Gauge(
            "edge_snapshots_bytes", "Disk used by the snapshot folder.", registry=r
        )
        self.events_emitted = Counter(
            "edge_events_emitted", "Vehicle events written by a sink.", ["sink"], registry=r
        )
        self.events_dropped = Counter(
            "edge_events_dropped",
            "Vehicle events a sink gave up on.",
            ["sink", "reason"],
            registry=r,
        )
        self.events_queue = Gauge(
            "edge_events_queue", "Events waiting in a sink's queue.", ["sink"], registry=r
        )
        self.store_bytes = Gauge(
            "edge_store_bytes", "Size of the events database (file and WAL).", registry=r
        )
        self.store_events_deleted = Counter(
            "edge_store_events_deleted",
            "Events deleted from the database: past retention or over the size cap.",
            ["reason"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "edge_mqtt_connected", "1 while the MQTT sink is connected to its broker.", registry=r
        )
        # publishing
        self.viewers = Gauge("edge_viewers", "Connected WebRTC viewers.", cam, registry=r)
        self.encoders_active = Gauge(
            "edge_encoders_active",
            "Running video encoders (one per watched camera).",
            cam,
            registry=r,
        )
        self.viewers_refused = Counter(
            "edge_viewers_refused",
            "WebRTC offers refused, and viewer slots taken back from viewers that never "
            "connected (not_connected), by reason.",
            ["reason"],
            registry=r,
        )
        for reason in VIEWER_REFUSAL_REASONS:
            self.viewers_refused.labels(reason=reason)
        self._stage_children: dict[tuple[str, str], object] = {}
        self._meters: dict[tuple[str, str], RateMeter] = {}
        self._meters_lock = threading.Lock()
        self._cameras_seen: set[str] = set()

    def set_camera_state(self, camera: str, state: str) -> None:
        """One-hot `edge_camera_state` and `edge_camera_up` (1 only while streaming).

        The first state of a camera also creates its per-camera series at 0 (see `init_camera`),
        so a source alone makes the camera visible to every panel and rule."""
        if camera not in self._cameras_seen:
            self._cameras_seen.add(camera)
            self._zero_camera_series(camera)
        for s in CAMERA_STATES:
            self.camera_state.labels(camera=camera, state=s).set(1 if s == state else 0)
        self.camera_up.labels(camera=camera).set(1 if state == "streaming" else 0)

    def tick_fps(self, camera: str, point: str, now: float | None = None) -> None:
        """Count one frame at `point` (see FPS_POINTS) for the `edge_camera_fps` gauge."""
        self._meter(camera, point).tick(now)

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
        # The labelled child cached: a `labels()` lookup costs more than the observation, and
        # this runs several times per frame in the batching process.
        child = self._stage_children.get((camera, stage))
        if child is None:
            child = self._stage_children[(camera, stage)] = self.stage_seconds.labels(
                camera=camera, stage=stage
            )
        child.observe(seconds)  # type: ignore[attr-defined]

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
            self.set_camera_state(camera, "connecting")
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
        for reason in DROP_REASONS:
            self.frames_dropped.labels(camera=camera, reason=reason)
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

    def observe_batch(self, size: int, capacity: int, seconds: float | None) -> None:
        """One inference batch: its size, fill (size over the frames that would fill it) and run
        time (None where `Detector.infer` recorded it already)."""
        self.batch_size.observe(size)
        self.batch_fill_ratio.observe(min(1.0, size / max(1, capacity)))
        if seconds is not None:
            self.batch_inference_seconds.observe(seconds)

    def observe_end_to_end(self, camera: str, seconds: float) -> None:
        """One frame published: receive → published latency, counter and FPS together."""
        self.end_to_end_seconds.labels(camera=camera).observe(seconds)
        self.frames_published.labels(camera=camera).inc()
        self.tick_fps(camera, "published")

    def observe_rendered(self, camera: str, seconds: float) -> None:
        """One annotated picture rendered for viewers: video latency, counter and FPS together."""
        self.video_latency_seconds.labels(camera=camera).observe(seconds)
        self.frames_rendered.labels(camera=camera).inc()
        self.tick_fps(camera, "rendered")

    def count_viewer_refused(self, reason: str) -> None:
        """One offer refused or one never-connected viewer dropped (VIEWER_REFUSAL_REASONS)."""
        self.viewers_refused.labels(reason=reason).inc()

    def count_inferred(self, camera: str) -> None:
        child = self._stage_children.get((camera, ""))
        if child is None:
            child = self._stage_children[(camera, "")] = self.frames_inferred.labels(camera=camera)
        child.inc()  # type: ignore[attr-defined]

    def count_drop(self, camera: str, reason: str, n: int = 1) -> None:
        self.frames_dropped.labels(camera=camera, reason=reason).inc(n)

    def exposition(self) -> bytes:
        """The text format for `GET /metrics` (serve with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
