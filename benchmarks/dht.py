"""The DHT workloads of the benchmark runner: ``dht_connect`` and ``dht_throughput``.

Both run on one local hyperdht testnet (JavaScript, 5 persistent nodes on
127.0.0.1, made by ``benchmarks/js/dht_worker.mjs``'s ``testnet`` command, as
hyperdht's ``createTestnet``), started at the workload's first run and shared by
all its pairs and repeats. Every client and server is a DHT node of its own, in
its worker process (``benchmarks/dht_worker.py``, ``benchmarks/js/dht_worker.mjs``),
bootstrapped from that testnet with the default options: on loopback each
connect takes whatever path its stack picks, and the figures say which.

- ``dht_connect``: worker B listens on a new key pair with a raw secret-stream
  echo; worker A connects to its public key ``dht_connects`` times in sequence,
  after ``dht_connect_warmup`` untimed connects: from the connect call to the
  first echoed byte (A writes one byte once it may), then the connection is
  closed (untimed). p50/p90 in ms; the ratio of each pair's p50 to js->js's.
- ``dht_throughput``: topic messages (hypercore extension messages
  ``peersockets/bench``, the throughput workloads' exactly) over one DHT
  connection (UDX, secret-stream, protomux), and the same over loopback TCP with
  the TCP workloads' own workers (``run_throughput``'s method: fresh processes,
  warm-up phase, then a timed phase measured from the sender's start to the
  receiver's last message), 64 B and 64 KiB, py->py and js->js.

See benchmarks/README.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from benchmarks.run import (
    DHT_JS_WORKER,
    LARGE,
    SMALL,
    TOPIC,
    WORKLOAD_PAIRS,
    Figures,
    Options,
    Setup,
    Worker,
    WorkerError,
    clocks_shared,
    connect_pair,
    pair_workers,
    percentile,
    start_pair,
    start_workers,
    stream_figures,
    stream_phase,
    wait_peers,
)

THROUGHPUT_PAIRS = WORKLOAD_PAIRS["dht_throughput"]

CONNECT_TARGET = 1.5
"""The issue's target: a connect at most 1.5x JavaScript-to-JavaScript's time."""


class Testnet:
    """The local hyperdht testnet: one JavaScript worker holding ``size`` nodes."""

    def __init__(self, opts: Options, size: int) -> None:
        self.opts = opts
        self.size = size
        self.worker: Worker | None = None
        self.bootstrap: list[list[Any]] = []
        self.nodes: list[list[Any]] = []

    async def start(self) -> list[list[Any]]:
        if self.worker is None:
            worker = Worker("js", "JavaScript DHT testnet", self.opts.log_dir / "dht-testnet.log")
            self.worker = worker
            timeout = self.opts.sizes.timeout
            await worker.start([self.opts.node, str(DHT_JS_WORKER)], timeout)
            event = await worker.call({"cmd": "testnet", "size": self.size}, "testnet", timeout)
            self.bootstrap = event["bootstrap"]
            self.nodes = event["nodes"]
        return self.bootstrap

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.close()
            self.worker = None


class DhtWorkload:
    """A DHT workload's runner: ``await runner(pair)`` is one run; ``combine`` picks the
    figures of a pair's runs; ``aclose`` stops the testnet after the last pair."""

    def __init__(self, workload: str, opts: Options) -> None:
        self.workload = workload
        self.opts = opts
        self.testnet = Testnet(opts, opts.sizes.dht_testnet_nodes)

    @property
    def pairs(self) -> tuple[str, ...] | None:
        """The pairs this workload runs (None: all)."""
        return THROUGHPUT_PAIRS if self.workload == "dht_throughput" else None

    async def __call__(self, pair: str) -> Figures:
        bootstrap = await self.testnet.start()
        if self.workload == "dht_connect":
            return await run_dht_connect(pair, self.opts, bootstrap)
        return await run_dht_throughput(pair, self.opts, bootstrap)

    def combine(self, runs: list[Figures]) -> Figures:
        """dht_connect: the run with the lowest p50. dht_throughput: each transport's
        figures from its own best run (highest msg/s), the DHT/TCP ratios from those."""
        if self.workload == "dht_connect":
            return min(runs, key=lambda f: f["p50_ms"])
        out: Figures = dict(runs[0])
        for transport in ("tcp", "dht"):
            for size in ("64b", "64k"):
                prefix = f"{transport}_{size}_"
                key = prefix + "msgs_per_s"
                best = max(runs, key=lambda f: f[key])
                out.update({k: v for k, v in best.items() if k.startswith(prefix)})
        add_dht_over_tcp(out)
        return out

    def describe(self, runs: list[Figures]) -> str:
        """The paths of a pair's connects over all its runs: the clients' paths (A), and
        the sockets the server (B) accepted them on."""
        a = sum(int(f.get("client_firewalled", 0)) for f in runs)
        b = sum(int(f.get("server_firewalled", 0)) for f in runs)
        return (
            f"paths {paths_of(runs)}; server sockets {server_sockets_of(runs)};"
            f" firewalled in {a}/{len(runs)} runs (client), {b}/{len(runs)} (server)"
        )

    def notes(self, results: dict[str, Any]) -> list[str]:
        """Lines for under the table: the paths the connects took, per pair."""
        lines = []
        for pair, entry in results.get("pairs", {}).items():
            paths = entry.get("paths")
            if paths:
                lines.append(f"  {pair}: {paths}")
        if not lines:
            return []
        out = [f"{self.workload}: the ways the DHT connects went, over all runs:", *lines]
        if self.workload == "dht_connect":
            out += p50_target_lines("dht_connect", results.get("pairs", {}), CONNECT_TARGET)
        return out

    async def aclose(self) -> None:
        await self.testnet.close()


