"""peersockets benchmarks, side by side with the JavaScript stack, in one run.

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--pairs PAIR[,PAIR]]
                         [--json PATH] [--uvloop] [--repeat N]
                         [--js-transport direct|pipe] [--cprofile DIR] [--py-spy DIR]

Every workload runs for four pairs of worker processes, written ``A->B``:
``js->js`` (two Node hyperdrive peers), ``py->py`` (two Python peersockets
peers), ``py->js`` and ``js->py``. A is the side that sends (throughput,
fan-out), pings (round trip) or dials in as the many idle peers (scale); B
receives, echoes, or is the one server. Ratios compare py->py (and the mixed
pairs) with js->js. See benchmarks/README.md for what each figure measures.

In a shell, quote the pairs (a bare ``>`` is a redirection):

    python -m benchmarks --pairs 'py->py,js->js'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.floor import measure as event_loop_floor
from benchmarks.floor import measure_udp as event_loop_floor_udp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JS_WORKER = HERE / "js" / "worker.mjs"
PY_WORKER = HERE / "py_worker.py"
UDX_JS_WORKER = HERE / "js" / "udx_worker.mjs"
UDX_PY_WORKER = HERE / "udx_worker.py"
DHT_JS_WORKER = HERE / "js" / "dht_worker.mjs"
DHT_PY_WORKER = HERE / "dht_worker.py"
SWARM_JS_WORKER = HERE / "js" / "swarm_worker.mjs"
SWARM_PY_WORKER = HERE / "swarm_worker.py"
JS_PACKAGES = ROOT / "tests" / "interop" / "js"
DEFAULT_JSON = HERE / "results" / "latest.json"

PAIRS = ["js->js", "py->py", "py->js", "js->py"]
BASELINE = "js->js"
STACK_NAMES = {"js": "JavaScript", "py": "Python"}

WORKLOADS = [
    "throughput_64b",
    "throughput_64k",
    "round_trip",
    "round_trip_loop",
    "fan_out",
    "scale",
    "udx_bulk",
    "udx_round_trip",
    "udx_streams",
    "udx_lossy",
    "dht_connect",
    "dht_throughput",
    "swarm_join",
]
WORKLOAD_PAIRS = {"dht_throughput": ("js->js", "py->py")}
"""Workloads that run some of the pairs only (the others run every pair asked for)."""
DHT_WORKLOADS = ("dht_connect", "dht_throughput")
ROUND_TRIPS = ("round_trip", "round_trip_loop")
ROUND_TRIP_ROUNDS = 9
"""Interleaved rounds of the round trips and their floors in a full run (``--repeat`` sets
it): one process pair's p50 lands several µs from the next one's, and the cost above the
floor is a difference of two such figures, so its median needs more runs than a best-of."""
UDX_WORKLOADS = ("udx_bulk", "udx_round_trip", "udx_streams", "udx_lossy")

Event = dict[str, Any]
Figures = dict[str, float]


# -- workload sizes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each workload is (full run or --quick)."""

    small_count: int
    small_warmup: int
    large_count: int
    large_warmup: int
    rtt_rounds: int
    rtt_warmup: int
    fan_receivers: int
    fan_count: int
    fan_warmup: int
    scale_peers: int
    scale_settle: float
    connect_concurrency: int
    timeout: float
    udx_bulk_bytes: int
    udx_warmup_bytes: int
    udx_rtt_rounds: int
    udx_rtt_warmup: int
    udx_streams: int
    udx_stream_bytes: int
    udx_lossy_bytes: int
    udx_loss: float
    udx_timeout: float
    dht_testnet_nodes: int
    dht_connects: int
    dht_connect_warmup: int
    dht_small_count: int
    dht_small_warmup: int
    dht_large_count: int
    dht_large_warmup: int
    swarm_joins: int
    swarm_join_warmup: int


FULL = Sizes(
    small_count=200_000,
    small_warmup=10_000,
    large_count=4_000,
    large_warmup=200,
    rtt_rounds=5_000,
    rtt_warmup=500,
    fan_receivers=32,
    fan_count=5_000,
    fan_warmup=200,
    scale_peers=1_000,
    scale_settle=1.0,
    connect_concurrency=64,
    timeout=300.0,
    udx_bulk_bytes=64 * 2**20,
    udx_warmup_bytes=4 * 2**20,
    udx_rtt_rounds=5_000,
    udx_rtt_warmup=500,
    udx_streams=100,
    udx_stream_bytes=256 * 2**10,
    udx_lossy_bytes=64 * 2**20,
    udx_loss=0.01,
    udx_timeout=120.0,
    dht_testnet_nodes=5,
    dht_connects=50,
    dht_connect_warmup=2,
    dht_small_count=200_000,
    dht_small_warmup=10_000,
    dht_large_count=4_000,
    dht_large_warmup=200,
    swarm_joins=30,
    swarm_join_warmup=2,
)

QUICK = Sizes(
    small_count=2_000,
    small_warmup=200,
    large_count=40,
    large_warmup=10,
    rtt_rounds=200,
    rtt_warmup=20,
    fan_receivers=8,
    fan_count=100,
    fan_warmup=10,
    scale_peers=50,
    scale_settle=0.2,
    connect_concurrency=16,
    timeout=60.0,
    udx_bulk_bytes=2**20,
    udx_warmup_bytes=64 * 2**10,
    udx_rtt_rounds=200,
    udx_rtt_warmup=20,
    udx_streams=100,
    udx_stream_bytes=8 * 2**10,
    udx_lossy_bytes=2**20,
    udx_loss=0.01,
    udx_timeout=30.0,
    dht_testnet_nodes=5,
    dht_connects=5,
    dht_connect_warmup=1,
    dht_small_count=2_000,
    dht_small_warmup=200,
    dht_large_count=40,
    dht_large_warmup=10,
    swarm_joins=3,
    swarm_join_warmup=1,
)

SMALL = 64
LARGE = 64 * 1024
TOPIC = "bench"
HOST = "127.0.0.1"

# (workload, metric, unit, higher_is_better, label)
METRICS: list[tuple[str, str, str, bool, str]] = [
    ("throughput_64b", "msgs_per_s", "msg/s", True, "64 B messages/s"),
    ("throughput_64b", "first_to_last_msgs_per_s", "msg/s", True, "  (first->last msg)"),
    ("throughput_64k", "mb_per_s", "MB/s", True, "64 KiB MB/s"),
    ("throughput_64k", "first_to_last_mb_per_s", "MB/s", True, "  (first->last msg)"),
    ("round_trip", "p50_us", "us", False, "round trip p50"),
    ("round_trip", "p99_us", "us", False, "round trip p99"),
    ("round_trip", "mean_us", "us", False, "round trip mean"),
    ("round_trip", "stack_us", "us", False, "  (above the floor)"),
    ("round_trip_loop", "p50_us", "us", False, "loop round trip p50"),
    ("round_trip_loop", "p99_us", "us", False, "loop round trip p99"),
    ("round_trip_loop", "mean_us", "us", False, "loop round trip mean"),
    ("round_trip_loop", "stack_us", "us", False, "  (above the floor)"),
    ("fan_out", "msgs_per_s", "msg/s", True, "fan-out messages/s"),
    ("scale", "client_kib_per_peer", "KiB", False, "memory / idle peer"),
    ("scale", "server_kib_per_peer", "KiB", False, "server memory / peer"),
    ("scale", "connect_s", "s", False, "connect all"),
    ("scale", "all_joined_s", "s", False, "server saw all joins"),
    ("udx_bulk", "mb_per_s", "MB/s", True, "UDX bulk MB/s"),
    ("udx_bulk", "first_to_end_mb_per_s", "MB/s", True, "  (first byte->END)"),
    ("udx_round_trip", "p50_us", "us", False, "UDX round trip p50"),
    ("udx_round_trip", "p99_us", "us", False, "UDX round trip p99"),
    ("udx_round_trip", "stack_us", "us", False, "  (above the UDP floor)"),
    ("udx_streams", "mb_per_s", "MB/s", True, "UDX many streams MB/s"),
    ("udx_streams", "seconds", "s", False, "  (all streams done)"),
    ("udx_lossy", "mb_per_s", "MB/s", True, "UDX 1% loss MB/s"),
    ("dht_connect", "p50_ms", "ms", False, "DHT connect p50"),
    ("dht_connect", "p90_ms", "ms", False, "DHT connect p90"),
    ("dht_throughput", "tcp_64b_msgs_per_s", "msg/s", True, "TCP 64 B messages/s"),
    ("dht_throughput", "dht_64b_msgs_per_s", "msg/s", True, "DHT 64 B messages/s"),
    ("dht_throughput", "tcp_64b_mb_per_s", "MB/s", True, "TCP 64 B MB/s"),
    ("dht_throughput", "dht_64b_mb_per_s", "MB/s", True, "DHT 64 B MB/s"),
    ("dht_throughput", "dht_over_tcp_64b", "x", True, "  (DHT / TCP, 64 B)"),
    ("dht_throughput", "tcp_64k_msgs_per_s", "msg/s", True, "TCP 64 KiB messages/s"),
    ("dht_throughput", "dht_64k_msgs_per_s", "msg/s", True, "DHT 64 KiB messages/s"),
    ("dht_throughput", "tcp_64k_mb_per_s", "MB/s", True, "TCP 64 KiB MB/s"),
    ("dht_throughput", "dht_64k_mb_per_s", "MB/s", True, "DHT 64 KiB MB/s"),
    ("dht_throughput", "dht_over_tcp_64k", "x", True, "  (DHT / TCP, 64 KiB)"),
    ("swarm_join", "p50_ms", "ms", False, "swarm join -> echo p50"),
    ("swarm_join", "p90_ms", "ms", False, "swarm join -> echo p90"),
    ("swarm_join", "dial_p50_ms", "ms", False, "  (join -> dial p50)"),
    ("swarm_join", "peer_p50_ms", "ms", False, "  (join -> peer p50)"),
    ("swarm_join", "cold_ms", "ms", False, "  (first join of a process)"),
]

