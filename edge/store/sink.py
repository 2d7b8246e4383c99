"""`StoreSink`: the event bus's sink that writes to the `EventStore` on its own thread.

The event loop never touches SQLite: each batch the bus hands over goes to one writer thread
(a single-thread executor, as a SQLite connection belongs to one thread), where it is one
transaction. While a batch is being written the bus keeps queueing, so under load the batches
grow by themselves; a quiet site still commits each event within milliseconds, which is what
bounds what `kill -9` can lose. Retention and the size cap are enforced at start and every
`maintain_every_s` on the same thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edge.config import StoreConfig
from edge.metrics import EdgeMetrics
from edge.store.database import EventStore, StoredEvent

log = logging.getLogger(__name__)


class StoreSink:
    name = "store"

    def __init__(
        self, config: StoreConfig, metrics: EdgeMetrics, maintain_every_s: float = 60.0
    ) -> None:
        assert config.path is not None, "a StoreSink needs store.path"
        self.config = config
        self.path: Path = config.path
        self.metrics = metrics
        metrics.init_store()
        self.maintain_every_s = maintain_every_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._store: EventStore | None = None
        self._maintained_at = 0.0

    @property
    def interval_s(self) -> int:
        return self.config.interval_minutes * 60

    def open(self) -> None:
        """Open (create) the database now, on the writer thread; raises `StoreError`."""
        self._store = self._executor.submit(self._open).result()

    def _open(self) -> EventStore:
        cfg = self.config
        store = EventStore(self.path, self.interval_s, cfg.retention_days, cfg.max_bytes)
        self._maintain(store)
        return store

    async def start(self) -> None:
        if self._store is None:
            loop = asyncio.get_running_loop()
            self._store = await loop.run_in_executor(self._executor, self._open)

    async def write(self, events: Sequence[StoredEvent]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._write, events)
        except (sqlite3.Error, OSError) as exc:
            log.error("store %s: %s; %d events lost", self.path, exc, len(events))
            self.metrics.events_dropped.labels(sink=self.name, reason="io_error").inc(len(events))
            return
        self.metrics.events_emitted.labels(sink=self.name).inc(len(events))

    def _write(self, events: Sequence[StoredEvent]) -> None:
        assert self._store is not None, "start() first"
        self._store.write(events)
        if time.monotonic() - self._maintained_at >= self.maintain_every_s:
            self._maintain(self._store)

    def _maintain(self, store: EventStore) -> None:
        self._maintained_at = time.monotonic()
        try:
            pruned = store.maintain()
        except sqlite3.Error as exc:
            log.error("store %s: retention/size cap not enforced: %s", self.path, exc)
            return
        deleted = self.metrics.store_events_deleted
        deleted.labels(reason="retention").inc(pruned.retention)
        deleted.labels(reason="size_cap").inc(pruned.size_cap)
        self.metrics.store_bytes.set(store.file_bytes())

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await asyncio.get_running_loop().run_in_executor(self._executor, store.close)
        self._executor.shutdown(wait=True)