def p50_target_lines(workload: str, pairs: dict[str, Any], bound: float) -> list[str]:
    """The line under the table checking every pair's p50 (ms) against ``bound`` x js->js's:
    the table's targets are py->py's, this one holds for the mixed pairs too."""
    base = pairs.get("js->js", {}).get("figures")
    if not base:
        return []
    checks = []
    for pair, entry in pairs.items():
        figures = entry.get("figures")
        if pair == "js->js" or not figures:
            continue
        ratio = figures["p50_ms"] / base["p50_ms"]
        checks.append(f"{pair} {ratio:.2f}x ({'met' if ratio <= bound else 'NOT met'})")
    if not checks:
        return []
    return [f"{workload} target, p50 <= {bound:g}x js->js's: " + ", ".join(checks)]


# -- dht_connect ------------------------------------------------------------------------


async def start_dht_pair(
    workload: str, pair: str, opts: Options, bootstrap: list[list[Any]]
) -> tuple[Worker, Worker]:
    """A's and B's DHT workers, started (pinned as the others) and bootstrapped."""
    timeout = opts.sizes.timeout
    a, b = pair_workers(workload, pair, opts, "DHT worker")
    try:
        await start_workers(a, b, opts, "dht")
        cmd = {"cmd": "dht_open", "bootstrap": bootstrap}
        await asyncio.gather(a.call(cmd, "dht_ready", timeout), b.call(cmd, "dht_ready", timeout))
    except BaseException:
        await asyncio.gather(a.close(), b.close())
        raise
    return a, b


def path_summary(paths: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in paths.most_common())