# (label, workload, metric, pair, op, bound): a ratio to js->js (py->py's, or "ratio:PAIR"'s),
# or an absolute figure
TARGETS: list[tuple[str, str, str, str, str, float]] = [
    ("64 B throughput >= 1.0x JS", "throughput_64b", "msgs_per_s", "ratio", ">=", 1.0),
    ("64 KiB throughput >= 0.9x JS", "throughput_64k", "mb_per_s", "ratio", ">=", 0.9),
    ("round-trip p50 <= {bound}x JS", "round_trip", "p50_us", "ratio", "<=", 1.2),
    ("round-trip p99 <= 1.0x JS", "round_trip", "p99_us", "ratio", "<=", 1.0),
    ("round-trip cost above the floor <= 1.0x JS", "round_trip", "stack_us", "ratio", "<=", 1.0),
    ("loop round-trip p50 <= {bound}x JS", "round_trip_loop", "p50_us", "ratio", "<=", 1.2),
    ("loop round-trip p99 <= 1.0x JS", "round_trip_loop", "p99_us", "ratio", "<=", 1.0),
    (
        "loop round-trip cost above the floor <= 1.0x JS",
        "round_trip_loop",
        "stack_us",
        "ratio",
        "<=",
        1.0,
    ),
    ("memory per idle Python peer <= 64 KiB", "scale", "client_kib_per_peer", "py->py", "<=", 64.0),
    ("UDX bulk >= 0.5x JS", "udx_bulk", "mb_per_s", "ratio", ">=", 0.5),
    ("UDX round-trip p50 <= 1.5x JS", "udx_round_trip", "p50_us", "ratio", "<=", 1.5),
    ("UDX bulk through 1% loss >= 0.5x JS", "udx_lossy", "mb_per_s", "ratio", ">=", 0.5),
    ("DHT connect p50 <= 1.5x JS", "dht_connect", "p50_ms", "ratio", "<=", 1.5),
    (
        "swarm join to first echo p50 <= 1.5x JS (py->js / js->js)",
        "swarm_join",
        "p50_ms",
        "ratio:py->js",
        "<=",
        1.5,
    ),
]
UVLOOP_P50_BOUND = 0.9
"""On uvloop the round-trip p50 targets are tighter: at most 0.9x JavaScript's."""


# -- worker processes -------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker failed, timed out or said something unexpected."""


class Worker:
    """One worker process (JavaScript or Python) and its JSON-lines conversation."""

    def __init__(self, stack: str, name: str, log_path: Path) -> None:
        self.stack = stack
        self.name = name
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.started: Event = {}
        self._reader: asyncio.Task[None] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, argv: list[str], timeout: float) -> Event:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        before = time.monotonic_ns()
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            limit=64 * 1024 * 1024,
            start_new_session=True,
        )
        self._reader = asyncio.ensure_future(self._read())
        self.started = await self.expect("started", timeout)
        after = time.monotonic_ns()
        clock = int(self.started.get("clock_ns", 0))
        self.started["clock_shared"] = before <= clock <= after
        return self.started

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            await self.events.put(event)
        await self.events.put(None)

    async def expect(self, name: str, timeout: float) -> Event:
        """The next event, which must be ``name``."""
        try:
            async with asyncio.timeout(timeout):
                event = await self.events.get()
        except TimeoutError:
            raise WorkerError(f"{self.name}: no {name!r} event within {timeout:g} s") from None
        if event is None:
            raise WorkerError(f"{self.name}: exited while waiting for {name!r}{self._tail()}")
        if event.get("event") == "error":
            raise WorkerError(f"{self.name}: {event.get('message')}{self._tail()}")
        if event.get("event") != name:
            raise WorkerError(f"{self.name}: expected {name!r}, got {event!r}")
        return event

    def send(self, cmd: Event) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def call(self, cmd: Event, reply: str, timeout: float) -> Event:
        """Send a command and wait for its reply event."""
        self.send(cmd)
        return await self.expect(reply, timeout)

    async def close(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                self.send({"cmd": "exit"})
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._log is not None:
            self._log.close()
            self._log = None

    def _tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        if not text:
            return ""
        return "\n    " + "\n    ".join(text[-15:])


@dataclass
class Options:
    """The command line, parsed."""

    sizes: Sizes
    quick: bool
    uvloop: bool
    js_transport: str
    log_dir: Path
    cprofile_dir: Path | None
    py_spy_dir: Path | None
    node: str
    pin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def pinning_available() -> bool:
    """Whether workers can be pinned to cores: Linux taskset and at least 2 usable cores."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    return shutil.which("taskset") is not None and len(cpus) >= 2


def pin_cpus() -> tuple[int, int]:
    """The cores for worker A and worker B: the first two this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1]


def worker_argv(
    stack: str,
    opts: Options,
    profile_name: str | None,
    side: str | None = None,
    kind: str = "hyperdrive",
) -> list[str]:
    """The command line of a worker: ``kind`` "hyperdrive" (py_worker.py, js/worker.mjs),
    "udx" (udx_worker.py, js/udx_worker.mjs), "dht" (dht_worker.py, js/dht_worker.mjs) or
    "swarm" (swarm_worker.py, js/swarm_worker.mjs), pinned to A's or B's core."""
    prefix: list[str] = []
    if opts.pin and side is not None:
        cpu_a, cpu_b = pin_cpus()
        taskset = shutil.which("taskset") or "taskset"
        prefix = [taskset, "-c", str(cpu_a if side == "A" else cpu_b)]
    return prefix + _worker_command(stack, opts, profile_name, kind)


def _worker_command(
    stack: str, opts: Options, profile_name: str | None, kind: str = "hyperdrive"
) -> list[str]:
    if kind == "udx":
        if stack == "js":
            return [opts.node, str(UDX_JS_WORKER)]
        return _py_worker_command(UDX_PY_WORKER, opts, profile_name)
    if kind == "dht":
        if stack == "js":
            return [opts.node, "--expose-gc", str(DHT_JS_WORKER)]
        return _py_worker_command(DHT_PY_WORKER, opts, profile_name)
    if kind == "swarm":
        if stack == "js":
            return [opts.node, "--expose-gc", str(SWARM_JS_WORKER)]
        return _py_worker_command(SWARM_PY_WORKER, opts, profile_name)
    if stack == "js":
        return [
            opts.node,
            "--expose-gc",
            str(JS_WORKER),
            "--transport",
            opts.js_transport,
            "--pace",
            str(opts.extra.get("pace", 0)),
        ]
    return _py_worker_command(PY_WORKER, opts, profile_name)


