"""The configuration: `schema` holds the pydantic models of `cameras.yaml` (the cameras in
`cameras`, the event outputs in `outputs`, plate reading in `ocr`), `loading` reads and checks a
file, `shard` picks a shard's cameras, `diff` and `writer` serve live changes. Everything is
importable from `edge.config`."""

from edge.config.base import Strict
from edge.config.cameras import CameraConfig, LineConfig
from edge.config.loading import ConfigError, expand_env, load_config, parse_config
from edge.config.ocr import DEFAULT_PLATE_PATTERN, OcrConfig, SnapshotConfig
from edge.config.outputs import EventsConfig, MqttConfig, StoreConfig, WebhookConfig
from edge.config.schema import (
    COCO_VEHICLES,
    CudaOptions,
    DetectorConfig,
    EdgeConfig,
    IngestConfig,
    MetricsConfig,
    PreprocessOptions,
    ServerConfig,
    ShardConfig,
    StreamConfig,
    TensorRTOptions,
    TrackerConfig,
)

__all__ = [
    "COCO_VEHICLES",
    "DEFAULT_PLATE_PATTERN",
    "CameraConfig",
    "ConfigError",
    "CudaOptions",
    "DetectorConfig",
    "EdgeConfig",
    "EventsConfig",
    "IngestConfig",
    "LineConfig",
    "MetricsConfig",
    "MqttConfig",
    "OcrConfig",
    "PreprocessOptions",
    "ServerConfig",
    "ShardConfig",
    "SnapshotConfig",
    "StoreConfig",
    "Strict",
    "StreamConfig",
    "TensorRTOptions",
    "TrackerConfig",
    "WebhookConfig",
    "expand_env",
    "load_config",
    "parse_config",
]
