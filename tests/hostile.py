"""Helpers for the hostile-network tests: a raw-socket attacker, a recorder of the server's
connections, process resource probes, and a cluster of healthy peers that keep chatting
through the same listening Swarm while an attack goes on."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
from conftest import next_of, wait_until

from peersockets import Peersockets, Swarm, Topic, TopicMessage
from peersockets.connection import Connection
from peersockets.wire.crypto import KeyPair, capability, discovery_key
from peersockets.wire.encoding import (
    decode_uint,
    encode_optional_buffer,
    encode_string,
    encode_uint,
)
from peersockets.wire.hypercore import PROTOCOL, encode_handshake
from peersockets.wire.secretstream import ID_HEADER_BYTES, Phase, SecretStream

DRIVE = bytes(range(32))
MiB = 1024 * 1024
SLACK = 1.0  # seconds of scheduling slack on top of a documented time bound (2-core CI)


# -- process resources ----------------------------------------------------------------------


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def task_count() -> int:
    """Live asyncio tasks other than the current one."""
    current = asyncio.current_task()
    return sum(1 for t in asyncio.all_tasks() if t is not current and not t.done())


class Resources:
    """A snapshot of fds, tasks and RSS, to compare against after a stress run."""

    def __init__(self) -> None:
        gc.collect()
        self.fds = fd_count()
        self.tasks = task_count()
        self.rss = rss_bytes()

    def __repr__(self) -> str:
        return f"Resources(fds={self.fds}, tasks={self.tasks}, rss={self.rss / MiB:.1f} MiB)"


# -- protomux frames an attacker sends (plaintext, before encryption) -------------------------


def open_frame(local_id: int, protocol: str, id: bytes | None, handshake: bytes = b"") -> bytes:
    """protomux control open: 00 01 uint(local id) string(protocol) optional buffer(id) handshake."""
    return (
        b"\x00\x01"
        + encode_uint(local_id)
        + encode_string(protocol)
        + encode_optional_buffer(id)
        + handshake
    )


def drive_open(attacker: Attacker) -> bytes:
    """A valid open of the drive's channel (id 1), encrypted: this attacker knows the key."""
    assert attacker.stream is not None
    cap = capability(True, DRIVE, attacker.stream.handshake_hash)
    return attacker.encrypt(open_frame(1, PROTOCOL, discovery_key(DRIVE), encode_handshake(cap)))


def reject_frame(remote_id: int) -> bytes:
    """protomux control reject: 00 02 uint(the id the opener used)."""
    return b"\x00\x02" + encode_uint(remote_id)


def control_messages(frames: list[bytes] | list[bytes | bytearray]) -> list[bytes]:
    """The protomux control messages (00 type body) among plaintext frames, batches unpacked."""
    found: list[bytes] = []
    for frame in frames:
        if frame[:2] != b"\x00\x00":
            found.append(bytes(frame))
            continue
        channel, pos = decode_uint(frame, 2)
        while pos < len(frame):
            length, pos = decode_uint(frame, pos)
            if length == 0:
                channel, pos = decode_uint(frame, pos)
                continue
            if channel == 0:
                found.append(b"\x00" + bytes(frame[pos : pos + length]))
            pos += length
    return found


def u24(n: int) -> bytes:
    """A raw secret-stream length prefix."""
    return n.to_bytes(3, "little")


# -- the attacker ----------------------------------------------------------------------------


