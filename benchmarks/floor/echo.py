"""Bare asyncio TCP echo on 127.0.0.1: prints {"port": N}, echoes until killed.

With ``--task`` the echo is written as a reader task (what ``async for`` over a
queue costs the loop: the read wakes a task, which writes the reply), instead
of replying from the protocol callback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import cast

from benchmarks.floor import script_arguments


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


class TaskEcho(Echo):
    """Hands each read to a task that writes the reply (one task switch per round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[bytearray] | None = None
        self.pending: list[bytearray] = []
        self.task = asyncio.get_running_loop().create_task(self.replies())

    def buffer_updated(self, nbytes: int) -> None:
        data = self.buffer[:nbytes]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)
        else:
            self.pending.append(data)

    async def replies(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.pending:
                data = self.pending.pop(0)
            else:
                self.waiter = loop.create_future()
                data = await self.waiter
            self.transport.write(data)


async def main() -> None:
    loop = asyncio.get_running_loop()
    protocol = TaskEcho if "--task" in sys.argv else Echo
    server = await loop.create_server(protocol, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.sleep(600)


if __name__ == "__main__":
    script_arguments()  # installs uvloop with --uvloop
    asyncio.run(main())
