"""Where vehicle events and counts go: the JSONL file, a webhook, MQTT and the SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config.base import Strict
from edge.redact import redact_url, register_secret


class WebhookConfig(Strict):
    url: str
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=5, ge=0, le=100)
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s):// URL with a host")
        register_secret(parts.password)
        return v


class MqttConfig(Strict):
    url: str = Field(
        description="mqtt://[user:password@]host[:port] (1883) or mqtts:// (8883, TLS); the "
        "password is redacted everywhere.",
    )
    topic_prefix: str = Field(
        default="edge", min_length=1, max_length=128,
        description="Events go to PREFIX/CAMERA/events, interval counts (retained) to "
        "PREFIX/CAMERA/counts/LINE.",
    )  # fmt: skip
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of event messages.")
    retain_counts: bool = Field(default=True, description="Counts as retained messages.")
    queue_size: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="Events held while the broker is away; beyond it they are dropped "
        "(edge_events_dropped_total{sink=\"mqtt\",reason=\"queue_full\"}).",
    )  # fmt: skip
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _mqtt(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be an mqtt:// or mqtts:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"{redact_url(v)!r}: bad port") from exc
        register_secret(parts.password)
        return v

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class EventsConfig(Strict):
    jsonl: Path | None = Field(default=Path("events/events.jsonl"))
    max_bytes: int = Field(default=50 * 1024**2, ge=1024)
    backups: int = Field(default=5, ge=0, le=1000)
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None


class StoreConfig(Strict):
    path: Path | None = Field(
        default=Path("events/edge.db"),
        description="SQLite database of events and interval counts; null: no store (and no "
        "/api/counts, /api/events).",
    )
    interval_minutes: Literal[1, 5, 10, 15, 20, 30, 60] = Field(
        default=15,
        description="Count interval, aligned to the clock (UTC); queries may ask multiples of "
        "it. A database keeps the interval it was created with.",
    )
    retention_days: float = Field(
        default=90, gt=0, le=36_500, description="Events and counts older than this are deleted."
    )
    max_bytes: int = Field(
        default=2 * 1024**3, ge=1024**2,
        description="Size cap of the database: the oldest events are deleted beyond it "
        "(interval counts are kept).",
    )  # fmt: skip
    queue_size: int = Field(default=100_000, ge=1, le=10_000_000)
