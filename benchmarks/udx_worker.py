"""Benchmark worker: one Python UDX socket (peersockets.udx), driven by benchmarks/run.py.

    python benchmarks/udx_worker.py [--uvloop] [--cprofile PATH]

The same JSON-lines protocol as benchmarks/js/udx_worker.mjs (commands on
stdin, one at a time, in order; events on stdout; the protocol is described at
the top of that file and in benchmarks/README.md; the plumbing around the
commands, shared with benchmarks/py_worker.py, is benchmarks/worker_io.py).
The worker binds one UDP socket on 127.0.0.1 and opens UDX streams on it with
ids and a remote port the runner hands out (the other worker's port, or the
lossy relay's).

Streams are opened with the public asyncio API: ``UDXSocket.open_stream`` (an
asyncio StreamReader/StreamWriter pair) for data and ping streams; an echo
stream is ``UDXSocket.connect_protocol`` with a protocol that writes back what
it receives in ``data_received`` (as the JavaScript echo does in its
``'data'`` handler, in the same loop turn).

Data is a fixed pattern with a prime period (``PERIOD`` bytes), the same in
both workers: the sender writes it period by period, the receiver checks every
byte it reads against it (and the total length), so a broken, reordered or
truncated transfer is reported, never counted.

``--cprofile PATH`` profiles the ``send``, ``recv`` and ``ping`` commands only
(from the command to its last byte) and writes pstats to PATH at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
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
from peersockets.udx import UDXSocket, UDXStream

HOST = "127.0.0.1"
READ_SIZE = 1 << 18
PERIOD = 65521  # a prime: a misplaced chunk cannot line up with the pattern by chance


def make_pattern() -> bytes:
    """One period of the payload pattern (the JavaScript worker builds the same bytes)."""
    return bytes(((i * 131 + (i >> 8) * 7 + 17) & 0xFF) for i in range(PERIOD))


PATTERN = make_pattern()


def pattern_matches(chunk: bytes, offset: int) -> bool:
    """Whether ``chunk`` is the pattern's bytes at stream offset ``offset``."""
    n = len(chunk)
    pos = 0
    off = offset % PERIOD
    while pos < n:
        k = min(n - pos, PERIOD - off)
        if chunk[pos : pos + k] != PATTERN[off : off + k]:
            return False
        pos += k
        off = 0
    return True


