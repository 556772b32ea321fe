"""Bare asyncio UDP ping-pong, the floor under the UDX round trip (no UDX code).

    python -m benchmarks.floor.udp echo [--uvloop]           prints {"port": N}, echoes until killed
    python -m benchmarks.floor.udp ping ROUNDS PORT [--uvloop]   prints p50/p99/mean in µs

The echo replies from ``datagram_received``; the pinger sends one byte and
awaits a future that ``datagram_received`` resolves, as the UDX workers do.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from benchmarks.floor import print_figures, script_arguments, time_round_trips


class Echo(asyncio.DatagramProtocol):
    """Sends every datagram back where it came from, from the callback."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.transport.sendto(data, addr)


class Ping(asyncio.DatagramProtocol):
    """Resolves ``reply`` when the echo arrives."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(None)


async def echo() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    print(json.dumps({"port": transport.get_extra_info("sockname")[1]}), flush=True)
    await asyncio.Event().wait()


async def ping(rounds: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Ping, remote_addr=("127.0.0.1", port))
    # a lost datagram fails, never hangs
    rtts = await time_round_trips(protocol, protocol.transport.sendto, rounds, timeout=10)
    protocol.transport.close()
    print_figures(rtts)


if __name__ == "__main__":
    args = script_arguments()
    if args[0] == "echo":
        asyncio.run(echo())
    else:
        asyncio.run(ping(int(args[1]), int(args[2])))
