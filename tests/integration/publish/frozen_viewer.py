"""A viewer process that connects, then never reads: the test SIGSTOPs it (a frozen browser) or
SIGKILLs it (a viewer that vanished without a word). Prints `CONNECTED <session>` when up."""

from __future__ import annotations

import asyncio
import sys

from edge.publish.viewer_client import WebRtcViewer
from edge.testing import async_wait_for


async def main(base_url: str, camera: str) -> None:
    viewer = await WebRtcViewer(base_url, camera).connect()
    await async_wait_for(lambda: viewer.is_connected, 15)
    print(f"CONNECTED {viewer.session}", flush=True)
    await asyncio.Event().wait()  # hold the connection open, never touch the track


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