class Echo(asyncio.Protocol):
    """Writes back every byte it receives, from the callback (no task)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close: our END follows theirs


class Stream:
    """One opened stream: its transport and, for data/ping streams, the reader/writer."""

    __slots__ = ("reader", "transport", "writer")

    def __init__(
        self,
        transport: UDXStream,
        reader: asyncio.StreamReader | None = None,
        writer: asyncio.StreamWriter | None = None,
    ) -> None:
        self.transport = transport
        self.reader = reader
        self.writer = writer


class Worker:
    """The state of one worker process and its command handlers."""

    def __init__(self, profile_path: str | None) -> None:
        self.sock: UDXSocket | None = None
        self.streams: dict[int, Stream] = {}
        self.tasks = Tasks()
        self.profiler = CommandProfiler(profile_path)

    # -- commands -------------------------------------------------------------------

    def handlers(self) -> dict[str, CommandHandler]:
        """The commands, by name ("exit" is ``serve``'s)."""
        return {
            "bind": self.bind,
            "open": self.open,
            "recv": self.recv,
            "send": self.send,
            "ping": self.ping,
            "stats": self.stats,
        }

    async def bind(self, cmd: dict[str, Any]) -> None:
        self.sock = await UDXSocket.bind(HOST, 0)
        emit({"event": "bound", "port": self.sock.address[1]})

    async def open(self, cmd: dict[str, Any]) -> None:
        sock = self.sock
        assert sock is not None, "bind first"
        address = (HOST, int(cmd["port"]))
        mode = cmd.get("mode", "data")
        for local_id, remote_id in cmd["streams"]:
            if mode == "echo":
                echo = sock.connect_protocol(Echo(), int(local_id), int(remote_id), address)
                self.streams[int(local_id)] = Stream(echo)
            else:
                reader, writer = await sock.open_stream(int(local_id), int(remote_id), address)
                stream = writer.transport
                assert isinstance(stream, UDXStream)
                self.streams[int(local_id)] = Stream(stream, reader, writer)
        emit({"event": "opened", "count": len(cmd["streams"])})

    async def recv(self, cmd: dict[str, Any]) -> None:
        ids = [int(i) for i in cmd["ids"]]
        expected = int(cmd["bytes"])
        check = bool(cmd.get("check", True))
        first = 0
        total = 0
        bad: list[str] = []
        ended: list[int] = []

        async def drain(local_id: int) -> None:
            nonlocal first, total
            stream = self.streams[local_id]
            reader, writer = stream.reader, stream.writer
            assert reader is not None and writer is not None
            got = 0
            ok = True
            try:
                while True:
                    chunk = await reader.read(READ_SIZE)
                    if not chunk:
                        break
                    if not first:
                        first = now()
                    if check and ok and not pattern_matches(chunk, got):
                        ok = False
                    got += len(chunk)
                    total += len(chunk)
            except Exception as exc:  # a reset or timed-out stream: reported, not counted
                bad.append(f"stream {local_id}: {type(exc).__name__}: {exc}")
                return
            ended.append(now())
            if got != expected:
                bad.append(f"stream {local_id}: {got} bytes, expected {expected}")
            elif not ok:
                bad.append(f"stream {local_id}: the bytes differ from the pattern")
            writer.write_eof()  # our END: the stream closes once both ended

        async def run() -> None:
            self.profiler.enable()
            try:
                await asyncio.gather(*(drain(i) for i in ids))
            finally:
                self.profiler.disable()
            emit(
                {
                    "event": "received",
                    "streams": len(ids),
                    "bytes": total,
                    "first_ns": first,
                    "last_ns": max(ended) if ended else now(),
                    "ok": not bad,
                    "bad": bad[:10],
                }
            )

        self.tasks.spawn(run())
        emit({"event": "armed"})

    async def send(self, cmd: dict[str, Any]) -> None:
        ids = [int(i) for i in cmd["ids"]]
        size = int(cmd["bytes"])

        async def send_one(local_id: int) -> None:
            writer = self.streams[local_id].writer
            assert writer is not None
            sent = 0
            while sent < size:
                n = min(PERIOD, size - sent)
                writer.write(PATTERN if n == PERIOD else PATTERN[:n])
                sent += n
                await writer.drain()
            writer.write_eof()

        self.profiler.enable()
        start = now()
        await asyncio.gather(*(send_one(i) for i in ids))
        end = now()
        self.profiler.disable()
        emit({"event": "sent", "bytes": size * len(ids), "start_ns": start, "end_ns": end})

    async def ping(self, cmd: dict[str, Any]) -> None:
        rounds = int(cmd["rounds"])
        warmup = int(cmd.get("warmup", 0))
        stream = self.streams[int(cmd["id"])]
        reader, writer = stream.reader, stream.writer
        assert reader is not None and writer is not None
        payload = b"p"
        read = reader.readexactly
        write = writer.write
        rtts: list[int] = []
        self.profiler.enable()
        for i in range(warmup + rounds):
            t0 = now()
            write(payload)
            await read(1)
            if i >= warmup:
                rtts.append(now() - t0)
        self.profiler.disable()
        writer.write_eof()
        emit({"event": "pinged", "rtt_ns": rtts})

    async def stats(self, cmd: dict[str, Any]) -> None:
        out = []
        for local_id in cmd.get("ids") or list(self.streams)[:1]:
            stream = self.streams.get(int(local_id))
            if stream is None:
                continue
            core = stream.transport.core
            srtt = getattr(core, "srtt", None)
            cc = getattr(core, "_cc", None)
            counters = getattr(core, "stats", None)  # StreamStats, where the core has it
            out.append(
                {
                    "id": int(local_id),
                    "mtu": getattr(core, "mtu", None),
                    "srtt_us": srtt * 1e6 if isinstance(srtt, float) else None,
                    "cwnd": getattr(cc, "cwnd", None),
                    "retransmits": getattr(counters, "retransmits", None),
                    "rto_count": getattr(counters, "timeouts", None),
                    "loss_events": getattr(counters, "loss_events", None),
                    "packets_transmitted": getattr(counters, "packets_sent", None),
                }
            )
        dropped = getattr(self.sock, "dropped_sends", None)
        emit({"event": "stats", "streams": out, "dropped_sends": dropped})

    async def close(self) -> None:
        await self.tasks.cancel_all()
        if self.sock is not None:
            with contextlib.suppress(Exception):
                await self.sock.close()
        self.profiler.dump()


if __name__ == "__main__":
    run_worker(__doc__, "send/recv/ping", Worker)
