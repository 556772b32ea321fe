"""The stack's own CPU per round trip, with no event loop and no socket in the way.

    python -m benchmarks.stack_cost [--rounds N] [--profile]

Two Peersockets peers of one drive are joined by an in-process tap: what one
connection writes is handed to the other's ``buffer_updated`` at once, as a
socket read would. One round trip is what the round-trip benchmark's two ends
do, both in this process: the pinger sends one byte (``send_nowait``, which is
what ``await send`` does when the connection can take it), the echo's
``on_message`` callback sends it back, and the pinger takes the reply from its
Topic's queue. The figure is the median of 9 runs of ``--rounds`` round trips,
in microseconds per round trip for both ends together. ``--profile`` prints a
cProfile of one run instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from typing import Any

from peersockets import Peersockets, Swarm, Topic, TopicMessage
from peersockets.connection import Connection

DRIVE = bytes(range(32))


class Tap(asyncio.Transport):
    """A transport that keeps what is written until ``pump`` hands it to the other end."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.peer: Connection | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.out.extend(bytes(chunk) for chunk in chunks)

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def pump(self) -> int:
        """Hand everything written so far to the other end, as one read; bytes handed."""
        if not self.out:
            return 0
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        peer = self.peer
        assert peer is not None
        buffer = peer.get_buffer(len(data))
        buffer[: len(data)] = data
        peer.buffer_updated(len(data))
        return len(data)


async def _pair() -> tuple[list[Swarm], list[Peersockets], Tap, Tap]:
    swarms = [Swarm(dht=False), Swarm(dht=False)]
    sockets = [Peersockets(swarm, DRIVE) for swarm in swarms]
    a = swarms[0].make_connection(True)
    b = swarms[1].make_connection(False)
    tap_a, tap_b = Tap(), Tap()
    tap_a.peer, tap_b.peer = b, a
    a.connection_made(tap_a)
    b.connection_made(tap_b)
    for _ in range(200):
        moved = tap_a.pump() + tap_b.pump()
        await asyncio.sleep(0)
        if not moved and sockets[0].peers and sockets[1].peers:
            break
    assert sockets[0].peers and sockets[1].peers, "the two peers did not join"
    return swarms, sockets, tap_a, tap_b


def _round_trips(pinger: Topic, peer: int, tap_a: Tap, tap_b: Tap, rounds: int) -> float:
    """Seconds for ``rounds`` round trips."""
    send = pinger.send_nowait
    inbox = pinger._inbox
    start = time.perf_counter()
    for _ in range(rounds):
        send(peer, b"x")
        tap_a.pump()  # the echo reads the ping and its callback replies
        tap_b.pump()  # the pinger reads the reply into its queue
        inbox.pop()
    return time.perf_counter() - start


async def measure(rounds: int, profile: bool) -> float:
    swarms, sockets, tap_a, tap_b = await _pair()
    try:
        pinger = sockets[0].join("rt")
        echo = sockets[1].join("rt")

        def reply(message: TopicMessage) -> None:
            echo.send_nowait(message.peer_id, message.message)

        echo.on_message(reply)
        peer = sockets[0].peers[0]
        _round_trips(pinger, peer, tap_a, tap_b, 2000)  # warm up
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            _round_trips(pinger, peer, tap_a, tap_b, rounds)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return 0.0
        runs = [_round_trips(pinger, peer, tap_a, tap_b, rounds) / rounds for _ in range(9)]
        return statistics.median(runs) * 1e6
    finally:
        for ps in sockets:
            await ps.close()
        for swarm in swarms:
            await swarm.close(timeout=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    cost = asyncio.run(measure(args.rounds, args.profile))
    if not args.profile:
        print(f"stack CPU per round trip, both ends: {cost:.2f} us")


if __name__ == "__main__":
    main()
