"""The ``swarm_join`` workload of the benchmark runner: joining a drive's swarm.

On one local hyperdht testnet (JavaScript, 5 persistent nodes on 127.0.0.1, as the
DHT workloads', ``benchmarks.dht.Testnet``), worker B is the drive's owner, already
in the drive's swarm and waiting: a hyperdrive app on hyperswarm
(``benchmarks/js/swarm_worker.mjs``) or a Python ``Swarm`` + ``Peersockets``
(``benchmarks/swarm_worker.py``), echoing every ``peersockets/chat`` topic message
to its sender. Worker A is the peer that joins by the drive's key alone, again and
again, each time a new swarm with a new key pair and a new DHT node: timed from its
join (JavaScript: ``new HyperDHT`` + ``new Hyperswarm`` + ``swarm.join(discoveryKey)``;
Python: ``Swarm(...)`` + ``Peersockets(swarm, key)``) until the echo of the first
message it sends as soon as the owner is its peer comes back. ``A->B`` is joiner ->
owner; the issue's figure is ``py->js`` against ``js->js`` (target: p50 at most
1.5x); ``py->py`` and ``js->py`` have a Python owner.

See benchmarks/README.md ("The swarm join").
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from benchmarks.dht import Testnet, p50_target_lines, path_summary, percentile_f
from benchmarks.run import Figures, Options, WorkerError, pair_workers, start_workers

JOIN_TARGET = 1.5
"""The issue's target: a Python peer's join at most 1.5x a JavaScript peer's time."""
TOPIC = "chat"
PAYLOAD_SIZE = 16
SLOW_MS = 1000.0
"""Joins that take this long (ms) are listed under the table, with their phases."""
JOIN_TIMEOUT = 30.0
"""Seconds one join may take before the run fails."""
PHASES = ("bootstrapped", "announced", "lookup", "dial", "connection", "peer")
"""The phases the workers report (ms from the join; "lookup" is Python's only)."""


