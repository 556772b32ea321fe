"""The event-loop floor: a bare TCP (or UDP) ping-pong on each runtime, without any peersockets code.

It shows how much of a round trip the runtime's event loop costs before the
protocol does anything: the same 1-byte ping-pong over loopback TCP between
two processes, in Node.js (net) and in Python (asyncio buffered protocols reading into
one buffer, as peersockets does, on asyncio or uvloop).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WARMUP = 500
"""Untimed round trips before the timed ones (the JavaScript pingers do as many)."""


async def _run(argv: list[str], cpu: int | None) -> asyncio.subprocess.Process:
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, cwd=ROOT
    )


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not raw:
        raise RuntimeError("floor worker exited without a result")
    result: dict[str, Any] = json.loads(raw)
    return result


async def measure(
    stack: str,
    rounds: int,
    node: str,
    pin: tuple[int, int] | None,
    uvloop: bool,
    task_echo: bool = False,
) -> dict[str, float]:
    """p50, p99 and mean round trip in µs of a bare ping-pong on ``stack`` ("py" or "js");
    ``task_echo``: the Python echo replies from a task, not from the protocol callback."""
    if stack == "js":
        server = [node, str(HERE / "echo.mjs")]
        client = [node, str(HERE / "ping.mjs"), str(rounds)]
    else:
        flag = ["--uvloop"] if uvloop else []
        task = ["--task"] if task_echo else []
        server = [sys.executable, "-m", "benchmarks.floor.echo", *flag, *task]
        client = [sys.executable, "-m", "benchmarks.floor.ping", str(rounds), *flag]
    return await _ping_pong(server, client, pin)


async def measure_udp(
    stack: str, rounds: int, node: str, pin: tuple[int, int] | None, uvloop: bool
) -> dict[str, float]:
    """The same over loopback UDP (``udp.py``, ``udp.mjs``): the floor under the UDX round
    trip. One datagram each way, the echo replying from its callback."""
    if stack == "js":
        server = [node, str(HERE / "udp.mjs"), "echo"]
        client = [node, str(HERE / "udp.mjs"), "ping", str(rounds)]
    else:
        flag = ["--uvloop"] if uvloop else []
        server = [sys.executable, "-m", "benchmarks.floor.udp", "echo", *flag]
        client = [sys.executable, "-m", "benchmarks.floor.udp", "ping", str(rounds), *flag]
    return await _ping_pong(server, client, pin)


async def _ping_pong(
    server: list[str], client: list[str], pin: tuple[int, int] | None
) -> dict[str, float]:
    """Start the echo ``server`` (on the second pinned core), which prints its port, then
    the pinger ``client`` (on the first) with that port appended, and return the figures
    it prints; both processes are gone when this returns, however it ends."""
    echo = await _run(server, pin[1] if pin else None)
    try:
        port = (await _line(echo, 20))["port"]
        ping = await _run([*client, str(port)], pin[0] if pin else None)
        try:
            result = await _line(ping, 120)
        finally:
            if ping.returncode is None:
                ping.kill()
            await ping.wait()
    finally:
        echo.kill()
        await echo.wait()
    return {k: float(v) for k, v in result.items()}


class Pinger(Protocol):
    """A pinger's protocol: it resolves ``reply`` when the echo arrives."""

    reply: asyncio.Future[None] | None


async def time_round_trips(
    pinger: Pinger, send: Callable[[bytes], object], rounds: int, timeout: float | None = None
) -> list[int]:
    """``WARMUP`` + ``rounds`` 1-byte round trips: ``send`` a byte, wait for
    ``pinger.reply`` (at most ``timeout`` seconds, if given: a lost datagram fails, never
    hangs); the timed rounds' durations in ns."""
    loop = asyncio.get_running_loop()
    rtts: list[int] = []
    for i in range(WARMUP + rounds):
        pinger.reply = loop.create_future()
        start = time.perf_counter_ns()
        send(b"p")
        if timeout is None:
            await pinger.reply
        else:
            await asyncio.wait_for(pinger.reply, timeout)
        if i >= WARMUP:
            rtts.append(time.perf_counter_ns() - start)
    return rtts


def print_figures(rtts_ns: list[int]) -> None:
    """A pinger's result: its ``percentiles`` as one JSON line on stdout."""
    print(json.dumps(percentiles(rtts_ns)), flush=True)


def script_arguments() -> list[str]:
    """A floor script's positional arguments; with ``--uvloop`` it installs uvloop first."""
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    return [a for a in sys.argv[1:] if not a.startswith("--")]


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50, p99 and mean in µs (nearest rank)."""
    ordered = sorted(values_ns)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[min(n - 1, max(0, round(p * n) - 1))] / 1000

    return {"p50_us": rank(0.5), "p99_us": rank(0.99), "mean_us": sum(ordered) / n / 1000}


def main() -> None:  # pragma: no cover - a manual entry point
    node = os.environ.get("NODE", "node")
    for stack in ("js", "py"):
        print(stack, asyncio.run(measure(stack, 5000, node, None, False)))


if __name__ == "__main__":  # pragma: no cover
    main()
