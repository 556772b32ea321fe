"""Bare asyncio TCP echo on 127.0.0.1: prints {"port": N}, echoes until killed."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import cast


class Echo(asyncio.BufferedProtocol):
    """Reads into one buffer, as peersockets' Connection does (no allocation per read)."""

    def __init__(self) -> None:
        self.buffer = bytearray(256 * 1024)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.transport.write(self.buffer[:nbytes])


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.sleep(600)


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main())
