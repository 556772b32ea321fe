"""Benchmark worker: a Python peersockets app in a drive's swarm, driven by benchmarks/run.py.

    python benchmarks/swarm_worker.py [--uvloop] [--cprofile PATH]

The same JSON-lines protocol as benchmarks/js/swarm_worker.mjs (commands on stdin,
one at a time, in order; events on stdout; the commands are described at the top
of that file and in benchmarks/README.md), for the ``swarm_join`` workload:

- ``own``: the drive's "owner" (Python holds no drive: the key given, else a random
  one): ``Swarm(dht=DHT(bootstrap, host="127.0.0.1"))``, ``Peersockets(swarm,
  key)``, ``Topic`` on the topic whose sync ``on_message`` callback echoes every
  message to its sender (``send_nowait``, as the JavaScript owner's ``onmessage`` →
  ``ext.send``), then ``await swarm.flush()`` (announced, looked up, waiting);
- ``join_time``: W + N joins in sequence, each a new peer: ``t0``; a new ``Swarm``
  (new key pair) on a new ``DHT(bootstrap, host="127.0.0.1")``, ``Peersockets(swarm,
  key)``, ``ps.join(topic)``, ``ps.watch()``; at the owner's join event ``await
  topic.send(peer_id, payload)``, then ``async for msg in topic`` until the same
  bytes come back from it: the time since ``t0``. Then (untimed) ``ps.close()`` and
  ``swarm.close()`` (unannounces, closes the DHT node).

``Swarm(bootstrap=[...])`` would bind its DHT node to 0.0.0.0; the benchmarks stay on
127.0.0.1, so the worker gives the swarm its own ``DHT(bootstrap=..., host=...)``
(``Swarm(dht=DHT(...))``, docs/dht.md), made after ``t0`` as ``Swarm`` would make it.

The phases of each join (ms from ``t0``) come from the swarm's discovery events
(``swarm.add_discovery_listener``): "bootstrapped" ("started"), "announced", "lookup"
(the lookup of the drive's discovery key finished), "dial" ("connecting" to the
owner), "connection" ("connected": ``dht.connect`` returned), then "peer" (the
owner's join event) and "echo". The path of the connection is what the swarm's DHT
counted (``swarm.dht.connects``). ``connections``: the dials to the owner that
connected by the echo (more than 1: one was lost and made again); ``teardown_ms``:
how long each leave took.

``--cprofile PATH`` profiles the ``join_time`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# the runner starts this file as a script: make the benchmarks package importable
sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks.worker_io import CommandHandler, CommandProfiler, emit, now, run_worker
from peersockets import Peersockets, Swarm
from peersockets.dht import DHT
from peersockets.hyperswarm import DiscoveryEvent

HOST = "127.0.0.1"

PHASE_EVENTS = {"started": "bootstrapped", "announced": "announced", "lookup": "lookup"}
"""Discovery events (of any key) whose first occurrence is a phase."""
OWNER_EVENTS = {"connecting": "dial", "connected": "connection"}
"""Discovery events about the owner's key whose first occurrence is a phase."""
PHASES = ("bootstrapped", "announced", "lookup", "dial", "connection", "peer", "echo")


def bootstrap_of(cmd: dict[str, Any]) -> list[tuple[str, int]]:
    return [(str(host), int(port)) for host, port in cmd["bootstrap"]]


