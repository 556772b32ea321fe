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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


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
    echo = await _run(server, pin[1] if pin else None)
    try:
        port = (await _line(echo, 20))["port"]
        ping = await _run([*client, str(port)], pin[0] if pin else None)
        try:
            result = await _line(ping, 120)
        finally:
            await ping.wait()
    finally:
        echo.kill()
        await echo.wait()
    return {k: float(v) for k, v in result.items()}


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
