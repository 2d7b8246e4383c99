"""Where vehicle events go while the service runs, part of the wiring (`edge.app`): the live feed
(SSE), the SQLite store, the JSONL file, a webhook and MQTT behind one `EventBus`, and the
queries that `/api/counts` and `/api/events` read from the store."""

from __future__ import annotations

from edge.config import EdgeConfig
from edge.metrics import EdgeMetrics
from edge.publish.live import LiveFeed
from edge.store.query import StoreQueries, layout_of, queries_for
from edge.store.sink import StoreSink
from edge.track.events import EventBus, EventSink, JsonlSink, WebhookSink
from edge.track.mqtt import MqttSink


class EventOutputs:
    """The sinks of one config, created (not started) with their series at 0."""

    def __init__(self, config: EdgeConfig, metrics: EdgeMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.store = StoreSink(config.store, metrics) if config.store.path else None
        self.live = LiveFeed(metrics)
        self.bus = EventBus(self._sinks(), metrics)
        self.data: StoreQueries | None = None
        """The store's queries, once it is open."""

    def open_store(self) -> None:
        """Open (or create) the database; raises StoreError. Blocking: run it in a thread."""
        if self.store is not None:
            self.store.open()
            self.data = self._queries()

    async def start(self) -> None:
        """Start every sink; raises SinkError for one that can never work (an unwritable file)."""
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()

    def cameras_changed(self, config: EdgeConfig) -> None:
        """After a reload: the counts API knows the new cameras and lines."""
        self.config = config
        if self.data is not None:
            self.data.layout = layout_of(config.detector.classes, _line_map(config))

    def _queries(self) -> StoreQueries | None:
        cfg = self.config
        if cfg.store.path is None:
            return None
        return queries_for(
            cfg.store.path, cfg.store.interval_minutes, cfg.detector.classes, _line_map(cfg)
        )

    def _sinks(self) -> list[EventSink]:
        ev = self.config.events
        sinks: list[EventSink] = [self.live]
        if self.store is not None:
            sinks.append(self.store)
        if ev.jsonl is not None:
            sinks.append(JsonlSink(ev.jsonl, ev.max_bytes, ev.backups, self.metrics))
        if ev.webhook is not None:
            sinks.append(WebhookSink(ev.webhook, self.metrics))
        if ev.mqtt is not None:
            queries = self._queries()
            seed = queries.current_counts if queries is not None else None
            interval_s = self.config.store.interval_minutes * 60
            sinks.append(MqttSink(ev.mqtt, interval_s, self.metrics, seed=seed))
        for sink in sinks:
            self.metrics.init_sink(sink.name)
        return sinks


def _line_map(cfg: EdgeConfig) -> dict[str, dict[str, tuple[str, str]]]:
    """camera → line → directions, of the cameras that run."""
    return {c.id: {ln.name: ln.directions for ln in c.lines} for c in cfg.enabled_cameras}