def _py_worker_command(script: Path, opts: Options, profile_name: str | None) -> list[str]:
    """A Python worker's command line: on uvloop if asked for, and profiled into
    ``{cprofile_dir}/{profile_name}.pstats`` with --cprofile (and a profile name)."""
    argv = [sys.executable, str(script)]
    if opts.uvloop:
        argv.append("--uvloop")
    if opts.cprofile_dir is not None and profile_name is not None:
        opts.cprofile_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--cprofile", str(opts.cprofile_dir / f"{profile_name}.pstats")]
    return argv


def pair_workers(workload: str, pair: str, opts: Options, label: str) -> tuple[Worker, Worker]:
    """Workers A and B for one run of ``workload`` on ``pair`` ("js->py": A is JavaScript),
    not started yet; ``label`` names their kind in messages ("worker", "UDX worker"). Each
    one's log file (and cProfile file) is named ``{workload}-{A}-{B}-{side}-{its stack}``."""
    sa, sb = pair.split("->")
    tag = f"{workload}-{sa}-{sb}"
    a = Worker(sa, f"{STACK_NAMES[sa]} {label} A ({pair})", opts.log_dir / f"{tag}-A-{sa}.log")
    b = Worker(sb, f"{STACK_NAMES[sb]} {label} B ({pair})", opts.log_dir / f"{tag}-B-{sb}.log")
    return a, b


async def start_workers(a: Worker, b: Worker, opts: Options, kind: str) -> None:
    """Start A's and B's processes at once (``kind``: see ``worker_argv``), each pinned to
    its side's core and profiled under its log file's name."""
    timeout = opts.sizes.timeout
    await asyncio.gather(
        a.start(worker_argv(a.stack, opts, a.log_path.stem, "A", kind=kind), timeout),
        b.start(worker_argv(b.stack, opts, b.log_path.stem, "B", kind=kind), timeout),
    )


def clocks_shared(a: Worker, b: Worker) -> bool:
    """Whether both workers' clocks are the runner's (their timestamps can be compared)."""
    return bool(a.started["clock_shared"] and b.started["clock_shared"])


class PySpy:
    """py-spy attached to a Python worker for the timed phase only."""

    def __init__(self, worker: Worker, out: Path) -> None:
        self.worker = worker
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.worker.stack != "py":
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.worker.pid),
                "--rate",
                "1000",
                "--format",
                "raw",
                "--output",
                str(self.out),
                "--idle",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.out.with_suffix(".log"), "wb"),  # noqa: SIM115
        )
        time.sleep(0.5)  # let it attach before the timed phase

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- running one workload for one pair ------------------------------------------------


@dataclass
class Setup:
    """The two workers of a run, which one listens, and how many peers dial in."""

    a: Worker  # sender / pinger / idle clients
    b: Worker  # receiver / ponger / server
    listener: Worker
    dialer: Worker
    dialers: int  # connections the dialer makes (its local peers)
    topic: str | None
    connected: Event = field(default_factory=dict)
    clock_shared: bool = True


async def start_pair(
    workload: str,
    pair: str,
    opts: Options,
    listener_is_a: bool,
    dialers: int,
    topic: str | None,
) -> Setup:
    timeout = opts.sizes.timeout
    a, b = pair_workers(workload, pair, opts, "worker")
    listener, dialer = (a, b) if listener_is_a else (b, a)
    setup = Setup(a, b, listener, dialer, dialers, topic)
    try:
        await start_workers(a, b, opts, "hyperdrive")
    except BaseException:
        await asyncio.gather(a.close(), b.close())
        raise
    setup.clock_shared = clocks_shared(a, b)
    # the drive's owner: a JavaScript worker if there is one (it creates the drive);
    # Python needs no storage and takes the key it is given
    order = sorted([listener, dialer], key=lambda w: (w.stack != "js", w is not listener))
    owner, other = order
    init = await owner.call({"cmd": "init", "key": None, "topic": topic}, "init", timeout)
    await other.call({"cmd": "init", "key": init["key"], "topic": topic}, "init", timeout)
    return setup


async def connect_pair(setup: Setup, opts: Options) -> None:
    timeout = opts.sizes.timeout
    listening = await setup.listener.call({"cmd": "listen"}, "listening", timeout)
    setup.connected = await setup.dialer.call(
        {
            "cmd": "connect",
            "port": listening["port"],
            "peers": setup.dialers,
            "concurrency": opts.sizes.connect_concurrency,
        },
        "connected",
        timeout,
    )
    await wait_peers(setup, opts)


async def wait_peers(setup: Setup, opts: Options) -> tuple[Event, Event]:
    timeout = opts.sizes.timeout
    cmd = {"cmd": "wait_peers", "count": setup.dialers}
    listener_peers, dialer_peers = await asyncio.gather(
        setup.listener.call(cmd, "peers", timeout), setup.dialer.call(cmd, "peers", timeout)
    )
    return listener_peers, dialer_peers


async def stream_phase(
    sender: Worker,
    receiver: Worker,
    per_peer: int,
    peers: int,
    size: int,
    timeout: float,
    spy: list[PySpy] | None = None,
) -> tuple[Event, Event]:
    """Arm the receiver for per_peer * peers messages, then send per_peer to every peer."""
    await receiver.call({"cmd": "recv", "count": per_peer * peers}, "armed", timeout)
    for s in spy or []:
        s.start()
    try:
        sent = await sender.call({"cmd": "send", "count": per_peer, "size": size}, "sent", timeout)
        received = await receiver.expect("received", timeout)
    finally:
        for s in spy or []:
            s.stop()
    if received["count"] != per_peer * peers:
        raise WorkerError(f"received {received['count']} of {per_peer * peers} messages")
    return sent, received


class TransferTimes(NamedTuple):
    """How long a transfer took, in seconds."""

    elapsed: float
    """From the sender's start to the receiver's last arrival (if the workers' clocks are
    not the runner's, ``first_to_last``)."""
    first_to_last: float
    """From the receiver's first arrival to its last."""
    sender: float
    """The sender's own start to end."""


def transfer_times(sent: Event, received: Event, clock_shared: bool) -> TransferTimes:
    """The times of a transfer from the sender's ``sent`` and the receiver's ``received``."""
    first = int(received["first_ns"])
    last = int(received["last_ns"])
    start = int(sent["start_ns"])
    first_to_last = max(last - first, 1) / 1e9
    elapsed = (max(last - start, 1) / 1e9) if clock_shared else first_to_last
    return TransferTimes(elapsed, first_to_last, (int(sent["end_ns"]) - start) / 1e9)


def stream_figures(sent: Event, received: Event, clock_shared: bool) -> Figures:
    count = int(received["count"])
    size_total = int(received["bytes"])
    elapsed, first_to_last, sender = transfer_times(sent, received, clock_shared)
    figures: Figures = {
        "messages": count,
        "bytes": size_total,
        "seconds": elapsed,
        "msgs_per_s": count / elapsed,
        "mb_per_s": size_total / elapsed / 1e6,
        "first_to_last_seconds": first_to_last,
        "first_to_last_msgs_per_s": (count - 1) / first_to_last,
        "first_to_last_mb_per_s": size_total * (count - 1) / count / first_to_last / 1e6,
        "sender_seconds": sender,
    }
    if "drain_waits" in sent:
        figures["sender_drain_waits"] = int(sent["drain_waits"])
    return figures


async def run_throughput(
    workload: str, pair: str, opts: Options, size: int, count: int, warmup: int
) -> Figures:
    setup = await start_pair(workload, pair, opts, listener_is_a=False, dialers=1, topic=TOPIC)
    try:
        await connect_pair(setup, opts)
        timeout = opts.sizes.timeout
        if warmup:
            await stream_phase(setup.a, setup.b, warmup, 1, size, timeout)
        spies = profilers(opts, workload, pair, setup)
        sent, received = await stream_phase(setup.a, setup.b, count, 1, size, timeout, spies)
        figures = stream_figures(sent, received, setup.clock_shared)
        figures["message_size"] = size
        figures["warmup_messages"] = warmup
        return figures
    finally:
        await asyncio.gather(setup.a.close(), setup.b.close())


