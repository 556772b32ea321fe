"""The benchmark harness works end to end: ``python -m benchmarks --quick``.

It runs every workload, small, for every pair (JavaScript and Python workers
over loopback TCP, and over UDX on loopback UDP, one workload through a lossy
relay; DHT connects and topic messages over a DHT connection on a local
hyperdht testnet; peers joining a drive's swarm on such a testnet) and checks
that the JSON report holds a positive figure for each. It never asserts on
speed: timings belong to the benchmark's report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 240

EXPECTED = {
    "throughput_64b": ["msgs_per_s", "first_to_last_msgs_per_s", "mb_per_s"],
    "throughput_64k": ["mb_per_s", "first_to_last_mb_per_s", "msgs_per_s"],
    "round_trip": ["p50_us", "p99_us", "mean_us", "floor_us"],
    "round_trip_loop": ["p50_us", "p99_us", "mean_us", "floor_us"],
    "fan_out": ["msgs_per_s"],
    "scale": ["client_kib_per_peer", "server_kib_per_peer", "connect_s", "all_joined_s"],
    "udx_bulk": ["mb_per_s", "first_to_end_mb_per_s", "bytes"],
    "udx_round_trip": ["p50_us", "p99_us", "mean_us", "floor_us"],
    "udx_streams": ["mb_per_s", "seconds", "streams"],
    "udx_lossy": ["mb_per_s", "first_to_end_mb_per_s", "relay_a_to_b_datagrams"],
    "dht_connect": ["p50_ms", "p90_ms", "connects"],
    "dht_throughput": [
        f"{transport}_{size}_{metric}"
        for transport in ("tcp", "dht")
        for size in ("64b", "64k")
        for metric in ("msgs_per_s", "mb_per_s")
    ]
    + ["dht_over_tcp_64b", "dht_over_tcp_64k"],
    "swarm_join": ["p50_ms", "p90_ms", "joins", "dial_p50_ms", "peer_p50_ms", "cold_ms"],
}
PAIRS = ["js->js", "py->py", "py->js", "js->py"]
WORKLOAD_PAIRS = {"dht_throughput": ["js->js", "py->py"]}
"""Workloads that run some pairs only."""


def test_quick_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "targets (py->py)" in proc.stdout  # the table was printed
    report = json.loads(out.read_text())

    assert report["errors"] == []
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python"] and machine["node"].startswith("v")
    assert isinstance(machine["uvloop"], bool)

    for workload, metrics in EXPECTED.items():
        pairs = report["workloads"][workload]["pairs"]
        expected_pairs = WORKLOAD_PAIRS.get(workload, PAIRS)
        assert sorted(pairs) == sorted(expected_pairs), workload
        for pair in expected_pairs:
            figures = pairs[pair]["figures"]
            for metric in metrics:
                value = figures[metric]
                assert isinstance(value, int | float), (workload, pair, metric)
                assert value > 0, (workload, pair, metric, value)
            if pair != "js->js":
                ratios = pairs[pair]["ratio_vs_js"]
                for metric in metrics:
                    assert ratios[metric] > 0, (workload, pair, metric)

    # the stack's own cost, may be < 0
    for workload in ("round_trip", "round_trip_loop", "udx_round_trip"):
        for pair in PAIRS:
            figures = report["workloads"][workload]["pairs"][pair]["figures"]
            assert figures["stack_us"] == figures["p50_us"] - figures["floor_us"]

    sizes = report["sizes"]
    for pair in PAIRS:  # a transfer is only counted when every byte arrived, checked
        udx = report["workloads"]
        assert udx["udx_bulk"]["pairs"][pair]["figures"]["bytes"] == sizes["udx_bulk_bytes"]
        streams = udx["udx_streams"]["pairs"][pair]["figures"]
        assert streams["streams"] == sizes["udx_streams"]
        assert streams["bytes"] == sizes["udx_streams"] * sizes["udx_stream_bytes"]
        assert udx["udx_lossy"]["pairs"][pair]["figures"]["bytes"] == sizes["udx_lossy_bytes"]

    for pair in PAIRS:  # every timed connect is counted, and the path each took
        figures = report["workloads"]["dht_connect"]["pairs"][pair]["figures"]
        assert figures["connects"] == sizes["dht_connects"]
        paths = sum(v for k, v in figures.items() if k.startswith("path_"))
        assert paths == sizes["dht_connects"], figures
        assert report["workloads"]["dht_connect"]["pairs"][pair]["paths"]
    for pair in WORKLOAD_PAIRS["dht_throughput"]:
        figures = report["workloads"]["dht_throughput"]["pairs"][pair]["figures"]
        for transport in ("tcp", "dht"):
            assert figures[f"{transport}_64b_messages"] == sizes["dht_small_count"]
            assert figures[f"{transport}_64k_messages"] == sizes["dht_large_count"]

    for pair in PAIRS:  # every timed join is counted, with its path; the owner echoed each
        figures = report["workloads"]["swarm_join"]["pairs"][pair]["figures"]
        assert figures["joins"] == sizes["swarm_joins"]
        paths = sum(v for k, v in figures.items() if k.startswith("path_"))
        assert paths == sizes["swarm_joins"], figures
        assert figures["echoed"] == sizes["swarm_joins"] + sizes["swarm_join_warmup"]
        assert report["workloads"]["swarm_join"]["pairs"][pair]["paths"]

    targets = {t["target"]: t for t in report["targets"]}
    assert len(targets) == 14
    for target in targets.values():
        assert isinstance(target["met"], bool), target


def test_stack_cost_measures_round_trips_in_process() -> None:
    """``python -m benchmarks.stack_cost``: two peers joined by an in-process tap, every
    ping answered (a missing reply fails the run), a positive cost printed."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.stack_cost", "--rounds", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figure = done.stdout.strip().rsplit(": ", 1)[-1]
    assert done.stdout.startswith("stack CPU per round trip, both ends: ")
    assert figure.endswith(" us") and float(figure[:-3]) > 0


