"""The `cameras.yaml` schema: pydantic models that refuse unknown keys and explain every error.

Defaults are the original traffic app's parameters: 416 input, conf 0.25, IoU 0.50,
max_det 30, car/motorcycle/bus/truck and its CUDA provider options. Everything that can be
checked before the service starts (duplicate ids, bad URLs, missing model) is checked here.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.assets import assets_dir, model_cache_dir
from edge.config.base import Strict
from edge.config.cameras import CameraConfig
from edge.config.ocr import OcrConfig
from edge.config.outputs import EventsConfig, StoreConfig
from edge.redact import redact_url, register_secret

COCO_VEHICLES = ("car", "motorcycle", "bus", "truck")
Provider = Literal["tensorrt", "cuda", "cpu"]
VideoCodec = Literal["h264", "vp8"]


def _cuda_then_cpu() -> list[Provider]:
    return ["cuda", "cpu"]


def _h264_then_vp8() -> list[VideoCodec]:
    return ["h264", "vp8"]


class CudaOptions(Strict):
    device_id: int = Field(default=0, ge=0, le=63)
    arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kNextPowerOfTwo"
    gpu_mem_limit: int = Field(default=2 * 1024**3, ge=64 * 1024**2, description="Bytes.")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "EXHAUSTIVE"
    do_copy_in_default_stream: bool = True
    io_binding: bool = Field(
        default=False,
        description="Bind the batch and output with ORT's IOBinding. Off: on an H200 a plain run "
        "was faster (batch 8: 1142 against 906 img/s); both copy each batch to the GPU once.",
    )
    tf32: bool = Field(
        default=False,
        description="TensorFloat-32 math on Ampere and newer GPUs (ORT's use_tf32). Off: results "
        "match the CPU's; on an H200, TF32 moved scores by up to 0.01 and box IoU to 0.92.",
    )


class TensorRTOptions(Strict):
    enabled: bool = False
    engine_cache_dir: Path = Path("models/trt-cache")
    fp16: bool = True


class PreprocessOptions(Strict):
    color: Literal["auto", "rgb", "bgr"] = Field(
        default="auto", description="auto: by model family."
    )
    scale: Literal["auto", "unit", "raw"] = Field(
        default="auto", description="unit: 0-1, raw: 0-255; auto: by model family."
    )
    pad_value: int = Field(default=114, ge=0, le=255)


class DetectorConfig(Strict):
    model: Path = Field(
        default_factory=lambda: assets_dir() / "models" / "yolox_nano.onnx",
        description="ONNX file; relative paths resolve against the config file's folder.",
    )
    auto_prepare: bool = Field(
        default=True,
        description="Service: make a frozen-batch model dynamic (cached in prepared_dir) at start.",
    )
    prepared_dir: Path = Field(
        default_factory=model_cache_dir,
        description="Cache for prepared models (default: the user's cache, ~/.cache/edge/models).",
    )
    family: Literal["auto", "yolov5", "yolox", "yolov8"] = "auto"
    input_size: int = Field(default=416, ge=32, le=2048, multiple_of=32)
    classes: list[str] = Field(default_factory=lambda: list(COCO_VEHICLES), min_length=1)
    conf: float = Field(default=0.25, gt=0, lt=1)
    iou: float = Field(default=0.50, gt=0, le=1)
    max_det: int = Field(default=30, ge=1, le=1000)
    max_batch: int | None = Field(
        default=None, ge=1, le=64,
        description="Frames per batch at most; unset = 8 on a GPU, 2 on a CPU (where one "
        "single-threaded batch runs per core and bigger ones cost more per image).",
    )  # fmt: skip
    deadline_ms: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Batch deadline; default one frame of the fastest camera.",
    )
    stale_s: float = Field(
        default=0.5, gt=0, le=10, description="Frames older than this are dropped."
    )
    providers: list[Provider] = Field(default_factory=_cuda_then_cpu, min_length=1)
    cuda: CudaOptions = Field(default_factory=CudaOptions)
    tensorrt: TensorRTOptions = Field(default_factory=TensorRTOptions)
    preprocess: PreprocessOptions = Field(default_factory=PreprocessOptions)
    letterbox: Literal["auto", "square", "rect"] = Field(
        default="auto",
        description="rect: pad only to the next multiple of 32, so a 16:9 camera costs 62 % of "
        "the model's work (99 % of boxes the same; needs a graph that takes other sizes, as "
        "YOLOX's does); square: pad to input_size², as the model was exported; auto: rect on a "
        "CPU where the model's graph allows it, square otherwise, on a GPU (one input shape runs "
        "fastest there) and in `edge detect` (whose output matches the exported model exactly).",
    )
    workers: int = Field(
        default=0, ge=0, le=64,
        description="Batches run at once on the one session; 0 = one per CPU core (at most 8) "
        "on the CPU provider, 2 on CUDA/TensorRT (one prepares while the other runs).",
    )  # fmt: skip
    threads: int = Field(
        default=0, ge=0, le=256,
        description="ORT intra-op threads per batch; 0 = cores / workers on CPU, ORT's on GPU.",
    )  # fmt: skip

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: Path) -> Path:
        if v.is_dir():
            raise ValueError(f"{v}: is a directory, not an ONNX file")
        if not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("classes must not repeat")
        return v


class IngestConfig(Strict):
    open_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=3.0, gt=0, le=120)
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    healthy_reset_s: float = Field(default=60.0, gt=0, le=3600)
    processes: int | Literal["auto"] = Field(
        default="auto",
        description="Worker processes that decode, letterbox and track the cameras around the "
        "one detector session; 0: all in the service's process; auto: from the core count.",
    )
    slots_per_camera: int = Field(default=3, ge=2, le=16)

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, v: object) -> object:
        """One line for any wrong value (the union alone would give one per member)."""
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 256:
            raise ValueError("processes must be an integer 0-256 or auto")
        return v

    @model_validator(mode="after")
    def _backoff_order(self) -> IngestConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class TrackerConfig(Strict):
    max_age: int = Field(
        default=10, ge=1, le=1000, description="Frames a track survives unmatched."
    )
    min_hits: int = Field(
        default=3, ge=1, le=100, description="Matches before a track is confirmed."
    )
    iou_threshold: float = Field(default=0.3, gt=0, lt=1)
    duplicate_iou: float | None = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Drop overlapping boxes of different classes above this IoU; null: off.",
    )
    confirmed_first: bool = Field(
        default=True,
        description="Match confirmed tracks before tentative ones (fewer ID switches).",
    )


class StreamConfig(Strict):
    max_width: int = Field(default=1280, ge=64, le=7680)
    keyframe_interval_s: float = Field(default=1.0, gt=0, le=10)
    codecs: list[VideoCodec] = Field(default_factory=_h264_then_vp8, min_length=1)
    bitrate_kbps: int = Field(default=2000, ge=100, le=50_000)
    ice_servers: list[str] = Field(default_factory=list, description="stun:/turn: URLs.")
    host_addresses: list[str] | None = Field(
        default=None, description="Restrict ICE host candidates to these addresses."
    )
    max_viewers: int = Field(
        default=64, ge=1, le=4096,
        description="WebRTC viewers at once, all cameras together: each costs sockets, a send "
        "task and its bitrate. Refused beyond it: 503 with Retry-After.",
    )  # fmt: skip
    max_viewers_per_camera: int = Field(
        default=32, ge=1, le=4096,
        description="Viewers of one camera, so that one busy camera leaves slots for the others "
        "(503 beyond it).",
    )  # fmt: skip
    max_viewers_per_client: int = Field(
        default=16, ge=1, le=4096,
        description="Viewers from one client address, all cameras together (the grid page takes "
        "one per camera), so that one address cannot take every slot (429 beyond it). Behind a "
        "reverse proxy every viewer has the proxy's address: raise it there.",
    )  # fmt: skip
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120,
        description="A viewer whose ICE/DTLS has not completed this long after its offer is "
        "closed and its slot freed (a browser connects in well under a second).",
    )  # fmt: skip


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: addresses no other machine can reach.

    Anything else (0.0.0.0, ::, "", a LAN address or a host name) may be reachable by others."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


class ServerConfig(Strict):
    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on. Beyond loopback (127.0.0.0/8, ::1, localhost) the "
        "service refuses to start without auth_token unless auth is 'none'.",
    )
    port: int = Field(default=8080, ge=0, le=65535)
    auth_token: str | None = Field(
        default=None,
        min_length=8,
        description="Bearer token for /api/* and /metrics (the page takes ?token=); empty: unset.",
    )
    auth: Literal["token", "none"] | None = Field(
        default=None,
        description="token: auth_token is required; none: serve without a token even beyond "
        "loopback (anyone who reaches the port sees every camera; warned at start); unset: a "
        "token when auth_token is set, and no start beyond loopback without one.",
    )

    @field_validator("auth_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # `auth_token: ${EDGE_TOKEN:-}` then turns auth on only where the variable is set
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("auth_token")
    @classmethod
    def _remember(cls, v: str | None) -> str | None:
        register_secret(v)
        return v

    @model_validator(mode="after")
    def _auth_consistent(self) -> ServerConfig:
        if self.auth == "none" and self.auth_token is not None:
            raise ValueError("auth is 'none' but auth_token is set: remove one of them")
        if self.auth == "token" and self.auth_token is None:
            raise ValueError("auth is 'token' but auth_token is not set")
        return self

    @property
    def is_open_beyond_loopback(self) -> bool:
        """Reachable from other machines with no token (only allowed by `auth: none`)."""
        return self.auth_token is None and not is_loopback_host(self.host)

    def exposure_problem(self) -> str | None:
        """Why this server must not start as configured, as one `path: reason` line, or None.

        Checked after command-line overrides (`edge run --host`), not at validation: a file
        that binds 0.0.0.0 may still be run on loopback."""
        if not self.is_open_beyond_loopback or self.auth == "none":
            return None
        return (
            f"server.host: {self.host!r} is reachable from other machines but server.auth_token "
            "is not set (anyone could watch every camera and read /api and /metrics); set "
            "server.auth_token, listen on 127.0.0.1, or set server.auth: none to allow it"
        )


class MetricsConfig(Strict):
    enabled: bool = True
    gpu: bool = Field(default=True, description="Export NVIDIA GPU metrics when a GPU is present.")


class ShardConfig(Strict):
    """Which share of `cameras` this process serves (edge/config/shard.py assigns them)."""

    index: int = Field(
        default=0, ge=0, le=1023, description="This shard, 0 to count-1 (`edge run --shard K/N`)."
    )
    count: int = Field(default=1, ge=1, le=1024, description="Shards the cameras are split into.")
    peers: list[str] = Field(
        default_factory=list,
        description="Base URLs of the shards' pages, for links between them: one per shard in "
        "order, or one template with {k} (`http://edge-{k}.edge:8080`); empty: no links.",
    )

    @field_validator("peers")
    @classmethod
    def _peer_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url.replace("{k}", "0"))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{redact_url(url)!r} is not an http(s):// URL with a host")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        n = len(self.peers)
        if n > 1 and n != self.count:
            raise ValueError(f"peers has {n} URLs for {self.count} shards: give one per shard")
        if n == 1 and self.count > 1 and "{k}" not in self.peers[0]:
            raise ValueError("a single peer URL must be a template with {k}, or give one per shard")
        return self


class EdgeConfig(Strict):
    cameras: list[CameraConfig] = Field(min_length=1)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        ids = [c.id for c in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate camera ids: {', '.join(dupes)}")
        return v

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [c for c in self.cameras if c.enabled]