def profilers(opts: Options, workload: str, pair: str, setup: Setup) -> list[PySpy]:
    if opts.py_spy_dir is None:
        return []
    tag = f"{workload}-{pair.replace('->', '-')}"
    return [
        PySpy(setup.a, opts.py_spy_dir / f"{tag}-sender.txt"),
        PySpy(setup.b, opts.py_spy_dir / f"{tag}-receiver.txt"),
    ]


async def run_round_trip(workload: str, pair: str, opts: Options) -> Figures:
    """Ping-pong of 1-byte messages. The pinger awaits send, then the next message. The
    echo is a sync callback that replies at once (round_trip), or, in Python, the plain
    loop ``async for msg in topic: await topic.send(...)`` (round_trip_loop); JavaScript's
    extension API only has the callback, so its echo is the same in both."""
    setup = await start_pair(workload, pair, opts, listener_is_a=False, dialers=1, topic=TOPIC)
    try:
        await connect_pair(setup, opts)
        timeout = opts.sizes.timeout
        mode = "loop" if workload == "round_trip_loop" else "callback"
        await setup.b.call({"cmd": "echo", "mode": mode}, "echoing", timeout)
        pinged = await setup.a.call(
            {
                "cmd": "ping",
                "rounds": opts.sizes.rtt_rounds,
                "warmup": opts.sizes.rtt_warmup,
                "size": 1,
            },
            "pinged",
            timeout,
        )
        return round_trip_figures(pinged, opts.sizes.rtt_warmup)
    finally:
        await asyncio.gather(setup.a.close(), setup.b.close())


def round_trip_figures(pinged: Event, warmup: int) -> Figures:
    """The figures of a ``pinged`` event: the round trips' percentiles, min, max and mean
    in µs (``warmup``: how many untimed rounds went first)."""
    rtts = sorted(int(x) for x in pinged["rtt_ns"])
    if not rtts:
        raise WorkerError("no round trips measured")
    return {
        "rounds": len(rtts),
        "warmup_rounds": warmup,
        "p50_us": percentile(rtts, 50) / 1e3,
        "p90_us": percentile(rtts, 90) / 1e3,
        "p99_us": percentile(rtts, 99) / 1e3,
        "min_us": rtts[0] / 1e3,
        "max_us": rtts[-1] / 1e3,
        "mean_us": sum(rtts) / len(rtts) / 1e3,
    }


