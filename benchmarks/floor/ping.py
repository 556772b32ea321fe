"""Bare asyncio TCP ping: ROUNDS 1-byte round trips to PORT; prints p50/p99/mean in µs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import cast

from benchmarks.floor import percentiles

WARMUP = 500


class Ping(asyncio.BufferedProtocol):
    """Reads into one buffer, as peersockets' Connection does (no allocation per read)."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[None] | None = None
        self.buffer = bytearray(256 * 1024)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(None)


async def main(rounds: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    _, ping = await loop.create_connection(Ping, "127.0.0.1", port)
    rtts: list[int] = []
    for i in range(WARMUP + rounds):
        ping.reply = loop.create_future()
        start = time.perf_counter_ns()
        ping.transport.write(b"p")
        await ping.reply
        if i >= WARMUP:
            rtts.append(time.perf_counter_ns() - start)
    ping.transport.close()
    print(json.dumps(percentiles(rtts)), flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main(int(args[0]), int(args[1])))
