"""Benchmark worker: a Python peersockets peer process, driven by benchmarks/run.py.

    python benchmarks/py_worker.py [--uvloop] [--cprofile PATH]

The same JSON-lines protocol as benchmarks/js/worker.mjs (commands on stdin,
one at a time, in order; events on stdout); see that file and
benchmarks/README.md; the plumbing around the commands (command loop, events,
errors, background tasks, profiling) is benchmarks/worker_io.py, shared with
benchmarks/udx_worker.py. One process holds any number of "local peers": each
is its own Swarm (its own key pair) with its own Peersockets for the drive,
since a Swarm keeps one connection per remote key. A listening process has one
local peer with one TCP listener.

``--cprofile PATH`` profiles the ``send`` and ``recv`` commands only (from the
command to its last message) and writes pstats to PATH at exit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the runner starts this file as a script: make the benchmarks package importable
sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks.worker_io import (
    CommandHandler,
    CommandProfiler,
    Tasks,
    emit,
    now,
    run_worker,
)
from peersockets import Peersockets, Swarm
from peersockets.api import Topic, TopicMessage

HOST = "127.0.0.1"


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _echo_callback(topic: Topic) -> Callable[[TopicMessage], None]:
    send = topic.send_nowait

    def echo(msg: TopicMessage) -> None:
        send(msg.peer_id, msg.message)

    return echo


async def _echo_loop(topic: Topic) -> None:
    async for msg in topic:
        await topic.send(msg.peer_id, msg.message)


class LocalPeer:
    """One Swarm and its Peersockets for the drive (and the joined Topic, if any)."""

    __slots__ = ("ps", "swarm", "topic")

    def __init__(self, drive_key: bytes, topic: str | None) -> None:
        self.swarm = Swarm(dht=False)
        self.ps = Peersockets(self.swarm, drive_key)
        self.topic: Topic | None = self.ps.join(topic) if topic else None


class Worker:
    """The state of one worker process and its command handlers."""

    def __init__(self, profile_path: str | None) -> None:
        self.key = b""
        self.topic_name: str | None = None
        self.locals: list[LocalPeer] = []
        self.join_times: list[int] = []
        self.join_changed = asyncio.Event()
        self.tasks = Tasks()
        self.listening = False
        self.profiler = CommandProfiler(profile_path)

    # -- commands -------------------------------------------------------------------

    def handlers(self) -> dict[str, CommandHandler]:
        """The commands, by name ("exit" is ``serve``'s)."""
        return {
            "init": self.init,
            "listen": self.listen,
            "connect": self.connect,
            "wait_peers": self.wait_peers,
            "recv": self.recv,
            "send": self.send,
            "echo": self.echo,
            "ping": self.ping,
            "memory": self.memory,
        }

    async def init(self, cmd: dict[str, Any]) -> None:
        key = cmd.get("key")
        self.key = bytes.fromhex(key) if key else os.urandom(32)
        self.topic_name = cmd.get("topic") or None
        emit({"event": "init", "key": self.key.hex(), "rss": rss_bytes()})

    async def listen(self, cmd: dict[str, Any]) -> None:
        peer = LocalPeer(self.key, self.topic_name)
        self.locals.append(peer)
        self.listening = True
        self.tasks.spawn(self._watch(peer))
        _host, port = await peer.swarm.listen(HOST, 0)
        emit({"event": "listening", "port": port})

    async def connect(self, cmd: dict[str, Any]) -> None:
        total = int(cmd["peers"])
        concurrency = max(1, int(cmd.get("concurrency", 64)))
        port = int(cmd["port"])
        start = now()
        remaining = iter(range(total))

        async def lane() -> None:
            for _ in remaining:
                peer = LocalPeer(self.key, self.topic_name)
                self.locals.append(peer)
                await peer.swarm.connect(HOST, port)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, total)):
                group.create_task(lane())
        emit({"event": "connected", "start_ns": start, "end_ns": now()})

    async def wait_peers(self, cmd: dict[str, Any]) -> None:
        count = int(cmd["count"])
        if self.listening:
            # a listener: its watch() task records every join as it is reported
            while len(self.join_times) < count:
                self.join_changed.clear()
                await self.join_changed.wait()
            emit(
                {
                    "event": "peers",
                    "count": len(self.join_times),
                    "t_ns": self.join_times[count - 1],
                }
            )
            return
        # many local peers (each sees the one remote): poll their peer lists
        while True:
            joined = sum(1 for peer in self.locals if peer.ps.peers)
            if joined >= count:
                break
            await asyncio.sleep(0.001)
        emit({"event": "peers", "count": joined, "t_ns": now()})

    async def recv(self, cmd: dict[str, Any]) -> None:
        target = int(cmd["count"])
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        topics = [peer.topic for peer in self.locals if peer.topic is not None]
        # counters shared by the topics' tasks (closure cells: as cheap as locals)
        count = 0
        size = 0
        first = 0

        async def drain(topic: Topic) -> None:
            nonlocal count, size, first
            async for msg in topic:
                if not count:
                    first = now()
                count += 1
                size += len(msg.message)
                if count == target:
                    if not done.done():
                        done.set_result(now())
                    return

        async def run() -> None:
            self.profiler.enable()
            tasks = [asyncio.ensure_future(drain(t)) for t in topics]
            try:
                last = await done
            finally:
                self.profiler.disable()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            emit(
                {
                    "event": "received",
                    "count": count,
                    "bytes": size,
                    "first_ns": first,
                    "last_ns": last,
                }
            )

        self.tasks.spawn(run())
        emit({"event": "armed"})

    async def send(self, cmd: dict[str, Any]) -> None:
        count = int(cmd["count"])
        payload = b"a" * int(cmd["size"])
        targets = [
            (peer.topic, peer_id)
            for peer in self.locals
            if peer.topic is not None
            for peer_id in peer.ps.peers
        ]
        self.profiler.enable()
        start = now()
        if len(targets) == 1:
            topic, peer_id = targets[0]
            send = topic.send
            for _ in range(count):
                await send(peer_id, payload)
        else:
            for _ in range(count):
                for topic, peer_id in targets:
                    await topic.send(peer_id, payload)
        end = now()
        self.profiler.disable()
        emit({"event": "sent", "messages": count * len(targets), "start_ns": start, "end_ns": end})

    async def echo(self, cmd: dict[str, Any]) -> None:
        # "callback": like the JavaScript worker's onmessage -> ext.send, a sync
        # callback that replies in the same loop iteration. "loop": the plain loop
        # of the README, async for + await send.
        for peer in self.locals:
            topic = peer.topic
            if topic is None:
                continue
            if cmd.get("mode", "callback") == "loop":
                self.tasks.spawn(_echo_loop(topic))
            else:
                topic.on_message(_echo_callback(topic))
        emit({"event": "echoing"})

    async def ping(self, cmd: dict[str, Any]) -> None:
        rounds = int(cmd["rounds"])
        warmup = int(cmd.get("warmup", 0))
        payload = b"p" * int(cmd.get("size", 1))
        peer = self.locals[0]
        topic = peer.topic
        assert topic is not None
        peer_id = peer.ps.peers[0]
        rtts: list[int] = []
        for i in range(warmup + rounds):
            t0 = now()
            await topic.send(peer_id, payload)
            await anext(topic)
            if i >= warmup:
                rtts.append(now() - t0)
        emit({"event": "pinged", "rtt_ns": rtts})

    async def memory(self, cmd: dict[str, Any]) -> None:
        gc.collect()
        gc.collect()
        emit({"event": "memory", "rss": rss_bytes(), "gc": True})

    async def close(self) -> None:
        await self.tasks.cancel_all()
        # close in bounded groups: 1,000 swarms at once would only contend
        for i in range(0, len(self.locals), 100):
            group = self.locals[i : i + 100]
            await asyncio.gather(*(peer.ps.close() for peer in group), return_exceptions=True)
            await asyncio.gather(
                *(peer.swarm.close(timeout=1.0) for peer in group), return_exceptions=True
            )
        self.profiler.dump()

    # -- internals ------------------------------------------------------------------

    async def _watch(self, peer: LocalPeer) -> None:
        async for event in peer.ps.watch():
            if event.type == "join":
                self.join_times.append(now())
                self.join_changed.set()


if __name__ == "__main__":
    run_worker(__doc__, "send/recv", Worker)