class Worker:
    """The owner (``own``) or the joiner (``join_time``) of one run."""

    def __init__(self, profile_path: str | None) -> None:
        self.profiler = CommandProfiler(profile_path)
        self.owner: tuple[Swarm, Peersockets] | None = None
        self.echoed = 0

    def handlers(self) -> dict[str, CommandHandler]:
        return {"own": self.own, "join_time": self.join_time, "stats": self.stats}

    # -- commands -------------------------------------------------------------------

    async def own(self, cmd: dict[str, Any]) -> None:
        key = bytes.fromhex(cmd["key"]) if cmd.get("key") else os.urandom(32)
        t0 = now()
        swarm = Swarm(dht=DHT(bootstrap=bootstrap_of(cmd), host=HOST))
        ps = Peersockets(swarm, key)
        self.owner = (swarm, ps)
        topic = ps.join(cmd["topic"])
        send = topic.send_nowait

        def echo(msg: Any) -> None:
            self.echoed += 1
            send(msg.peer_id, msg.message)

        topic.on_message(echo)
        await swarm.flush()
        emit(
            {
                "event": "owning",
                "key": key.hex(),
                "discovery_key": ps.discovery_key.hex(),
                "public_key": swarm.public_key.hex(),
                "ms": (now() - t0) / 1e6,
            }
        )

    async def join_time(self, cmd: dict[str, Any]) -> None:
        key = bytes.fromhex(cmd["key"])
        owner = bytes.fromhex(cmd["owner"])
        payload = b"a" * int(cmd["size"])
        count = int(cmd["count"])
        warmup = int(cmd.get("warmup", 0))
        out: dict[str, list[Any]] = {
            "ms": [],
            "cold_ms": [],
            "phases": [],
            "paths": [],
            "connections": [],
            "teardown_ms": [],
        }
        self.profiler.enable()
        try:
            for i in range(warmup + count):
                ms, phases, path, connections, teardown = await self._one_join(
                    cmd, key, owner, payload
                )
                out["teardown_ms"].append(teardown)
                if i < warmup:
                    out["cold_ms"].append(ms)
                    continue
                out["ms"].append(ms)
                out["phases"].append(phases)
                out["paths"].append(path)
                out["connections"].append(connections)
        finally:
            self.profiler.disable()
        emit({"event": "join_times", **out})

    async def stats(self, cmd: dict[str, Any]) -> None:
        emit({"event": "stats", "echoed": self.echoed})

    async def close(self) -> None:
        if self.owner is not None:
            swarm, ps = self.owner
            self.owner = None
            with contextlib.suppress(Exception):
                await ps.close()
            with contextlib.suppress(Exception):
                await swarm.close()
        self.profiler.dump()

    # -- one join -------------------------------------------------------------------

    async def _one_join(
        self, cmd: dict[str, Any], key: bytes, owner: bytes, payload: bytes
    ) -> tuple[float, dict[str, float | None], str, int, float]:
        stamps: dict[str, int] = {}
        connected = 0  # connections to the owner made by the echo

        def on_discovery(event: DiscoveryEvent) -> None:
            nonlocal connected
            if event.kind == "connected" and event.public_key == owner and "echo" not in stamps:
                connected += 1
            phase = PHASE_EVENTS.get(event.kind)
            if phase is None and event.public_key == owner:
                phase = OWNER_EVENTS.get(event.kind)
            if phase is not None and phase not in stamps:
                stamps[phase] = now()

        t1: int | None = None  # when the teardown began
        t0 = now()
        swarm = Swarm(dht=DHT(bootstrap=bootstrap_of(cmd), host=HOST))
        try:
            swarm.add_discovery_listener(on_discovery)
            ps = Peersockets(swarm, key)
            try:
                topic = ps.join(cmd["topic"])
                async with asyncio.timeout(float(cmd["timeout"])):
                    async for event in ps.watch():
                        if event.type == "join" and event.public_key == owner:
                            peer_id = event.peer_id
                            break
                    else:
                        raise RuntimeError("peer events ended before the owner joined")
                    stamps["peer"] = now()
                    await topic.send(peer_id, payload)
                    async for msg in topic:
                        if msg.peer_id == peer_id and msg.message == payload:
                            break
                    else:
                        raise RuntimeError("the topic ended before the echo came")
                stamps["echo"] = now()
                by_echo = dict(stamps)  # the phases by the echo (later ones are not kept)
                dht = swarm.dht
                paths: Counter[str] = Counter(dht.connects) if dht is not None else Counter()
            finally:
                t1 = now()
                await ps.close()
        finally:
            t1 = now() if t1 is None else t1
            await swarm.close()
            teardown = (now() - t1) / 1e6
        phases = {
            name: ((by_echo[name] - t0) / 1e6 if name in by_echo else None) for name in PHASES
        }
        path = "+".join(sorted(paths)) if paths else "accepted"
        return (by_echo["echo"] - t0) / 1e6, phases, path, connected, teardown


if __name__ == "__main__":
    run_worker(__doc__, "join_time", Worker)
