"""The metric families edge exports, declared on one injected `CollectorRegistry`, and the
bounded vocabularies of their labels. `edge.metrics.EdgeMetrics` records into them."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.process_collector import ProcessCollector

from edge.gpu_metrics import GpuCollector, register_gpu_collector


class DropReason(StrEnum):
    """Why a frame left the pipeline without being published (`edge_frames_dropped_total`)."""

    SUPERSEDED = "superseded"
    """A newer frame of the camera replaced it before it was taken (latest-frame hand-off)."""
    STALE = "stale"
    """It waited for a batch longer than `ingest.stale_s`."""
    QUEUE_FULL = "queue_full"
    """Its results found the consumer's bounded queue full."""
    VIEWER_SLOW = "viewer_slow"
    """A viewer's send queue was full (counted per viewer and packet)."""
    FPS_CAP = "fps_cap"
    """Decoded above the camera's `fps` cap."""
    ERROR = "error"
    """Inference, tracking or publishing failed for it."""
    SHUTDOWN = "shutdown"
    """Still pending when the service stopped."""


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
FPS_POINTS = ("decoded", "inferred", "published", "rendered")
EVENT_DROP_REASONS = ("queue_full", "failed", "rejected", "io_error")
STORE_DELETE_REASONS = ("retention", "size_cap")
RELOAD_RESULTS = ("applied", "unchanged", "invalid", "failed")
"""`edge.config.reload.ReloadOutcome`'s values."""
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


class MetricFamilies:
    """Every family as an attribute, created on `registry` (a fresh private one by default)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, process: bool = False, gpu: bool = False
    ) -> None:
        """`process`: add process_* (RSS, CPU, fds); `gpu`: add edge_gpu_* when a GPU is usable."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.gpu: GpuCollector | None = register_gpu_collector(r) if gpu else None
        self._ingest(r)
        self._latency(r)
        self._model(r)
        self._events(r)
        self._publishing(r)
        self._config(r)

    def _ingest(self, r: CollectorRegistry) -> None:
        """Frames through ingest and the worker processes, and camera health."""
        cam = ["camera"]
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

    def _latency(self, r: CollectorRegistry) -> None:
        """Per-frame stage times, batch run time, end-to-end and video latency."""
        cam = ["camera"]
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

    def _model(self, r: CollectorRegistry) -> None:
        """Batches and the model's detections."""
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

    def _events(self, r: CollectorRegistry) -> None:
        """Tracks, line counts, OCR, event sinks and the store."""
        cam = ["camera"]
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
            "Frames on which an OCR attempt was due but every OCR worker was busy (the video "
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

    def _publishing(self, r: CollectorRegistry) -> None:
        """Viewers, encoders and refused offers."""
        cam = ["camera"]
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

    def _config(self, r: CollectorRegistry) -> None:
        """Reloads of the config file."""
        self.config_reloads = Counter(
            "edge_config_reloads",
            "Reloads of cameras.yaml (SIGHUP, a change of the file, the config API), by result: "
            "applied, unchanged, invalid (refused, nothing changed) or failed.",
            ["result"],
            registry=r,
        )
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result=result)