class Attacker:
    """A raw TCP client speaking as much (or as little) of the wire as a test wants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stream: SecretStream | None = None
        self.received: list[bytes] = []
        """Decrypted messages from the server (after the handshake)."""
        self.held_header = b""
        """Our stream header frame, when handshake(send_header=False) kept it back."""

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> Attacker:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    @property
    def port(self) -> int:
        """Our local port: the peer port of the server-side connection."""
        return int(self.writer.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def encrypt(self, plaintext: bytes) -> bytes:
        """One framed, encrypted secret-stream message (after handshake())."""
        assert self.stream is not None, "handshake() first"
        return self.stream.encrypt(plaintext)

    async def handshake(
        self, key_pair: KeyPair | None = None, *, send_header: bool = True, timeout: float = 5.0
    ) -> SecretStream:
        """Complete the Noise XX handshake as initiator and read the server's stream header.

        With ``send_header=False`` our own stream header is kept in ``held_header`` instead of
        being sent, so a test can send something else in its place.
        """
        stream = SecretStream(True, key_pair if key_pair is not None else KeyPair.generate())
        self.stream = stream
        self.writer.write(stream.data_to_send())
        async with asyncio.timeout(timeout):
            while stream.phase is not Phase.TRANSPORT:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection during the handshake")
                was_established = stream.handshake_complete
                self.received += [bytes(m) for m in stream.receive_data(data)]
                out = stream.data_to_send()
                if out and not send_header and stream.handshake_complete and not was_established:
                    self.held_header = out[-(3 + ID_HEADER_BYTES) :]
                    out = out[: -(3 + ID_HEADER_BYTES)]
                if out:
                    self.writer.write(out)
        return stream

    async def read_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Read and decrypt what the server sends until ``condition()`` holds."""
        assert self.stream is not None, "handshake() first"
        async with asyncio.timeout(timeout):
            while not condition():
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.received += [bytes(m) for m in self.stream.receive_data(data)]

    async def wait_dropped(self, timeout: float) -> None:
        """Read (and discard) until the server ends the connection; fail after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            raise AssertionError(
                f"the server did not drop the connection within {timeout} s"
            ) from None

    async def close(self) -> None:
        """Close our end (FIN)."""
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def reset(self) -> None:
        """Abort our end with a TCP RST (SO_LINGER 0), as a crashed or faulty host would."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class ConnectionLog:
    """Records every Connection a Swarm makes, so a test can find the server side of a socket.

    This wraps the Swarm's make_connection on the instance (test-side instrumentation only).
    Only the most recent connections are kept, so that churn tests do not retain thousands.
    """

    def __init__(self, swarm: Swarm, keep: int = 100) -> None:
        self.made: deque[Connection] = deque(maxlen=keep)
        make = swarm.make_connection

        def recording(initiator: bool) -> Connection:
            conn = make(initiator)
            self.made.append(conn)
            return conn

        swarm.make_connection = recording  # type: ignore[method-assign]

    def _find(self, port: int) -> Connection | None:
        for conn in self.made:
            transport = conn.transport
            if transport is None:
                continue
            peer = transport.get_extra_info("peername")
            if peer is not None and peer[1] == port:
                return conn
        return None

    async def of(self, attacker: Attacker, timeout: float = 5.0) -> Connection:
        """The server-side Connection of ``attacker``'s socket."""
        port = attacker.port
        await wait_until(lambda: self._find(port) is not None, timeout)
        conn = self._find(port)
        assert conn is not None
        return conn


async def handshaken(
    attackers: Callable[[tuple[str, int]], Awaitable[Attacker]], cluster: Cluster
) -> tuple[Attacker, Connection]:
    """A new attacker that completed the handshake with the cluster's server, and the
    server's side of its connection."""
    attacker = await attackers(cluster.address)
    await attacker.handshake()
    return attacker, await cluster.log.of(attacker)


