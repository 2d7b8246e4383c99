"""The configuration: `schema` holds the pydantic models of `cameras.yaml`, `loading` reads and
checks a file. Everything is importable from `edge.config`."""

from edge.config.loading import ConfigError, expand_env, load_config, parse_config
from edge.config.schema import (
    COCO_VEHICLES,
    CameraConfig,
    CudaOptions,
    DetectorConfig,
    EdgeConfig,
    EventsConfig,
    IngestConfig,
    LineConfig,
    MetricsConfig,
    OcrConfig,
    PreprocessOptions,
    ServerConfig,
    ShardConfig,
    StreamConfig,
    Strict,
    TensorRTOptions,
    TrackerConfig,
    WebhookConfig,
)

__all__ = [
    "COCO_VEHICLES",
    "CameraConfig",
    "ConfigError",
    "CudaOptions",
    "DetectorConfig",
    "EdgeConfig",
    "EventsConfig",
    "IngestConfig",
    "LineConfig",
    "MetricsConfig",
    "OcrConfig",
    "PreprocessOptions",
    "ServerConfig",
    "ShardConfig",
    "Strict",
    "StreamConfig",
    "TensorRTOptions",
    "TrackerConfig",
    "WebhookConfig",
    "expand_env",
    "load_config",
    "parse_config",
]