def percentile(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return float(sorted_values[int(rank) - 1])


async def run_fan_out(workload: str, pair: str, opts: Options) -> Figures:
    receivers = opts.sizes.fan_receivers
    setup = await start_pair(
        workload, pair, opts, listener_is_a=True, dialers=receivers, topic=TOPIC
    )
    try:
        await connect_pair(setup, opts)
        timeout = opts.sizes.timeout
        if opts.sizes.fan_warmup:
            await stream_phase(setup.a, setup.b, opts.sizes.fan_warmup, receivers, SMALL, timeout)
        sent, received = await stream_phase(
            setup.a, setup.b, opts.sizes.fan_count, receivers, SMALL, timeout
        )
        figures = stream_figures(sent, received, setup.clock_shared)
        figures["receivers"] = receivers
        figures["per_receiver"] = opts.sizes.fan_count
        figures["message_size"] = SMALL
        return figures
    finally:
        await asyncio.gather(setup.a.close(), setup.b.close())


async def run_scale(workload: str, pair: str, opts: Options) -> Figures:
    peers = opts.sizes.scale_peers
    setup = await start_pair(workload, pair, opts, listener_is_a=False, dialers=peers, topic=None)
    try:
        timeout = opts.sizes.timeout
        listening = await setup.listener.call({"cmd": "listen"}, "listening", timeout)
        client_before, server_before = await asyncio.gather(
            setup.a.call({"cmd": "memory"}, "memory", timeout),
            setup.b.call({"cmd": "memory"}, "memory", timeout),
        )
        connected = await setup.a.call(
            {
                "cmd": "connect",
                "port": listening["port"],
                "peers": peers,
                "concurrency": opts.sizes.connect_concurrency,
            },
            "connected",
            timeout,
        )
        setup.connected = connected
        server_peers, client_peers = await wait_peers(setup, opts)
        await asyncio.sleep(opts.sizes.scale_settle)
        client_after, server_after = await asyncio.gather(
            setup.a.call({"cmd": "memory"}, "memory", timeout),
            setup.b.call({"cmd": "memory"}, "memory", timeout),
        )
        start = int(connected["start_ns"])
        joined = (int(server_peers["t_ns"]) - start) / 1e9 if setup.clock_shared else float("nan")
        return {
            "peers": peers,
            "concurrency": opts.sizes.connect_concurrency,
            "client_kib_per_peer": (client_after["rss"] - client_before["rss"]) / peers / 1024,
            "server_kib_per_peer": (server_after["rss"] - server_before["rss"]) / peers / 1024,
            "client_rss_mib": client_after["rss"] / 2**20,
            "server_rss_mib": server_after["rss"] / 2**20,
            "connect_s": (int(connected["end_ns"]) - start) / 1e9,
            "all_joined_s": joined,
            "client_all_joined_s": (int(client_peers["t_ns"]) - start) / 1e9,
        }
    finally:
        await asyncio.gather(setup.a.close(), setup.b.close())


# -- the UDX workloads ------------------------------------------------------------------

UDX_A_BASE = 1
"""Worker A's stream ids are UDX_A_BASE + n, worker B's UDX_B_BASE + n (n: 0, 1, ...)."""
UDX_B_BASE = 1 << 20
UDX_LOSS_SEED = 20240601
"""The lossy relay's seed: every pair and every run sees the same loss draws."""


@dataclass
class UdxPair:
    """Two UDX workers (A sends or pings, B receives or echoes), each with one bound socket."""

    a: Worker
    b: Worker
    port_a: int = 0
    port_b: int = 0
    clock_shared: bool = True
    next_stream: int = 0
    relay: Any = None  # tests/udxrelay.py's LossyRelay, in udx_lossy

    async def close(self, timeout: float = 15.0) -> None:
        """Stop both workers (and the relay). After a failure ``timeout`` is short: a
        worker still sending to a dead peer would only answer "exit" once its stream
        gives up (~13 s), so it is killed instead."""
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await self.relay.close()
        await asyncio.gather(self.a.close(timeout), self.b.close(timeout))


@contextlib.asynccontextmanager
async def udx_pair(workload: str, pair: str, opts: Options) -> AsyncIterator[UdxPair]:
    """Two started, bound UDX workers, closed at the end (at once if the run failed)."""
    p = await start_udx_pair(workload, pair, opts)
    try:
        yield p
    except BaseException:
        await p.close(timeout=2.0)
        raise
    await p.close()


async def start_udx_pair(workload: str, pair: str, opts: Options) -> UdxPair:
    timeout = opts.sizes.timeout
    a, b = pair_workers(workload, pair, opts, "UDX worker")
    p = UdxPair(a, b)
    try:
        await start_workers(a, b, opts, "udx")
        bound_a, bound_b = await asyncio.gather(
            a.call({"cmd": "bind"}, "bound", timeout), b.call({"cmd": "bind"}, "bound", timeout)
        )
    except BaseException:
        await p.close(timeout=2.0)
        raise
    p.port_a, p.port_b = int(bound_a["port"]), int(bound_b["port"])
    p.clock_shared = clocks_shared(a, b)
    return p


async def both(first: Awaitable[Event], second: Awaitable[Event]) -> tuple[Event, Event]:
    """Wait for two replies at once; the first failure (a worker died, said "error" or
    timed out) is raised at once and the other wait is cancelled."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        x, y = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return x, y


async def open_udx_streams(
    p: UdxPair,
    count: int,
    opts: Options,
    *,
    port_for_a: int | None = None,
    port_for_b: int | None = None,
    b_mode: str = "data",
) -> tuple[list[int], list[int]]:
    """Open ``count`` streams on both sides (fresh ids): A's stream n talks to B's stream n.
    A's remote port is B's socket unless ``port_for_a`` (the relay) is given, and the other
    way round. UDX has no handshake: both sides are open before anything is sent."""
    first = p.next_stream
    p.next_stream += count
    a_ids = [UDX_A_BASE + first + n for n in range(count)]
    b_ids = [UDX_B_BASE + first + n for n in range(count)]
    timeout = opts.sizes.timeout
    await both(
        p.a.call(
            {
                "cmd": "open",
                "streams": [[a, b] for a, b in zip(a_ids, b_ids, strict=True)],
                "port": port_for_a or p.port_b,
                "mode": "data",
            },
            "opened",
            timeout,
        ),
        p.b.call(
            {
                "cmd": "open",
                "streams": [[b, a] for a, b in zip(a_ids, b_ids, strict=True)],
                "port": port_for_b or p.port_a,
                "mode": b_mode,
            },
            "opened",
            timeout,
        ),
    )
    return a_ids, b_ids


def udp_receive_buffer_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped because a socket's receive buffer was
    full (Linux /proc/net/snmp ``Udp: RcvbufErrors``; machine-wide), or None."""
    try:
        with open("/proc/net/snmp", encoding="ascii") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        header, values = rows[0], rows[1]
        return int(values[header.index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


async def udx_transfer(
    p: UdxPair, a_ids: list[int], b_ids: list[int], size: int, opts: Options
) -> tuple[Event, Event]:
    """B reads every stream to its END (checking length and pattern) while A sends ``size``
    bytes on each of its streams and ends them. Bounded by ``udx_timeout`` in all.
    ``received["udp_rcvbuf_errors"]``: the kernel's receive-buffer drops meanwhile."""
    timeout = opts.sizes.udx_timeout
    drops_before = udp_receive_buffer_errors()
    async with asyncio.timeout(timeout):
        await p.b.call({"cmd": "recv", "ids": b_ids, "bytes": size}, "armed", timeout)
        sent, received = await both(
            p.a.call({"cmd": "send", "ids": a_ids, "bytes": size}, "sent", timeout),
            p.b.expect("received", timeout),
        )
    drops_after = udp_receive_buffer_errors()
    if drops_before is not None and drops_after is not None:
        received["udp_rcvbuf_errors"] = drops_after - drops_before
    if not received.get("ok"):
        raise WorkerError(f"broken UDX transfer: {'; '.join(received.get('bad') or [])}")
    if int(received["bytes"]) != size * len(b_ids):
        raise WorkerError(f"received {received['bytes']} of {size * len(b_ids)} bytes")
    return sent, received


def udx_transfer_figures(sent: Event, received: Event, clock_shared: bool) -> Figures:
    """MB/s = bytes / (receiver's last END - sender's start), as the 64 KiB workload;
    first-to-END = bytes / (receiver's last END - receiver's first byte)."""
    total = int(received["bytes"])
    elapsed, first_to_end, sender = transfer_times(sent, received, clock_shared)
    figures: Figures = {
        "bytes": total,
        "streams": int(received["streams"]),
        "seconds": elapsed,
        "mb_per_s": total / elapsed / 1e6,
        "first_to_end_seconds": first_to_end,
        "first_to_end_mb_per_s": total / first_to_end / 1e6,
        "sender_seconds": sender,
    }
    if "udp_rcvbuf_errors" in received:
        figures["udp_rcvbuf_errors"] = int(received["udp_rcvbuf_errors"])
    return figures


async def udx_sender_stats(p: UdxPair, a_ids: list[int], opts: Options) -> Figures:
    """The first sending stream's MTU, smoothed RTT, window and counters (retransmits,
    RTOs; JS: fast recoveries, Python: loss events), those the stack reports."""
    stats = await p.a.call({"cmd": "stats", "ids": a_ids[:1]}, "stats", opts.sizes.timeout)
    out: Figures = {}
    for stream in stats.get("streams") or []:
        for key in (
            "mtu",
            "srtt_us",
            "cwnd",
            "retransmits",
            "rto_count",
            "fast_recoveries",
            "loss_events",
            "packets_transmitted",
        ):
            value = stream.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"sender_{key}"] = value
    return out


async def udx_warm_up(p: UdxPair, opts: Options) -> None:
    """An untimed transfer of ``udx_warmup_bytes`` (if any) on a stream of its own."""
    if opts.sizes.udx_warmup_bytes:
        a_ids, b_ids = await open_udx_streams(p, 1, opts)
        await udx_transfer(p, a_ids, b_ids, opts.sizes.udx_warmup_bytes, opts)


async def run_udx_bulk(workload: str, pair: str, opts: Options) -> Figures:
    """One stream, A sends udx_bulk_bytes to B, after an untimed warm-up transfer on a
    stream of its own (same sockets)."""
    s = opts.sizes
    async with udx_pair(workload, pair, opts) as p:
        await udx_warm_up(p, opts)
        a_ids, b_ids = await open_udx_streams(p, 1, opts)
        sent, received = await udx_transfer(p, a_ids, b_ids, s.udx_bulk_bytes, opts)
        figures = udx_transfer_figures(sent, received, p.clock_shared)
        figures["warmup_bytes"] = s.udx_warmup_bytes
        figures.update(await udx_sender_stats(p, a_ids, opts))
        return figures


async def run_udx_streams(workload: str, pair: str, opts: Options) -> Figures:
    """udx_streams streams at once on one socket pair, udx_stream_bytes each."""
    s = opts.sizes
    async with udx_pair(workload, pair, opts) as p:
        await udx_warm_up(p, opts)
        a_ids, b_ids = await open_udx_streams(p, s.udx_streams, opts)
        sent, received = await udx_transfer(p, a_ids, b_ids, s.udx_stream_bytes, opts)
        figures = udx_transfer_figures(sent, received, p.clock_shared)
        figures["bytes_per_stream"] = s.udx_stream_bytes
        return figures


async def run_udx_round_trip(workload: str, pair: str, opts: Options) -> Figures:
    """1-byte ping-pong on one stream: A writes 1 byte and waits for it to come back; B
    writes back what it receives from its data callback."""
    s = opts.sizes
    async with udx_pair(workload, pair, opts) as p:
        a_ids, _b_ids = await open_udx_streams(p, 1, opts, b_mode="echo")
        pinged = await p.a.call(
            {"cmd": "ping", "id": a_ids[0], "rounds": s.udx_rtt_rounds, "warmup": s.udx_rtt_warmup},
            "pinged",
            s.udx_timeout,
        )
        return round_trip_figures(pinged, s.udx_rtt_warmup)


def lossy_relay_class() -> Any:
    """tests/udxrelay.py's LossyRelay (seeded loss, duplication, reordering)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        from udxrelay import LossyRelay
    except ImportError as exc:
        raise WorkerError(f"udx_lossy needs tests/udxrelay.py (LossyRelay): {exc}") from exc
    return LossyRelay


async def run_udx_lossy(workload: str, pair: str, opts: Options) -> Figures:
    """Bulk through a relay in this (the runner's) process that drops udx_loss of the
    datagrams in each direction, seeded (UDX_LOSS_SEED), fresh for every run. A's stream
    talks to the relay's A-facing port, B's to its B-facing port. The warm-up transfer goes
    direct, so the relay's draws start with the timed transfer."""
    s = opts.sizes
    async with udx_pair(workload, pair, opts) as p:
        await udx_warm_up(p, opts)
        relay_class = lossy_relay_class()
        p.relay = await relay_class.start(
            target_a=(HOST, p.port_a),
            target_b=(HOST, p.port_b),
            loss=s.udx_loss,
            seed=UDX_LOSS_SEED,
        )
        a_ids, b_ids = await open_udx_streams(
            p,
            1,
            opts,
            port_for_a=p.relay.address_for_a[1],
            port_for_b=p.relay.address_for_b[1],
        )
        cpu0, wall0 = time.process_time(), time.monotonic()
        sent, received = await udx_transfer(p, a_ids, b_ids, s.udx_lossy_bytes, opts)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        figures = udx_transfer_figures(sent, received, p.clock_shared)
        a_to_b, b_to_a = p.relay.a_to_b, p.relay.b_to_a
        figures.update(
            {
                "loss": s.udx_loss,
                "relay_a_to_b_datagrams": a_to_b.received,
                "relay_a_to_b_lost": a_to_b.lost,
                "relay_b_to_a_datagrams": b_to_a.received,
                "relay_b_to_a_lost": b_to_a.lost,
                "relay_cpu_share": cpu / wall if wall > 0 else 0.0,
            }
        )
        figures.update(await udx_sender_stats(p, a_ids, opts))
        return figures


def runner_for(workload: str, opts: Options) -> Callable[[str], Awaitable[Figures]]:
    """One run of ``workload`` for a pair. The DHT workloads' runner (benchmarks/dht.py)
    also has ``combine(runs)``, ``describe(runs)``, ``notes(result)`` and ``aclose()``."""
    s = opts.sizes
    if workload in DHT_WORKLOADS:
        from benchmarks.dht import DhtWorkload

        return DhtWorkload(workload, opts)
    if workload == "swarm_join":
        from benchmarks.swarm import SwarmJoinWorkload

        return SwarmJoinWorkload(workload, opts)
    table: dict[str, Callable[[str], Awaitable[Figures]]] = {
        "throughput_64b": lambda p: run_throughput(
            "throughput_64b", p, opts, SMALL, s.small_count, s.small_warmup
        ),
        "throughput_64k": lambda p: run_throughput(
            "throughput_64k", p, opts, LARGE, s.large_count, s.large_warmup
        ),
        "round_trip": lambda p: run_round_trip("round_trip", p, opts),
        "round_trip_loop": lambda p: run_round_trip("round_trip_loop", p, opts),
        "fan_out": lambda p: run_fan_out("fan_out", p, opts),
        "scale": lambda p: run_scale("scale", p, opts),
        "udx_bulk": lambda p: run_udx_bulk("udx_bulk", p, opts),
        "udx_round_trip": lambda p: run_udx_round_trip("udx_round_trip", p, opts),
        "udx_streams": lambda p: run_udx_streams("udx_streams", p, opts),
        "udx_lossy": lambda p: run_udx_lossy("udx_lossy", p, opts),
    }
    return table[workload]


def headline(workload: str, figures: Figures) -> str:
    if workload in DHT_WORKLOADS:
        from benchmarks.dht import headline as dht_headline

        return dht_headline(workload, figures)
    if workload == "swarm_join":
        from benchmarks.swarm import headline as swarm_headline

        return swarm_headline(figures)
    if workload == "throughput_64b" or workload == "fan_out":
        return f"{figures['msgs_per_s']:,.0f} msg/s"
    if workload == "throughput_64k":
        return f"{figures['mb_per_s']:,.1f} MB/s"
    if workload in ("udx_bulk", "udx_lossy"):
        return f"{figures['mb_per_s']:,.1f} MB/s"
    if workload == "udx_streams":
        return f"{figures['mb_per_s']:,.1f} MB/s, all done in {figures['seconds']:.2f} s"
    if workload in ROUND_TRIPS or workload == "udx_round_trip":
        return f"p50 {figures['p50_us']:,.0f} us, p99 {figures['p99_us']:,.0f} us"
    return (
        f"{figures['client_kib_per_peer']:,.1f} KiB/peer, connect {figures['connect_s']:.2f} s,"
        f" joined {figures['all_joined_s']:.2f} s"
    )


# -- results ----------------------------------------------------------------------------


FloorMeasure = Callable[[str, int, str, tuple[int, int] | None, bool], Awaitable[dict[str, float]]]
"""``benchmarks.floor.measure`` or ``measure_udp``: (stack, rounds, node, pin, uvloop)."""


def pair_floor_us(pair: str, floor: dict[str, Any], task_echo: bool) -> float:
    """A pair's event-loop floor in µs: its pinging side's half of that runtime's bare
    ping-pong plus its echo's half of its own. With ``task_echo`` (the loop workload) a
    Python echo replies from a task, as ``async for`` does, and its half is the bare
    ping-pong with a task echo less the pinger's half: the task switch is the loop's
    cost, not the stack's (so py->py's floor is that ping-pong's whole)."""
    ping, echo = pair.split("->")
    echo_half = floor[echo]["p50_us"] / 2
    if task_echo and echo == "py":
        echo_half = floor["py_task_echo"]["p50_us"] - floor["py"]["p50_us"] / 2
    result: float = floor[ping]["p50_us"] / 2 + echo_half
    return result


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


RunOne = Callable[[str, str], Awaitable[Figures]]
"""One run of a round-trip workload for a pair: (workload, pair) -> figures."""

MeasureFloors = Callable[[], Awaitable[dict[str, Any]]]
"""One measurement of each event-loop floor a round trip is compared with, by key."""


async def tcp_floors(opts: Options, task_echo: bool) -> dict[str, Any]:
    """The bare TCP ping-pong on Node and on Python (and, with ``task_echo``, Python with
    its echo replying from a task, as ``async for`` does)."""
    pin = pin_cpus() if opts.pin else None
    rounds = opts.sizes.rtt_rounds
    floor: dict[str, Any] = {}
    for stack in ("js", "py"):
        floor[stack] = await event_loop_floor(stack, rounds, opts.node, pin, opts.uvloop)
    if task_echo:
        floor["py_task_echo"] = await event_loop_floor(
            "py", rounds, opts.node, pin, opts.uvloop, task_echo=True
        )
    return floor


async def udp_floors(opts: Options) -> dict[str, Any]:
    """The bare UDP ping-pong on Node and on Python: the floor under the UDX round trip."""
    pin = pin_cpus() if opts.pin else None
    rounds = opts.sizes.udx_rtt_rounds
    return {
        stack: await event_loop_floor_udp(stack, rounds, opts.node, pin, opts.uvloop)
        for stack in ("js", "py")
    }


async def measure_round_trips(
    label: str,
    workloads: list[str],
    pairs: list[str],
    rounds: int,
    results: dict[str, Any],
    errors: list[dict[str, str]],
    run_one: RunOne,
    measure_floors: MeasureFloors,
) -> None:
    """Round-trip workloads and their event-loop floors, in interleaved rounds.

    Each round runs every workload for every pair once, then each floor once, so
    a pair's figure and the floor it is compared with are measured seconds apart,
    under the same conditions. A cell's figures are the medians over the rounds;
    its cost above the floor (``stack_us``) is the median of each round's p50 less
    that round's floor. A round trip's p50 moves by several µs from one process to
    the next, which a best-of pick would keep, and the cost above the floor is a
    difference of two such figures.
    """
    floors: list[dict[str, Any] | None] = []  # by round; None where the floor failed
    runs: dict[tuple[str, str], list[tuple[int, Figures]]] = {}  # (round, figures)
    failed: set[tuple[str, str]] = set()
    for workload in workloads:
        results[workload] = {"pairs": {}}
    for number in range(1, rounds + 1):
        t0 = time.monotonic()
        print(f"[{label} {number}/{rounds}]", end="", flush=True)
        for workload in workloads:
            for pair in pairs_for(workload, pairs):
                if (workload, pair) in failed:
                    continue
                try:
                    figures = await run_one(workload, pair)
                except Exception as exc:
                    message = f"{type(exc).__name__}: {exc}"
                    print(f" {workload} {pair} FAILED: {message};", end="", flush=True)
                    errors.append({"workload": workload, "pair": pair, "error": message})
                    results[workload]["pairs"][pair] = {"error": message}
                    failed.add((workload, pair))
                    continue
                runs.setdefault((workload, pair), []).append((number - 1, figures))
                print(f" {workload} {pair} {figures['p50_us']:.0f};", end="", flush=True)
        try:
            floor = await measure_floors()
        except Exception as exc:
            print(f" floor FAILED: {type(exc).__name__}: {exc}", flush=True)
            floors.append(None)
            continue
        floors.append(floor)
        task = floor.get("py_task_echo")
        print(
            f" floor node {floor['js']['p50_us']:.0f}, python {floor['py']['p50_us']:.0f}"
            + (f", task echo {task['p50_us']:.0f}" if task else "")
            + f" (µs p50, {time.monotonic() - t0:.1f} s)",
            flush=True,
        )
    for workload in workloads:
        task_echo = workload == "round_trip_loop"
        for pair in pairs_for(workload, pairs):
            cell = runs.get((workload, pair))
            if not cell or (workload, pair) in failed:
                continue
            figures = median_figures([run for _, run in cell])
            entry: dict[str, Any] = {"figures": figures, "runs": [run for _, run in cell]}
            paired = [(run, found) for i, run in cell if (found := floors[i]) is not None]
            if paired:  # each run against the floor of its own round
                bases = [pair_floor_us(pair, found, task_echo) for _, found in paired]
                stacks = [
                    run["p50_us"] - base for (run, _), base in zip(paired, bases, strict=True)
                ]
                figures["floor_us"] = median(bases)
                figures["stack_us"] = median(stacks)
                entry["stack_us_rounds"] = stacks
            results[workload]["pairs"][pair] = entry
            print(f"  {workload:<15} {pair:<7} median {headline(workload, figures)}", flush=True)
    measured = [floor for floor in floors if floor is not None]
    if measured:
        summary: dict[str, Any] = {
            key: median_figures([floor[key] for floor in measured]) for key in measured[0]
        }
        summary["ratio_p50"] = summary["py"]["p50_us"] / summary["js"]["p50_us"]
        summary["rounds"] = floors
        for workload in workloads:
            results[workload]["floor"] = summary


def add_ratios(results: dict[str, Any]) -> None:
    """Each pair's figures divided by js->js's, per workload (``ratio_vs_js``); none where
    js->js's figure is 0 or below (udx-native's cost above the UDP floor can be)."""
    for workload in results.values():
        pairs = workload["pairs"]
        base = pairs.get(BASELINE, {}).get("figures")
        for pair, entry in pairs.items():
            figures = entry.get("figures")
            if not figures or not base or pair == BASELINE:
                continue
            entry["ratio_vs_js"] = {
                k: v / base[k]
                for k, v in figures.items()
                if isinstance(v, int | float)
                and isinstance(base.get(k), int | float)
                and base[k] > 0
            }


def evaluate_targets(results: dict[str, Any], uvloop: bool = False) -> list[dict[str, Any]]:
    out = []
    for template, workload, metric, what, op, bound in TARGETS:
        if uvloop and workload in ROUND_TRIPS and metric == "p50_us":
            bound = UVLOOP_P50_BOUND
        label = template.format(bound=f"{bound:g}")
        pairs = results.get(workload, {}).get("pairs", {})
        value: float | None = None
        if what.startswith("ratio"):
            ratio_of = what.partition(":")[2] or "py->py"
            value = pairs.get(ratio_of, {}).get("ratio_vs_js", {}).get(metric)
        else:
            value = pairs.get(what, {}).get("figures", {}).get(metric)
        met: bool | None = None
        if value is not None and value == value:
            met = value >= bound if op == ">=" else value <= bound
        out.append(
            {
                "target": label,
                "workload": workload,
                "metric": metric,
                "of": f"{what.partition(':')[2] or 'py->py'} / js->js"
                if what.startswith("ratio")
                else what,
                "bound": f"{op} {bound:g}",
                "value": value,
                "met": met,
            }
        )
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "-"
    if unit in ("msg/s",):
        return f"{value:,.0f}"
    if unit == "us":
        return f"{value:,.0f}"
    if unit in ("MB/s", "KiB"):
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def render_table(results: dict[str, Any], targets: list[dict[str, Any]], pairs: list[str]) -> str:
    header = ["metric", "unit", *pairs, *[f"{p}/js" for p in pairs if p != BASELINE]]
    rows = [header]
    for workload, metric, unit, higher, label in METRICS:
        entry = results.get(workload)
        if entry is None:
            continue
        row = [label, unit + (" ^" if higher else " v")]
        for pair in pairs:
            figs = entry["pairs"].get(pair, {}).get("figures")
            row.append(fmt(figs.get(metric) if figs else None, unit))
        for pair in pairs:
            if pair == BASELINE:
                continue
            ratio = entry["pairs"].get(pair, {}).get("ratio_vs_js", {}).get(metric)
            row.append("-" if ratio is None or ratio != ratio else f"{ratio:.2f}x")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("^ higher is better, v lower is better; A->B: A sends / pings / dials in.")
    lines.append("ratios: the pair's figure / js->js's figure (same unit).")
    for entry in results.values():
        if entry.get("notes"):
            lines.append("")
            lines.extend(entry["notes"])
    shown_targets = [t for t in targets if t["workload"] in results]
    if shown_targets:
        lines.append("")
        lines.append("targets (py->py):")
        for t in shown_targets:
            state = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
            value = t["value"]
            shown = "-" if value is None or value != value else f"{value:.2f}"
            unit = "x" if t["of"].endswith("js->js") else " KiB"
            lines.append(f"  [{state:>7}] {t['target']}: {shown}{unit}")
    return "\n".join(lines)


def machine_info(opts: Options, started: dict[str, Event]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "node": node_version(opts.node),
        "uvloop_requested": opts.uvloop,
        "uvloop": opts.uvloop,
        "js_transport": opts.js_transport,
        "js_pace": opts.extra.get("pace", 0),
        "pinned_cpus": dict(zip(("A", "B"), pin_cpus(), strict=True)) if opts.pin else None,
        "pythonpath": os.environ.get("PYTHONPATH"),
        "load_average_1m_at_start": opts.extra.get("load_start"),
        "load_average_1m_at_end": os.getloadavg()[0],
        "quick": opts.quick,
        "peersockets_commit": git_commit(),
        "js_packages": js_package_versions(),
        "python_packages": python_package_versions(),
    }
    py = started.get("py")
    if py is not None:
        info["python_worker_loop"] = py.get("loop")
        info["uvloop"] = py.get("loop", "").startswith("uvloop")
    info["clocks_shared"] = all(e.get("clock_shared", False) for e in started.values())
    return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def node_version(node: str) -> str:
    try:
        return subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=20
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "peersockets"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def js_package_versions() -> dict[str, str]:
    out = {}
    for name in (
        "hyperdrive",
        "hypercore",
        "corestore",
        "protomux",
        "@hyperswarm/secret-stream",
        "udx-native",
    ):
        try:
            meta = json.loads((JS_PACKAGES / "node_modules" / name / "package.json").read_text())
            out[name] = str(meta.get("version"))
        except (OSError, ValueError):
            out[name] = "missing"
    return out


def python_package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("peersockets", "pynacl", "cryptography", "uvloop"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="peersockets vs the JavaScript hyperdrive stack, same machine, same run.",
    )
    parser.add_argument("--quick", action="store_true", help="every workload, small (seconds)")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these workloads: {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--pairs",
        metavar="PAIR[,PAIR]",
        help=f"run only these pairs: {', '.join(PAIRS)} (quoted: --pairs 'py->py,js->js')",
    )
    parser.add_argument("--json", metavar="PATH", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--uvloop", action="store_true", help="Python workers on uvloop")
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="run each workload/pair N times and keep the best (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--js-transport",
        choices=["direct", "pipe"],
        default="direct",
        help="JS: NoiseSecretStream on the socket (hyperswarm's way) or replicate().pipe(socket)",
    )
    parser.add_argument(
        "--js-pace",
        type=int,
        default=0,
        metavar="N",
        help="JS senders also yield to the event loop every N messages (default 0: only on drain)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin worker A to one core and worker B to another (taskset)",
    )
    parser.add_argument(
        "--count-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="multiply the timed message counts and rounds by X (e.g. for a longer profile)",
    )
    parser.add_argument("--cprofile", metavar="DIR", type=Path, help="cProfile Python send/recv")
    parser.add_argument(
        "--py-spy", metavar="DIR", type=Path, help="py-spy Python workers' timed throughput phase"
    )
    return parser.parse_args(argv)


def pick(values: str | None, allowed: list[str], what: str) -> list[str]:
    if not values:
        return list(allowed)
    chosen = [v.strip() for v in values.split(",") if v.strip()]
    for v in chosen:
        if v not in allowed:
            hint = " (quote the '>' in a shell: 'py->py')" if v.endswith("-") else ""
            raise SystemExit(f"unknown {what} {v!r}; choose from {', '.join(allowed)}{hint}")
    return [v for v in allowed if v in chosen]


def pairs_for(workload: str, pairs: list[str]) -> list[str]:
    """The pairs ``workload`` runs, of those asked for."""
    allowed = WORKLOAD_PAIRS.get(workload)
    return [p for p in pairs if allowed is None or p in allowed]


def median_figures(runs: list[Figures]) -> Figures:
    """The median of every figure over the runs of one cell."""
    return {key: median([r[key] for r in runs if key in r]) for key in runs[0]}


def better(workload: str, new: Figures, old: Figures) -> bool:
    key, higher = {
        "throughput_64b": ("msgs_per_s", True),
        "throughput_64k": ("mb_per_s", True),
        "round_trip": ("p50_us", False),
        "round_trip_loop": ("p50_us", False),
        "fan_out": ("msgs_per_s", True),
        "scale": ("client_kib_per_peer", False),
        "udx_bulk": ("mb_per_s", True),
        "udx_round_trip": ("p50_us", False),
        "udx_streams": ("mb_per_s", True),
        "udx_lossy": ("mb_per_s", True),
        "dht_connect": ("p50_ms", False),
        "dht_throughput": ("dht_64b_msgs_per_s", True),
        "swarm_join": ("p50_ms", False),
    }[workload]
    return new[key] > old[key] if higher else new[key] < old[key]


async def amain(args: argparse.Namespace) -> int:
    node = shutil.which("node")
    if node is None:
        print("node not found on PATH: the JavaScript workers need Node.js", file=sys.stderr)
        return 2
    if (
        not (JS_PACKAGES / "node_modules" / "hyperdrive").is_dir()
        or not (JS_PACKAGES / "node_modules" / "udx-native").is_dir()
    ):
        print(f"JavaScript packages missing: run `npm ci` in {JS_PACKAGES}", file=sys.stderr)
        return 2
    uvloop = args.uvloop
    if uvloop:
        try:
            import uvloop as _uvloop  # noqa: F401
        except ImportError:
            print("--uvloop: uvloop is not installed; using asyncio's loop", file=sys.stderr)
            uvloop = False
    workloads = pick(args.only, WORKLOADS, "workload")
    pairs = pick(args.pairs, PAIRS, "pair")
    results_dir = args.json.parent
    sizes = QUICK if args.quick else FULL
    if args.count_scale != 1.0:
        x = max(args.count_scale, 0.001)
        sizes = dataclasses.replace(
            sizes,
            small_count=max(1, round(sizes.small_count * x)),
            large_count=max(1, round(sizes.large_count * x)),
            rtt_rounds=max(1, round(sizes.rtt_rounds * x)),
            fan_count=max(1, round(sizes.fan_count * x)),
            udx_bulk_bytes=max(1, round(sizes.udx_bulk_bytes * x)),
            udx_rtt_rounds=max(1, round(sizes.udx_rtt_rounds * x)),
            udx_stream_bytes=max(1, round(sizes.udx_stream_bytes * x)),
            udx_lossy_bytes=max(1, round(sizes.udx_lossy_bytes * x)),
            dht_connects=max(1, round(sizes.dht_connects * x)),
            dht_small_count=max(1, round(sizes.dht_small_count * x)),
            dht_large_count=max(1, round(sizes.dht_large_count * x)),
            swarm_joins=max(1, round(sizes.swarm_joins * x)),
        )
    opts = Options(
        sizes=sizes,
        quick=args.quick,
        uvloop=uvloop,
        js_transport=args.js_transport,
        log_dir=results_dir / "logs",
        cprofile_dir=args.cprofile,
        py_spy_dir=args.py_spy,
        node=node,
        pin=not args.no_pin and pinning_available(),
        extra={"pace": max(0, args.js_pace)},
    )
    repeat = max(1, args.repeat if args.repeat is not None else (1 if args.quick else 3))
    load = os.getloadavg()[0]
    opts.extra["load_start"] = load
    if load > 0.5:
        print(
            f"warning: load average {load:.2f} before starting: other work on this machine"
            " will make the figures noisy",
            flush=True,
        )
    round_trips = [w for w in ROUND_TRIPS if w in workloads]
    udx_round_trips = [w for w in ("udx_round_trip",) if w in workloads]
    rt_rounds = max(
        1, args.repeat if args.repeat is not None else (1 if args.quick else ROUND_TRIP_ROUNDS)
    )
    others = [w for w in workloads if w not in ROUND_TRIPS and w not in udx_round_trips]
    total = sum(len(pairs_for(w, pairs)) for w in others)
    print(
        f"peersockets benchmarks ({'quick' if args.quick else 'full'}): {len(workloads)} workloads"
        f" x {len(pairs)} pairs{f' x {repeat}' if repeat > 1 else ''}"
        + (
            f" (round trips: {rt_rounds} interleaved rounds)"
            if round_trips or udx_round_trips
            else ""
        )
        + f"; cpus={os.cpu_count()},"
        f" python {platform.python_version()}{' + uvloop' if uvloop else ''},"
        f" node {node_version(node)}"
        + (", workers pinned A->cpu{} B->cpu{}".format(*pin_cpus()) if opts.pin else ""),
        flush=True,
    )
    results: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    started_info: dict[str, Event] = {}
    began = time.monotonic()
    n = 0
    for workload in others:
        results[workload] = {"pairs": {}}
        run = runner_for(workload, opts)
        for pair in pairs_for(workload, pairs):
            n += 1
            prefix = f"[{n:>2}/{total}] {workload:<15} {pair:<7}"
            print(f"{prefix} ...", end="", flush=True)
            t0 = time.monotonic()
            best: Figures | None = None
            runs: list[Figures] = []
            try:
                for _ in range(repeat):
                    figures = await run(pair)
                    runs.append(figures)
                    if best is None or better(workload, figures, best):
                        best = figures
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                print(f" FAILED ({time.monotonic() - t0:.1f} s)\n    {message}", flush=True)
                errors.append({"workload": workload, "pair": pair, "error": message})
                results[workload]["pairs"][pair] = {"error": message}
                continue
            assert best is not None
            combine = getattr(run, "combine", None)
            if combine is not None:
                best = combine(runs)
            entry: dict[str, Any] = {"figures": best}
            describe = getattr(run, "describe", None)
            if describe is not None:
                entry["paths"] = describe(runs)
            if repeat > 1:
                entry["runs"] = runs
                entry["median"] = median_figures(runs)
            results[workload]["pairs"][pair] = entry
            print(f" {headline(workload, best)} ({time.monotonic() - t0:.1f} s)", flush=True)
        aclose = getattr(run, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
        notes = getattr(run, "notes", None)
        if notes is not None:
            results[workload]["notes"] = notes(results[workload])
    if round_trips:
        await measure_round_trips(
            "round trips",
            round_trips,
            pairs,
            rt_rounds,
            results,
            errors,
            lambda workload, pair: run_round_trip(workload, pair, opts),
            functools.partial(tcp_floors, opts, "round_trip_loop" in round_trips),
        )
    if udx_round_trips:
        await measure_round_trips(
            "UDX round trips",
            udx_round_trips,
            pairs,
            rt_rounds,
            results,
            errors,
            lambda workload, pair: run_udx_round_trip(workload, pair, opts),
            functools.partial(udp_floors, opts),
        )
    # versions as the workers reported them
    for stack in ("py", "js"):
        with contextlib.suppress(Exception):
            w = Worker(stack, f"{stack} probe", opts.log_dir / f"probe-{stack}.log")
            await w.start(worker_argv(stack, opts, None), opts.sizes.timeout)
            started_info[stack] = w.started
            await w.close()
    add_ratios(results)
    targets = evaluate_targets(results, opts.uvloop)
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": time.monotonic() - began,
        "machine": machine_info(opts, started_info),
        "sizes": dataclasses.asdict(opts.sizes),
        "repeat": repeat,
        "pick": "best of the repeats (highest throughput, lowest p50, lowest memory);"
        " round trips: medians of interleaved rounds, each with its floors",
        "round_trip_rounds": rt_rounds if round_trips or udx_round_trips else 0,
        "baseline": BASELINE,
        "pairs": pairs,
        "workloads": results,
        "targets": targets,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    print()
    if args.quick:
        print("quick run: these figures only show that the harness works; they mean nothing.\n")
    print(render_table(results, targets, pairs))
    print()
    print(f"wrote {args.json} ({time.monotonic() - began:.0f} s)")
    if errors:
        print(f"{len(errors)} run(s) failed; worker logs in {opts.log_dir}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
