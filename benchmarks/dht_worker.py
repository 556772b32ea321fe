"""Benchmark worker: a Python DHT node (peersockets.dht), driven by benchmarks/run.py.

    python benchmarks/dht_worker.py [--uvloop] [--cprofile PATH]

The same JSON-lines protocol as benchmarks/js/dht_worker.mjs (commands on stdin,
one at a time, in order; events on stdout; the commands are described at the top
of that file and in benchmarks/README.md). It is benchmarks/py_worker.py's worker
(its drive-peer commands: init, wait_peers, recv, send, ... unchanged) with one
DHT node and the DHT commands:

- ``dht_open``: ``DHT(bootstrap, host="127.0.0.1")`` with the default options,
  opened (bootstrapped);
- ``dht_listen``: ``dht.listen(key_pair, on_connection)`` on a new key pair. Mode
  "echo": a raw secret-stream echo (``conn.message_handler`` writes every message
  back with ``conn.send_raw`` from the callback, in the same loop turn, as the
  JavaScript echo does from its 'data' handler). Mode "peer": a drive peer (a
  local peer's Swarm, Peersockets and Topic, as py_worker.py's ``listen``) whose
  connections the DHT makes with the Swarm's ``make_connection``;
- ``dht_connect``: a new local peer dials the public key with
  ``dht.connect(public_key, key_pair=swarm.key_pair,
  make_connection=swarm's)``: its Topic then runs over the DHT connection (UDX);
- ``connect_time``: ``await dht.connect(public_key)``, write one byte
  (``send_raw``), wait for the echo, record, then close and wait until closed
  (untimed); W warm-ups, then N timed;
- ``dht_stats``: the node's firewall state, connects by path, accepts by socket.

The path a connect took is the one ``DHT.connects`` (the node's count of connects
by path) counted for it.

``--cprofile PATH`` profiles the ``send`` and ``recv`` commands only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# the runner starts this file as a script: make the benchmarks package importable
sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks.py_worker import LocalPeer
from benchmarks.py_worker import Worker as PeerWorker
from benchmarks.worker_io import CommandHandler, emit, now, run_worker
from peersockets.connection import Connection
from peersockets.dht import DHT
from peersockets.dht.server import DHTServer
from peersockets.wire.crypto import KeyPair

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 30.0
ECHO_BYTE = b"\x2a"


def socket_kind(dht: DHT, conn: Connection) -> str:
    """Which UDP socket carries the connection's UDX stream: the node's "client" or
    "server" socket, or another ("puncher": a holepunch socket)."""
    sock = getattr(conn.transport, "socket", None)
    if sock is None:
        return "none"
    if sock is dht.node.client:
        return "client"
    if sock is dht.node.server:
        return "server"
    return "puncher"


class Worker(PeerWorker):
    """py_worker.py's worker, plus a DHT node and its commands."""

    def __init__(self, profile_path: str | None) -> None:
        super().__init__(profile_path)
        self.dht: DHT | None = None
        self.servers: list[DHTServer] = []
        self.accepts: Counter[str] = Counter()
        self.connections: set[Connection] = set()

    def handlers(self) -> dict[str, CommandHandler]:
        return {
            **super().handlers(),
            "dht_open": self.dht_open,
            "dht_listen": self.dht_listen,
            "dht_connect": self.dht_connect,
            "connect_time": self.connect_time,
            "dht_stats": self.dht_stats,
        }

    # -- commands -------------------------------------------------------------------

    async def dht_open(self, cmd: dict[str, Any]) -> None:
        bootstrap = [(str(host), int(port)) for host, port in cmd["bootstrap"]]
        self.dht = DHT(bootstrap=bootstrap, host=HOST)
        await self.dht.open()
        emit({"event": "dht_ready", "port": self.dht.address[1], "firewalled": self._firewalled()})

    async def dht_listen(self, cmd: dict[str, Any]) -> None:
        dht = self._node()
        mode = cmd.get("mode", "echo")
        if mode == "peer":
            peer = LocalPeer(self.key, self.topic_name)
            self.locals.append(peer)
            self.listening = True
            self.tasks.spawn(self._watch(peer))
            key_pair = peer.swarm.key_pair
            swarm = peer.swarm
            server = await dht.listen(
                key_pair,
                self._count_accept,
                make_connection=lambda _kp, initiator, hs: swarm.make_connection(initiator, hs),
            )
        elif mode == "echo":
            key_pair = KeyPair.generate()
            server = await dht.listen(key_pair, self._echo)
        else:
            raise ValueError(f"bad mode {mode!r}")
        self.servers.append(server)
        emit(
            {
                "event": "dht_listening",
                "public_key": key_pair.public_key.hex(),
                "firewalled": self._firewalled(),
            }
        )

    async def dht_connect(self, cmd: dict[str, Any]) -> None:
        dht = self._node()
        public_key = bytes.fromhex(cmd["public_key"])
        peer = LocalPeer(self.key, self.topic_name)
        self.locals.append(peer)
        swarm = peer.swarm
        before = Counter(dht.connects)
        start = now()
        conn = await dht.connect(
            public_key,
            key_pair=swarm.key_pair,
            timeout=CONNECT_TIMEOUT,
            make_connection=lambda _kp, initiator, hs: swarm.make_connection(initiator, hs),
        )
        end = now()
        emit(
            {
                "event": "connected",
                "start_ns": start,
                "end_ns": end,
                "path": self._path(before),
                "socket": socket_kind(dht, conn),
            }
        )

    async def connect_time(self, cmd: dict[str, Any]) -> None:
        dht = self._node()
        public_key = bytes.fromhex(cmd["public_key"])
        count = int(cmd["count"])
        warmup = int(cmd.get("warmup", 0))
        loop = asyncio.get_running_loop()
        ms: list[float] = []
        paths: list[str] = []
        kinds: list[str] = []
        for i in range(warmup + count):
            before = Counter(dht.connects)
            echoed: asyncio.Future[None] = loop.create_future()

            def on_message(_msg: bytearray, echoed: asyncio.Future[None] = echoed) -> None:
                if not echoed.done():
                    echoed.set_result(None)

            t0 = now()
            conn = await dht.connect(public_key, timeout=CONNECT_TIMEOUT)
            conn.message_handler = on_message
            conn.send_raw(ECHO_BYTE)
            await echoed
            elapsed = now() - t0
            kind = socket_kind(dht, conn)
            conn.close()
            await conn.wait_closed()
            if i < warmup:
                continue
            ms.append(elapsed / 1e6)
            paths.append(self._path(before))
            kinds.append(kind)
        emit({"event": "connect_times", "ms": ms, "paths": paths, "sockets": kinds})

    async def dht_stats(self, cmd: dict[str, Any]) -> None:
        dht = self._node()
        server_accepts: Counter[str] = Counter()
        for server in self.servers:
            server_accepts.update(server.accepts)
        emit(
            {
                "event": "dht_stats",
                "firewalled": self._firewalled(),
                "connects": dict(dht.connects),
                "accepts": dict(self.accepts),
                "server_accepts": dict(server_accepts),
            }
        )

    async def close(self) -> None:
        for conn in list(self.connections):
            conn.abort()
        await super().close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.close()
        if self.dht is not None:
            with contextlib.suppress(Exception):
                await self.dht.close()

    # -- internals ------------------------------------------------------------------

    def _node(self) -> DHT:
        if self.dht is None:
            raise RuntimeError("dht_open first")
        return self.dht

    def _firewalled(self) -> bool:
        return bool(self._node().node.firewalled)

    def _path(self, before: Counter[str]) -> str:
        """The path of the connect just made: the one DHT.connects counted since ``before``."""
        assert self.dht is not None
        counted = [path for path, n in self.dht.connects.items() if n > before.get(path, 0)]
        return counted[0] if counted else "unknown"

    def _count_accept(self, conn: Connection) -> None:
        self.accepts[socket_kind(self._node(), conn)] += 1

    def _echo(self, conn: Connection) -> None:
        """A raw echo: every secret-stream message goes back at once, from the callback."""
        self._count_accept(conn)
        self.connections.add(conn)
        send = conn.send_raw

        def echo(msg: bytearray) -> None:
            if not conn.is_closed:
                send(bytes(msg))

        conn.message_handler = echo
        self.tasks.spawn(self._forget(conn))

    async def _forget(self, conn: Connection) -> None:
        await conn.wait_closed()
        self.connections.discard(conn)


if __name__ == "__main__":
    run_worker(__doc__, "send/recv", Worker)