class SwarmJoinWorkload:
    """The runner of ``swarm_join``: ``await runner(pair)`` is one run; ``combine`` pools
    a pair's runs; ``describe``, ``notes``; ``aclose`` stops the testnet."""

    def __init__(self, workload: str, opts: Options) -> None:
        self.workload = workload
        self.opts = opts
        self.testnet = Testnet(opts, opts.sizes.dht_testnet_nodes)
        self.samples: dict[str, list[dict[str, Any]]] = {}
        """Every timed join of each pair, over its runs: {"ms", "phases", "path"}."""
        self._pair: str | None = None

    async def __call__(self, pair: str) -> Figures:
        bootstrap = await self.testnet.start()
        self._pair = pair
        figures, joins = await run_swarm_join(pair, self.opts, bootstrap)
        self.samples.setdefault(pair, []).extend(joins)
        return figures

    def combine(self, runs: list[Figures]) -> Figures:
        """All the runs' joins of the pair pooled: percentiles over every join; the first
        (cold) join and the owner's time as the median of the runs'."""
        joins = self.samples.get(self._pair or "", [])
        if len(runs) == 1 or not joins:
            return runs[0]
        out = join_figures(joins)
        for key in ("cold_ms", "owner_join_ms", "teardown_p50_ms"):
            values = sorted(r[key] for r in runs if key in r)
            if values:
                out[key] = values[len(values) // 2]
        out["teardown_max_ms"] = max(r["teardown_max_ms"] for r in runs)
        out["runs"] = len(runs)
        out["echoed"] = sum(r.get("echoed", 0) for r in runs)
        return out

    def describe(self, runs: list[Figures]) -> str:
        """The paths of the pair's joins (the joiner's connection to the owner)."""
        total: Counter[str] = Counter()
        sockets: Counter[str] = Counter()
        for figures in runs:
            for key, value in figures.items():
                if key.startswith("path_"):
                    total[key[5:]] += int(value)
                elif key.startswith("socket_"):
                    sockets[key[7:]] += int(value)
        out = f"paths {path_summary(total)}"
        if sockets:
            out += f"; joiner sockets {path_summary(sockets)}"
        return out

    def notes(self, results: dict[str, Any]) -> list[str]:
        """Lines for under the table: each pair's paths and phases, and the target."""
        pairs = results.get("pairs", {})
        lines = []
        for pair, entry in pairs.items():
            figures = entry.get("figures")
            if not figures:
                continue
            phases = ", ".join(
                f"{name} {figures[f'{name}_p50_ms']:.1f}"
                for name in PHASES
                if f"{name}_p50_ms" in figures
            )
            lines.append(f"  {pair}: {entry.get('paths', '')}; p50 ms from the join: {phases}")
            for join in self.samples.get(pair, []):
                if join["ms"] >= SLOW_MS:
                    lines.append(f"    slow join: {describe_join(join)}")
        if not lines:
            return []
        out = ["swarm_join: the joiner's connection to the owner, and its phases:", *lines]
        return out + p50_target_lines("swarm_join", pairs, JOIN_TARGET)

    async def aclose(self) -> None:
        await self.testnet.close()


async def run_swarm_join(
    pair: str, opts: Options, bootstrap: list[list[Any]]
) -> tuple[Figures, list[dict[str, Any]]]:
    """One run: B owns the drive and joins its swarm; then A joins W + N times."""
    s = opts.sizes
    timeout = s.timeout
    a, b = pair_workers("swarm_join", pair, opts, "swarm worker")
    try:
        await start_workers(a, b, opts, "swarm")
        owning = await b.call(
            {"cmd": "own", "bootstrap": bootstrap, "topic": TOPIC, "key": None}, "owning", timeout
        )
        times = await a.call(
            {
                "cmd": "join_time",
                "bootstrap": bootstrap,
                "key": owning["key"],
                "owner": owning["public_key"],
                "topic": TOPIC,
                "count": s.swarm_joins,
                "warmup": s.swarm_join_warmup,
                "size": PAYLOAD_SIZE,
                "timeout": JOIN_TIMEOUT,
            },
            "join_times",
            timeout,
        )
        stats = await b.call({"cmd": "stats"}, "stats", timeout)
    finally:
        await asyncio.gather(a.close(), b.close())
    if len(times["ms"]) != s.swarm_joins:
        raise WorkerError(f"{len(times['ms'])} join times, expected {s.swarm_joins}")
    joins = [
        {"ms": float(ms), "phases": phases, "path": str(path), "connections": int(n)}
        for ms, phases, path, n in zip(
            times["ms"], times["phases"], times["paths"], times["connections"], strict=True
        )
    ]
    figures = join_figures(joins)
    figures["warmup_joins"] = s.swarm_join_warmup
    if times["cold_ms"]:
        figures["cold_ms"] = float(times["cold_ms"][0])
    figures["owner_join_ms"] = float(owning["ms"])
    teardowns = sorted(float(x) for x in times["teardown_ms"])
    figures["teardown_p50_ms"] = percentile_f(teardowns, 50)
    figures["teardown_max_ms"] = teardowns[-1]
    figures["echoed"] = int(stats["echoed"])
    for name, n in Counter(str(k) for k in times.get("sockets", [])).items():
        figures[f"socket_{name}"] = n
    return figures, joins


def join_figures(joins: list[dict[str, Any]]) -> Figures:
    """p50/p90/mean/min/max of the joins (ms), each phase's p50, the paths' counts."""
    ms = sorted(j["ms"] for j in joins)
    figures: Figures = {
        "joins": len(ms),
        "p50_ms": percentile_f(ms, 50),
        "p90_ms": percentile_f(ms, 90),
        "mean_ms": sum(ms) / len(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "over_1s": sum(1 for x in ms if x >= 1000.0),
        "reconnected": sum(1 for j in joins if j["connections"] > 1),
    }
    for name in PHASES:
        values = sorted(float(v) for j in joins if (v := j["phases"].get(name)) is not None)
        if values:
            figures[f"{name}_p50_ms"] = percentile_f(values, 50)
        if values and len(values) < len(joins):  # some joins had their echo first
            figures[f"{name}_after_echo"] = len(joins) - len(values)
    for name, n in Counter(j["path"] for j in joins).items():
        figures[f"path_{name}"] = n
    return figures


def describe_join(join: dict[str, Any]) -> str:
    """One join in a line: its time, phases, path and connections to the owner."""
    phases = ", ".join(
        f"{name} {value:.1f}"
        for name, value in join["phases"].items()
        if value is not None and name != "echo"
    )
    return (
        f"{join['ms']:.1f} ms ({phases}; path {join['path']},"
        f" {join['connections']} connection(s) to the owner)"
    )


def headline(figures: Figures) -> str:
    """The progress line of a pair."""
    cold = f", first join {figures['cold_ms']:.1f} ms" if "cold_ms" in figures else ""
    paths = ", ".join(f"{k[5:]} {int(v)}" for k, v in figures.items() if k.startswith("path_"))
    return (
        f"p50 {figures['p50_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms"
        f" over {int(figures['joins'])} joins{cold} (paths {paths})"
    )
