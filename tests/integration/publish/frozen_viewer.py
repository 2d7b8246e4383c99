"""A viewer process that connects, then never reads (the test SIGSTOPs it): a frozen browser."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rawclient import RawViewer  # noqa: E402

from edge.testing import async_wait_for  # noqa: E402


async def main(base_url: str, camera: str) -> None:
    viewer = await RawViewer(base_url, camera).connect()
    await async_wait_for(lambda: viewer.pc.connectionState == "connected", 15)
    print("CONNECTED", flush=True)
    await asyncio.Event().wait()  # hold the connection open, never touch the track


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
