"""Bare asyncio TCP ping: ROUNDS 1-byte round trips to PORT; prints p50/p99/mean in µs."""

from __future__ import annotations

import asyncio
from typing import cast

from benchmarks.floor import print_figures, script_arguments, time_round_trips


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
    rtts = await time_round_trips(ping, ping.transport.write, rounds)
    ping.transport.close()
    print_figures(rtts)


if __name__ == "__main__":
    args = script_arguments()
    asyncio.run(main(int(args[0]), int(args[1])))
