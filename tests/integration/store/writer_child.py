"""A process that writes events to a store through the event bus until it is killed.

Prints `SEQ EPOCH` after handing each event to the bus (the parent kills it with SIGKILL and
checks that every event handed over more than a second before the kill is in the database)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from edge.config import StoreConfig
from edge.metrics import EdgeMetrics
from edge.store.sink import StoreSink
from edge.track.events import EventBus, VehicleEvent


async def main(path: Path) -> None:
    metrics = EdgeMetrics()
    bus = EventBus([StoreSink(StoreConfig(path=path), metrics)], metrics)
    await bus.start()
    seq = 0
    while True:
        now = datetime.now(UTC)
        kind = "crossing" if seq % 2 == 0 else "track_end"
        bus.emit(VehicleEvent("cam1", seq // 2, "car", kind, now, frame=seq,
                              line="north" if kind == "crossing" else None,
                              direction="away" if kind == "crossing" else None))  # fmt: skip
        print(seq, now.timestamp(), flush=True)
        seq += 1
        await asyncio.sleep(0.002 if seq % 50 else 0.02)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
