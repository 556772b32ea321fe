"""Benchmark worker: a Python peersockets peer process, driven by benchmarks/run.py.

    python benchmarks/py_worker.py [--uvloop] [--cprofile PATH]

The same JSON-lines protocol as benchmarks/js/worker.mjs (commands on stdin,
one at a time, in order; events on stdout); see that file and
benchmarks/README.md. One process holds any number of "local peers": each is
its own Swarm (its own key pair) with its own Peersockets for the drive, since
a Swarm keeps one connection per remote key. A listening process has one local
peer with one TCP listener.

``--cprofile PATH`` profiles the ``send`` and ``recv`` commands only (from the
command to its last message) and writes pstats to PATH at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from peersockets import Peersockets, Swarm
from peersockets.api import Topic, TopicMessage

HOST = "127.0.0.1"
TIMEOUT = 600.0  # no single command may take longer than this
now = time.monotonic_ns


def emit(event: dict[str, Any]) -> None:
    """Write one event line to stdout."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


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
        self.swarm = Swarm()
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
        self.tasks: set[asyncio.Task[Any]] = set()
        self.listening = False
        self.profiler = cProfile.Profile() if profile_path else None
        self.profile_path = profile_path

    # -- commands -------------------------------------------------------------------

    async def init(self, cmd: dict[str, Any]) -> None:
        key = cmd.get("key")
        self.key = bytes.fromhex(key) if key else os.urandom(32)
        self.topic_name = cmd.get("topic") or None
        emit({"event": "init", "key": self.key.hex(), "rss": rss_bytes()})

    async def listen(self, cmd: dict[str, Any]) -> None:
        peer = LocalPeer(self.key, self.topic_name)
        self.locals.append(peer)
        self.listening = True
        self._spawn(self._watch(peer))
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
            self._profile(True)
            tasks = [asyncio.ensure_future(drain(t)) for t in topics]
            try:
                last = await done
            finally:
                self._profile(False)
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

        self._spawn(run())
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
        self._profile(True)
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
        self._profile(False)
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
                self._spawn(_echo_loop(topic))
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
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # close in bounded groups: 1,000 swarms at once would only contend
        for i in range(0, len(self.locals), 100):
            group = self.locals[i : i + 100]
            await asyncio.gather(*(peer.ps.close() for peer in group), return_exceptions=True)
            await asyncio.gather(
                *(peer.swarm.close(timeout=1.0) for peer in group), return_exceptions=True
            )
        if self.profiler is not None and self.profile_path:
            self.profiler.dump_stats(self.profile_path)

    # -- internals ------------------------------------------------------------------

    async def _watch(self, peer: LocalPeer) -> None:
        async for event in peer.ps.watch():
            if event.type == "join":
                self.join_times.append(now())
                self.join_changed.set()

    def _profile(self, on: bool) -> None:
        if self.profiler is not None:
            if on:
                self.profiler.enable()
            else:
                self.profiler.disable()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            fail(task.exception())


def fail(exc: BaseException | None) -> None:
    """Report a fatal error and exit 1."""
    import traceback

    traceback.print_exception(exc, file=sys.stderr)
    emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
    sys.stderr.flush()
    os._exit(1)


async def read_commands() -> asyncio.StreamReader:
    """An asyncio reader on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main(args: argparse.Namespace) -> None:
    worker = Worker(args.cprofile)
    handlers: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, None]]] = {
        "init": worker.init,
        "listen": worker.listen,
        "connect": worker.connect,
        "wait_peers": worker.wait_peers,
        "recv": worker.recv,
        "send": worker.send,
        "echo": worker.echo,
        "ping": worker.ping,
        "memory": worker.memory,
    }
    emit(
        {
            "event": "started",
            "stack": "py",
            "python": sys.version.split()[0],
            "loop": type(asyncio.get_running_loop()).__module__,
            "clock_ns": now(),
            "pid": os.getpid(),
        }
    )
    reader = await read_commands()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if not line.strip():
                continue
            cmd = json.loads(line)
            name = cmd.get("cmd")
            if name == "exit":
                break
            handler = handlers.get(name)
            if handler is None:
                raise ValueError(f"unknown command {name!r}")
            async with asyncio.timeout(TIMEOUT):
                await handler(cmd)
    except Exception as exc:
        fail(exc)
    async with asyncio.timeout(30):
        await worker.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--cprofile", metavar="PATH", help="profile send/recv into PATH")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(args))
    else:
        asyncio.run(main(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