async def run_dht_connect(pair: str, opts: Options, bootstrap: list[list[Any]]) -> Figures:
    s = opts.sizes
    timeout = s.timeout
    a, b = await start_dht_pair("dht_connect", pair, opts, bootstrap)
    try:
        listening = await b.call({"cmd": "dht_listen", "mode": "echo"}, "dht_listening", timeout)
        times = await a.call(
            {
                "cmd": "connect_time",
                "public_key": listening["public_key"],
                "count": s.dht_connects,
                "warmup": s.dht_connect_warmup,
            },
            "connect_times",
            timeout,
        )
        a_stats, b_stats = await asyncio.gather(
            a.call({"cmd": "dht_stats"}, "dht_stats", timeout),
            b.call({"cmd": "dht_stats"}, "dht_stats", timeout),
        )
    finally:
        await asyncio.gather(a.close(), b.close())
    ms = sorted(float(x) for x in times["ms"])
    if len(ms) != s.dht_connects:
        raise WorkerError(f"{len(ms)} connect times, expected {s.dht_connects}")
    figures: Figures = {
        "connects": len(ms),
        "warmup_connects": s.dht_connect_warmup,
        "p50_ms": percentile_f(ms, 50),
        "p90_ms": percentile_f(ms, 90),
        "mean_ms": sum(ms) / len(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "over_1s": sum(1 for x in ms if x >= 1000.0),
        "client_firewalled": float(bool(a_stats.get("firewalled"))),
        "server_firewalled": float(bool(b_stats.get("firewalled"))),
    }
    paths: Counter[str] = Counter(str(p) for p in times["paths"])
    for name, n in paths.items():
        figures[f"path_{name}"] = n
    for name, n in (b_stats.get("accepts") or {}).items():
        figures[f"server_socket_{name}"] = n  # includes the warm-ups
    return figures


def percentile_f(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list of floats."""
    return float(percentile(sorted_values, p))  # type: ignore[arg-type]


# -- dht_throughput ---------------------------------------------------------------------


async def phases(setup: Setup, opts: Options, prefix: str) -> Figures:
    """The throughput workloads' phases on one connection: 64 B (warm-up, timed), then
    64 KiB (warm-up, timed); figures named ``{prefix}_64b_*`` and ``{prefix}_64k_*``."""
    s = opts.sizes
    timeout = s.timeout
    out: Figures = {}
    for size, tag, count, warmup in (
        (SMALL, "64b", s.dht_small_count, s.dht_small_warmup),
        (LARGE, "64k", s.dht_large_count, s.dht_large_warmup),
    ):
        if warmup:
            await stream_phase(setup.a, setup.b, warmup, 1, size, timeout)
        sent, received = await stream_phase(setup.a, setup.b, count, 1, size, timeout)
        figures = stream_figures(sent, received, setup.clock_shared)
        for key in (
            "messages",
            "seconds",
            "msgs_per_s",
            "mb_per_s",
            "first_to_last_msgs_per_s",
            "first_to_last_mb_per_s",
            "sender_drain_waits",
        ):
            if key in figures:
                out[f"{prefix}_{tag}_{key}"] = figures[key]
    return out


async def tcp_cell(pair: str, opts: Options) -> Figures:
    """The TCP half: the throughput workloads' own workers and steps (fresh processes, B
    listens on loopback TCP, A dials)."""
    setup = await start_pair("dht_throughput-tcp", pair, opts, False, 1, TOPIC)
    try:
        await connect_pair(setup, opts)
        return await phases(setup, opts, "tcp")
    finally:
        await asyncio.gather(setup.a.close(), setup.b.close())


async def dht_cell(pair: str, opts: Options, bootstrap: list[list[Any]]) -> Figures:
    """The DHT half: DHT workers; B (the receiver) listens on its drive peer's key pair, A
    connects to it by public key; then the same phases. Also the connect's path
    (``path_*``) and the socket B accepted it on (``server_socket_*``)."""
    timeout = opts.sizes.timeout
    a, b = await start_dht_pair("dht_throughput-dht", pair, opts, bootstrap)
    try:
        # the drive's owner: the JavaScript worker (the listener in js->js), as start_pair
        init = await b.call({"cmd": "init", "key": None, "topic": TOPIC}, "init", timeout)
        await a.call({"cmd": "init", "key": init["key"], "topic": TOPIC}, "init", timeout)
        listening = await b.call({"cmd": "dht_listen", "mode": "peer"}, "dht_listening", timeout)
        connected = await a.call(
            {"cmd": "dht_connect", "public_key": listening["public_key"]}, "connected", timeout
        )
        setup = Setup(a, b, b, a, 1, TOPIC, connected, clocks_shared(a, b))
        await wait_peers(setup, opts)
        figures = await phases(setup, opts, "dht")
        a_stats, b_stats = await asyncio.gather(
            a.call({"cmd": "dht_stats"}, "dht_stats", timeout),
            b.call({"cmd": "dht_stats"}, "dht_stats", timeout),
        )
        figures["client_firewalled"] = float(bool(a_stats.get("firewalled")))
        figures["server_firewalled"] = float(bool(b_stats.get("firewalled")))
        figures["dht_connect_ms"] = (int(connected["end_ns"]) - int(connected["start_ns"])) / 1e6
        figures[f"path_{connected.get('path')}"] = 1
        for name, n in (b_stats.get("accepts") or {}).items():
            figures[f"server_socket_{name}"] = n
        return figures
    finally:
        await asyncio.gather(a.close(), b.close())


def add_dht_over_tcp(figures: Figures) -> None:
    """The DHT/TCP ratios: 64 B messages/s, 64 KiB MB/s."""
    figures["dht_over_tcp_64b"] = figures["dht_64b_msgs_per_s"] / figures["tcp_64b_msgs_per_s"]
    figures["dht_over_tcp_64k"] = figures["dht_64k_mb_per_s"] / figures["tcp_64k_mb_per_s"]


async def run_dht_throughput(pair: str, opts: Options, bootstrap: list[list[Any]]) -> Figures:
    if pair not in THROUGHPUT_PAIRS:
        raise WorkerError(f"dht_throughput runs {', '.join(THROUGHPUT_PAIRS)} only")
    figures = await tcp_cell(pair, opts)
    figures.update(await dht_cell(pair, opts, bootstrap))
    add_dht_over_tcp(figures)
    return figures


def paths_of(runs: list[Figures]) -> str:
    """The ``path_*`` counts of a pair's runs, added up: "lan 60, holepunch 2"."""
    total: Counter[str] = Counter()
    for figures in runs:
        for key, value in figures.items():
            if key.startswith("path_"):
                total[key[5:]] += int(value)
    return path_summary(total)


def server_sockets_of(runs: list[Figures]) -> str:
    total: Counter[str] = Counter()
    for figures in runs:
        for key, value in figures.items():
            if key.startswith("server_socket_"):
                total[key[len("server_socket_") :]] += int(value)
    return path_summary(total)


def headline(workload: str, figures: Figures) -> str:
    """The progress line of a pair (``figures``: the picked run's)."""
    if workload == "dht_connect":
        return (
            f"p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms"
            f" (paths {paths_of([figures])})"
        )
    return (
        f"64 B {figures['tcp_64b_msgs_per_s']:,.0f} -> {figures['dht_64b_msgs_per_s']:,.0f} msg/s,"
        f" 64 KiB {figures['tcp_64k_mb_per_s']:,.1f} -> {figures['dht_64k_mb_per_s']:,.1f} MB/s"
        " (TCP -> DHT)"
    )