async def ended_by(conn: Connection, timeout: float) -> BaseException | None:
    """Wait until ``conn`` has ended and return the error that ended it."""
    try:
        return await asyncio.wait_for(conn.wait_closed(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"the server did not end the connection within {timeout} s (error so far: {conn.error!r})"
        ) from None


# -- healthy peers ---------------------------------------------------------------------------

CHAT_MIN = 30  # every stream sends at least this many messages, attack or not
CHAT_MAX = 5000  # and at most this many (at 5 messages per 10 ms: at most ~10 s)
CHAT_LATENCY = 2.0  # seconds a healthy message may take from send to read, attack or not


class Healthy:
    """A healthy peer: its own Swarm and Peersockets on DRIVE, dialled into the server."""

    def __init__(self, name: str, swarm: Swarm, ps: Peersockets, topic: Topic) -> None:
        self.name = name
        self.swarm = swarm
        self.ps = ps
        self.topic = topic
        self.server_id = 0  # the server's peer id in self.ps
        self.id_at_server = 0  # this peer's id in the server's Peersockets


class Cluster:
    """A listening server Swarm with healthy peers that chat through it during an attack."""

    def __init__(
        self,
        server: Swarm,
        address: tuple[str, int],
        log: ConnectionLog,
        ps_options: dict[str, Any] | None = None,
    ) -> None:
        self.server = server
        self.address = address
        self.log = log
        self.ps = Peersockets(server, DRIVE, **(ps_options or {}))
        self.topic = self.ps.join("chat")
        self.events = self.ps.watch()
        self.healthy: list[Healthy] = []
        self.sent: dict[str, int] = {}
        self.sent_at: dict[str, list[float]] = {}
        """Loop time at which each message of a stream was sent, by tag."""
        self._chatting: list[asyncio.Task[None]] = []
        self._reading: list[asyncio.Task[None]] = []
        self.got: dict[str, list[int]] = {}
        """The numbers of the chat messages read so far, by stream tag."""
        self.worst_latency = 0.0
        self._stop = False

    @classmethod
    async def start(
        cls,
        peers: int = 2,
        peer_options: dict[str, Any] | None = None,
        ps_options: dict[str, Any] | None = None,
        **server_options: Any,
    ) -> Cluster:
        """A server Swarm made with ``server_options`` (its Peersockets with ``ps_options``)
        and ``peers`` healthy peers, each a Swarm made with ``peer_options``, joined to
        DRIVE and dialled into the server."""
        server = Swarm(dht=False, **server_options)
        log = ConnectionLog(server)
        address = await server.listen("127.0.0.1", 0)
        cluster = cls(server, address, log, ps_options)
        for i in range(peers):
            swarm = Swarm(dht=False, **(peer_options or {}))
            ps = Peersockets(swarm, DRIVE)
            cluster.healthy.append(Healthy(f"h{i}", swarm, ps, ps.join("chat")))
            await swarm.connect(*address)
        await wait_until(
            lambda: (
                len(cluster.ps.peers) == peers
                and all(len(h.ps.peers) == 1 for h in cluster.healthy)
            )
        )
        by_key = {h.swarm.public_key: h for h in cluster.healthy}
        for peer_id in cluster.ps.peers:
            by_key[cluster.ps.peer_public_key(peer_id)].id_at_server = peer_id
        for h in cluster.healthy:
            h.server_id = h.ps.peers[0]
        joins = [await next_of(cluster.events) for _ in range(peers)]
        assert sorted(e.type for e in joins) == ["join"] * peers
        return cluster

    @property
    def healthy_connections(self) -> int:
        return len(self.healthy)

    # -- chatting --------------------------------------------------------------------------

    def start_chat(self, read_upstream: bool = True) -> None:
        """Every healthy peer and the server send numbered messages to each other until stopped.

        What arrives is read as it arrives and checked (sender, order, latency); with
        ``read_upstream=False`` the test reads the server's topic itself.
        """
        self._stop = False
        for h in self.healthy:
            self._chatting.append(
                asyncio.create_task(self._chat(h.topic, h.server_id, f"{h.name}>s"))
            )
            self._chatting.append(
                asyncio.create_task(self._chat(self.topic, h.id_at_server, f"s>{h.name}"))
            )
            self._reading.append(asyncio.create_task(self._read(h.topic, h)))
        if read_upstream:
            self._reading.append(asyncio.create_task(self._read(self.topic, None)))

    async def _chat(self, topic: Topic, peer_id: int, tag: str) -> None:
        loop = asyncio.get_running_loop()
        sent_at = self.sent_at.setdefault(tag, [])
        for i in range(CHAT_MAX):
            if self._stop and i >= CHAT_MIN:
                break
            sent_at.append(loop.time())
            await topic.send(peer_id, f"{tag}:{i}".encode())
            self.sent[tag] = i + 1
            if i % 5 == 4:
                await asyncio.sleep(0.01)

    async def _read(self, topic: Topic, receiver: Healthy | None) -> None:
        """Read a chat topic as messages arrive: on the server (``receiver`` None) or on a
        healthy peer; check who sent each, and record its number and latency."""
        async for msg in topic:
            self._check(msg, receiver)

    def _check(self, msg: TopicMessage, receiver: Healthy | None) -> None:
        tag, _, number = msg.message.decode().rpartition(":")
        if receiver is None:
            sender = next(h for h in self.healthy if h.swarm.public_key == msg.public_key)
            assert tag == f"{sender.name}>s" and msg.peer_id == sender.id_at_server, msg
        else:
            assert tag == f"s>{receiver.name}", msg
            assert msg.public_key == self.server.public_key and msg.peer_id == receiver.server_id
        self.got.setdefault(tag, []).append(int(number))
        latency = asyncio.get_running_loop().time() - self.sent_at[tag][int(number)]
        self.worst_latency = max(self.worst_latency, latency)

    async def finish_chat(self, read_upstream: dict[str, int] | None = None) -> int:
        """Stop chatting and check that every message sent arrived, in order, exactly once,
        each within CHAT_LATENCY of its sending.

        ``read_upstream``: how many messages of each healthy peer's stream to the server
        the test has already read off the server's topic (and checked), after
        ``start_chat(read_upstream=False)``. Returns the number of messages checked.
        """
        self._stop = True
        tasks, self._chatting = self._chatting, []
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for tag, count in (read_upstream or {}).items():
            self.got[tag] = list(range(count)) + self.got.get(tag, [])
        if read_upstream is not None:
            upstream = sum(self.sent[f"{h.name}>s"] for h in self.healthy)
            for _ in range(upstream - sum(read_upstream.values())):
                self._check(await next_of(self.topic, timeout=10), None)
        readers, self._reading = self._reading, []

        def arrived() -> bool:
            return any(task.done() for task in readers) or all(
                len(self.got.get(tag, ())) >= count for tag, count in self.sent.items()
            )

        await wait_until(arrived, 30)
        for task in readers:
            if task.done():
                task.result()  # a failed check in a reader
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert self.got == {tag: list(range(count)) for tag, count in self.sent.items()}
        for topic in [self.topic, *(h.topic for h in self.healthy)]:
            assert len(topic._inbox) == 0, "a message arrived that nobody sent"
            assert topic.dropped == 0
        assert self.worst_latency < CHAT_LATENCY, (
            f"a healthy message took {self.worst_latency:.3f} s to be read"
        )
        return sum(self.sent.values())

    async def assert_no_peer_events(self, wait: float = 0.2) -> None:
        """The server saw no join or leave since the healthy peers joined."""
        with contextlib.suppress(TimeoutError):
            event = await next_of(self.events, timeout=wait)
            raise AssertionError(f"unexpected peer event on the server: {event}")
        assert len(self.ps.peers) == len(self.healthy)
        await wait_until(lambda: len(self.server.connections) == len(self.healthy), 5)

    async def close(self) -> None:
        self._stop = True
        tasks = self._chatting + self._reading
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.ps.close()
        await self.server.close()
        for h in self.healthy:
            await h.ps.close()
            await h.swarm.close()


# -- fixtures (imported by the hostile test modules) -------------------------------------------

ClusterMaker = Callable[..., Awaitable[Cluster]]
AttackerMaker = Callable[[tuple[str, int]], Awaitable[Attacker]]


@pytest_asyncio.fixture(name="make_cluster")
async def fixture_make_cluster() -> AsyncIterator[ClusterMaker]:
    """Clusters (server + healthy peers), closed after the test; no task or file
    descriptor may be left over."""
    made: list[Cluster] = []
    fds = fd_count()

    async def make(**options: Any) -> Cluster:
        cluster = await Cluster.start(**options)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            await cluster.close()
        await asyncio.sleep(0)
        assert task_count() == 0, f"tasks left running: {asyncio.all_tasks()}"
        await wait_until(lambda: fd_count() <= fds, 5)


@pytest_asyncio.fixture(name="attackers")
async def fixture_attackers() -> AsyncIterator[AttackerMaker]:
    """Raw-socket attackers, all closed after the test."""
    made: list[Attacker] = []

    async def connect(address: tuple[str, int]) -> Attacker:
        attacker = await Attacker.connect(address)
        made.append(attacker)
        return attacker

    try:
        yield connect
    finally:
        for attacker in made:
            await attacker.close()