def test_round_trip_rounds_pair_each_run_with_its_own_floor() -> None:
    """Interleaved rounds: a cell's cost above the floor is the median of each round's p50
    less that round's floor; a round whose floor failed counts for the p50s only."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from benchmarks.run import measure_round_trips

    p50 = {("js->js", 0): 70.0, ("py->py", 0): 80.0, ("js->js", 1): 99.0, ("py->py", 1): 99.0,
           ("js->js", 2): 60.0, ("py->py", 2): 66.0}  # fmt: skip
    floors = [{"js": {"p50_us": 60.0}, "py": {"p50_us": 64.0}}, None, {"js": {"p50_us": 50.0}, "py": {"p50_us": 56.0}}]
    current = [0]  # the round under way: the floors end each one

    async def run_one(workload: str, pair: str) -> dict[str, float]:
        return {"p50_us": p50[pair, current[0]], "p99_us": 1.0}

    async def measure_floors() -> dict[str, object]:
        floor = floors[current[0]]
        current[0] += 1
        if floor is None:
            raise RuntimeError("floor worker died")
        return floor

    results: dict[str, object] = {}
    errors: list[dict[str, str]] = []
    asyncio.run(
        measure_round_trips(
            "test", ["round_trip"], ["js->js", "py->py"], 3, results, errors, run_one, measure_floors
        )
    )
    pairs = results["round_trip"]["pairs"]  # type: ignore[index]
    py = pairs["py->py"]
    assert py["figures"]["p50_us"] == 80.0  # median of 80, 99, 66
    assert py["stack_us_rounds"] == [80.0 - 64.0, 66.0 - 56.0]  # round 2 had no floor
    assert py["figures"]["stack_us"] == (16.0 + 10.0) / 2
    assert pairs["js->js"]["stack_us_rounds"] == [10.0, 10.0]
    assert results["round_trip"]["floor"]["rounds"][1] is None  # type: ignore[index]
    assert errors == []
