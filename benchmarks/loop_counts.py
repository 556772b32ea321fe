"""Count what one round trip costs the event loop: iterations, callbacks, task steps, futures.

    python -m benchmarks.loop_counts [--rounds N] [--mode callback|loop]

Runs the round-trip workload's two ends as two processes on stock asyncio (the
counters patch asyncio's pure-Python loop, so not uvloop): a pinger that awaits
``topic.send`` then the next message, and an echo that replies from an
``on_message`` callback or from ``async for`` + ``await send``. Each end counts,
over the timed rounds, its loop iterations (one selector wait each), the
callbacks the loop ran (task steps apart) and the futures created, and prints
them per round trip. The bare TCP ping-pong of ``benchmarks/floor`` does 2
iterations, 2 callbacks (1 a task step) and 1 future per round trip on the
pinger, and 1 iteration and 1 callback on the echo: everything above that is
the stack's.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import asyncio.events
import json
import subprocess
import sys
from collections import Counter
from typing import Any

from peersockets import Peersockets, Swarm, Topic

DRIVE = bytes(range(32))
WARMUP = 200


class LoopCounter:
    """Patches asyncio's pure-Python loop to count iterations, callbacks and futures."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        counts = self.counts
        counter = self
        run_once = asyncio.base_events.BaseEventLoop._run_once
        create_future = asyncio.base_events.BaseEventLoop.create_future
        handle_run = asyncio.events.Handle._run

        def counting_run_once(loop: Any) -> None:
            if counter.on:
                counts["iterations"] += 1
            run_once(loop)

        def counting_create_future(loop: Any) -> Any:
            if counter.on:
                counts["futures"] += 1
            return create_future(loop)

        def counting_handle_run(handle: Any) -> None:
            if counter.on:
                counts["callbacks"] += 1
                name = type(getattr(handle, "_callback", None)).__name__
                if "Task" in name or "task" in repr(getattr(handle, "_callback", "")):
                    counts["task steps"] += 1
            handle_run(handle)

        asyncio.base_events.BaseEventLoop._run_once = counting_run_once  # type: ignore[method-assign]
        asyncio.base_events.BaseEventLoop.create_future = counting_create_future  # type: ignore[method-assign]
        asyncio.events.Handle._run = counting_handle_run  # type: ignore[method-assign]

    def per_round(self, rounds: int) -> dict[str, float]:
        keys = ("iterations", "callbacks", "task steps", "futures")
        return {key: self.counts[key] / rounds for key in keys}


async def echo(mode: str, rounds: int) -> None:
    counter = LoopCounter()
    async with Swarm(dht=False) as swarm:
        ps = Peersockets(swarm, DRIVE)
        topic = ps.join("bench")
        _host, port = await swarm.listen("127.0.0.1", 0)
        print(json.dumps({"port": port}), flush=True)
        seen = 0
        done = asyncio.get_running_loop().create_future()

        def count(message_peer: int) -> None:
            nonlocal seen
            seen += 1
            if seen == WARMUP:
                counter.on = True
            elif seen == WARMUP + rounds:
                counter.on = False
                done.set_result(None)

        if mode == "callback":

            def reply(msg: Any) -> None:
                topic.send_nowait(msg.peer_id, msg.message)
                count(msg.peer_id)

            topic.on_message(reply)
        else:

            async def loop_echo(topic: Topic) -> None:
                async for msg in topic:
                    await topic.send(msg.peer_id, msg.message)
                    count(msg.peer_id)

            task = asyncio.create_task(loop_echo(topic))
        await done
        print(json.dumps(counter.per_round(rounds)), flush=True)
        await asyncio.sleep(0.2)
        if mode != "callback":
            task.cancel()
        await ps.close()


async def ping(port: int, rounds: int) -> dict[str, float]:
    counter = LoopCounter()
    async with Swarm(dht=False) as swarm:
        ps = Peersockets(swarm, DRIVE)
        topic = ps.join("bench")
        await swarm.connect("127.0.0.1", port)
        events = ps.watch()
        peer = (await anext(events)).peer_id
        for i in range(WARMUP + rounds):
            if i == WARMUP:
                counter.on = True
            await topic.send(peer, b"p")
            await anext(topic)
        counter.on = False
        await ps.close()
    return counter.per_round(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--mode", choices=["callback", "loop"], default="callback")
    parser.add_argument("--role", choices=["echo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "echo":
        asyncio.run(echo(args.mode, args.rounds))
        return
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "benchmarks.loop_counts", "--role", "echo"),
            *("--mode", args.mode, "--rounds", str(args.rounds)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = json.loads(proc.stdout.readline())["port"]
    pinger = asyncio.run(ping(port, args.rounds))
    echoer = json.loads(proc.stdout.readline())
    proc.wait(timeout=30)
    print(f"per round trip, echo by {args.mode}:")
    print(f"{'':12} {'iterations':>10} {'callbacks':>10} {'task steps':>10} {'futures':>8}")
    for side, counts in (("pinger", pinger), ("echo", echoer)):
        print(
            f"{side:12} {counts['iterations']:>10.2f} {counts['callbacks']:>10.2f}"
            f" {counts['task steps']:>10.2f} {counts['futures']:>8.2f}"
        )


if __name__ == "__main__":
    main()
