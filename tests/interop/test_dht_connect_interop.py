"""Connecting by public key between the Python DHT and JavaScript hyperdht 6.

Python's ``DHT.connect`` / ``DHT.listen`` against hyperdht's ``connect`` /
``createServer``, driven through tests/interop/js/dht_peer.mjs. Every test has
its own network on 127.0.0.1: a testnet of five persistent nodes and ephemeral
client nodes bootstrapped from it (JavaScript clients from ``--bootstrap``,
Python ``DHT``s). The secret-stream is used raw on the Python side
(``send_raw`` / ``message_handler``): a JavaScript write arrives as one
message, a Python message as one JavaScript 'data' chunk.

Covered:

- data both ways, Python client to a JavaScript echo server and JavaScript
  client to a Python echo server, at 0 B (connect and close cleanly, nothing
  exchanged), 1 B, 64 KiB and 16 MiB; every byte checked by sha256 on both
  ends (JavaScript reports what it received in server_end / connect_done).
  Python sends 64 KiB messages; JavaScript's connect writes its payload at
  once, so its "16 MiB" is the largest secret-stream message, 16 MiB - 18 B;
- 20 connections at once each way, 64 KiB each;
- the holepunch path both ways with the Python node behind a simulated NAT
  (tests/natsim.py: consistent mapping, port-restricted filtering) and the
  JavaScript node firewalled (``--quick-firewall false``) with no LAN shortcut:
  the stream runs on a holepunch socket on both ends (JavaScript reports
  ``socket: "puncher"``; on the Python side the stream's UDP socket is neither
  of the node's own two, and ``DHT.connects["holepunch"]`` or
  ``DHTServer.accepts["puncher"]`` counts it); the NAT's counters show it
  filtered (the quick firewall check's ping to the real port, the client's
  first probe to our puncher's public port);
  and once with the Python server sharing its LAN address: the client's LAN
  shortcut reaches the NAT-ed host's real port, is dropped there
  (``nat.bypassed``), and the holepunch connects anyway;
- errors: a key nobody listens on (DHTPeerNotFound, quickly), a Python
  server's ``firewall`` refusing the JavaScript client's key (connect_error
  PEER_CONNECTION_FAILED in JavaScript, after hyperdht's handshake retries,
  about 8 s; another key still gets through), a JavaScript server after
  ``unlisten`` (PeerConnectError). hyperdht's createServer has a firewall
  option too, but dht_peer.mjs does not expose it, so the mirror case is not
  tested;
- the relay duty of Python nodes: on a testnet of Python nodes only
  (peersockets.testing.DHTTestnet) the Python nodes store the servers'
  announcements and relay every PEER_HANDSHAKE / PEER_HOLEPUNCH between a
  JavaScript and a Python client node, both ways, directly and by holepunch
  with the Python node behind the NAT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from natsim import Nat  # tests/ is on sys.path

from peersockets.connection import Connection
from peersockets.dht import DHT, DHTPeerNotFound, PeerConnectError
from peersockets.dht.peer_messages import NoisePayload
from peersockets.dht.server import DHTServer
from peersockets.testing import DHTTestnet
from peersockets.udx import UDXStream
from peersockets.wire.crypto import KeyPair

from .conftest import StartPeer
from .jspeer import JsPeer, close_all, pattern

pytestmark = pytest.mark.timeout(120)

SCRIPT = "dht_peer.mjs"
HOST = "127.0.0.1"
TESTNET_SIZE = 5
START_TIMEOUT = 30.0
"""Starting a testnet or a client node, opening a Python DHT (bootstrap)."""
OP_TIMEOUT = 20.0
"""One connect, or one small transfer, either side."""
BIG_TIMEOUT = 60.0
"""A 16 MiB transfer (both ways, through pure-Python UDX)."""
CLOSE_TIMEOUT = 10.0
NOT_FOUND_TIMEOUT = 10.0
"""A connect to a key nobody announced fails within this."""
REFUSED_TIMEOUT = 40.0
"""A JavaScript connect to a server that never answers its handshake fails within this."""

KIB = 1024
MIB = 1024 * KIB
SIZES = (0, 1, 64 * KIB, 16 * MIB)
JS_MAX_WRITE = 16 * MIB - 18
"""The largest JavaScript write: the connect command writes its payload at once, and a
secret-stream message (its 3-byte length, the data and a 17-byte tag) is at most
2**24 - 1 + 3 bytes (secret-stream's MAX_ATOMIC_WRITE). So "16 MiB" from JavaScript
is this, one frame of the largest size either side accepts."""
JS_SIZES = (0, 1, 64 * KIB, JS_MAX_WRITE)
CHUNK = 64 * KIB
"""Python sends in messages of this size, each after drain()."""
CONCURRENT = 20
CONCURRENT_SIZE = 64 * KIB

JS_SEED = 3
"""What the JavaScript connect command sends: pattern(size, 3)."""
PY_SEED = 5
"""What the Python clients send: pattern(size, 5)."""

Address = tuple[str, int]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def key_of(n: int) -> bytes:
    """The public key of seed(n): KeyPair.from_seed here, HyperDHT.keyPair in JavaScript."""
    return KeyPair.from_seed(seed(n)).public_key


# ---------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture
async def testnet(js: StartPeer) -> Address:
    """A JavaScript testnet of five persistent hyperdht nodes; its bootstrap address."""
    peer = await js(SCRIPT, "--testnet", str(TESTNET_SIZE))
    event = await peer.expect("testnet", timeout=START_TIMEOUT)
    (boot,) = event["bootstrap"]
    assert len(event["nodes"]) == TESTNET_SIZE
    return (boot["host"], int(boot["port"]))


StartNode = Callable[..., Awaitable[JsPeer]]


@pytest_asyncio.fixture
async def js_nodes(js: StartPeer) -> AsyncIterator[StartNode]:
    """Start JavaScript hyperdht client nodes: ``await js_nodes(bootstrap, firewalled=False)``
    (``firewalled``: --quick-firewall false, so it stays firewalled on loopback).

    They are closed before the testnet (a test names ``testnet`` before ``js_nodes``): a
    node exiting while its testnet is gone waits seconds for its last requests.
    """
    nodes: list[JsPeer] = []

    async def start(bootstrap: Address, firewalled: bool = False) -> JsPeer:
        args = ["--bootstrap", f"{bootstrap[0]}:{bootstrap[1]}"]
        if firewalled:
            args += ["--quick-firewall", "false"]
        peer = await js(SCRIPT, *args)
        nodes.append(peer)
        ready = await peer.expect("ready", timeout=START_TIMEOUT)
        assert ready["ephemeral"] is True
        if firewalled:
            assert ready["firewalled"] is True
        return peer

    try:
        yield start
    finally:
        await close_all(nodes)
        for peer in nodes:
            assert peer.returncode == 0, peer.stderr


OpenDHT = Callable[..., Awaitable[DHT]]


@pytest_asyncio.fixture
async def pydht() -> AsyncIterator[OpenDHT]:
    """Open Python DHTs on 127.0.0.1: ``await pydht(bootstrap, nat=None, **options)``.

    Closed after the test, before the JavaScript peers and the testnet (tests name
    ``pydht`` after them; a server unannounces when it closes) and before the NAT
    (named before ``pydht``).
    """
    dhts: list[DHT] = []

    async def start(bootstrap: Address, nat: Nat | None = None, **options: Any) -> DHT:
        if nat is not None:
            options["bind_socket"] = nat.bind
        dht = DHT(bootstrap=[bootstrap], host=HOST, **options)
        dhts.append(dht)
        await asyncio.wait_for(dht.open(), START_TIMEOUT)
        return dht

    try:
        yield start
    finally:
        for dht in reversed(dhts):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dht.close(), CLOSE_TIMEOUT)


@pytest_asyncio.fixture
async def nat() -> AsyncIterator[Nat]:
    async with Nat("consistent") as box:
        yield box


# ---------------------------------------------------------------------- JavaScript helpers


async def js_do(peer: JsPeer, event: str, **cmd: Any) -> dict[str, Any]:
    """Send one command; its answer ``event`` (a cmd-error fails the test)."""
    await peer.send(cmd)
    got: dict[str, Any] = await peer.arrivals.expect(
        lambda e: e if e.get("event") in (event, "cmd-error") else None,
        f"event {event!r} (or cmd-error) for {cmd}",
        OP_TIMEOUT,
    )
    if got["event"] == "cmd-error":
        raise AssertionError(f"{peer.script} failed {cmd}: {got['message']}\n{peer.stderr}")
    return got


async def js_listen(peer: JsPeer, n: int, mode: str = "echo", **opts: Any) -> bytes:
    """Listen on seed(n) in JavaScript; the server's public key."""
    got = await js_do(peer, "listening", cmd="listen", seed=seed(n).hex(), mode=mode, **opts)
    assert len(got["relay_addresses"]) >= 1
    public_key = bytes.fromhex(got["public_key"])
    assert public_key == key_of(n)
    return public_key


async def js_connect(
    peer: JsPeer, public_key: bytes, count: int = 1, timeout: float = OP_TIMEOUT, **opts: Any
) -> list[dict[str, Any]]:
    """One JavaScript connect command; its connect_done / connect_error events, in cid order."""
    await peer.send({"cmd": "connect", "public_key": public_key.hex(), "count": count, **opts})
    results = [
        await peer.arrivals.expect(
            lambda e: e if e.get("event") in ("connect_done", "connect_error") else None,
            "connect_done or connect_error",
            timeout,
        )
        for _ in range(count)
    ]
    ok = sum(1 for r in results if r["event"] == "connect_done")
    all_done = await peer.expect("connect_all_done", timeout=timeout)
    assert all_done == {"event": "connect_all_done", "count": count, "ok": ok}
    results.sort(key=lambda r: int(r["cid"]))
    return results


def done(result: dict[str, Any]) -> dict[str, Any]:
    assert result["event"] == "connect_done", result
    return result


async def js_accepted(
    peer: JsPeer, public_key: bytes, timeout: float = OP_TIMEOUT
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The next connection to the JavaScript server ``public_key`` and its server_end."""
    conn = await peer.expect("connection", timeout=timeout, public_key=public_key.hex())
    got = await peer.arrivals.expect(
        lambda e: (
            e
            if e.get("event") in ("server_end", "server_error") and e.get("id") == conn["id"]
            else None
        ),
        f"server_end of connection {conn['id']}",
        timeout,
    )
    assert got["event"] == "server_end", got
    return conn, got


# ---------------------------------------------------------------------- Python helpers


class Received:
    """Hashes what a raw Connection receives; ``echo``: sends every message straight back."""

    def __init__(self, conn: Connection, echo: bool = False) -> None:
        self.conn = conn
        self.echo = echo
        self.hash = hashlib.sha256()
        self.bytes = 0
        conn.message_handler = self._on_message

    def _on_message(self, message: bytearray) -> None:
        self.hash.update(message)
        self.bytes += len(message)
        if self.echo and message:
            self.conn.send_raw(bytes(message))

    @property
    def sha256(self) -> str:
        return self.hash.hexdigest()


@dataclass
class PyServer:
    """A Python DHTServer whose connections echo (or only hash) what they receive."""

    server: DHTServer
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    @property
    def public_key(self) -> bytes:
        return self.server.public_key

    async def next(self, timeout: float = OP_TIMEOUT) -> Received:
        return await asyncio.wait_for(self.arrived.get(), timeout)


async def py_listen(dht: DHT, n: int, echo: bool = True, **options: Any) -> PyServer:
    """Listen on seed(n) in Python; each connection gets a Received at once."""
    holder: list[PyServer] = []

    def on_connection(conn: Connection) -> None:
        got = Received(conn, echo)  # before any message can arrive
        holder[0].received.append(got)
        holder[0].arrived.put_nowait(got)

    server = await asyncio.wait_for(
        dht.listen(KeyPair.from_seed(seed(n)), on_connection, **options), OP_TIMEOUT
    )
    assert len(server.relay_addresses) >= 1
    holder.append(PyServer(server))
    return holder[0]


async def send_pattern(conn: Connection, size: int, seed_: int = PY_SEED) -> None:
    """pattern(size, seed_) in CHUNK-sized messages, each after drain()."""
    data = pattern(size, seed_)
    for offset in range(0, size, CHUNK):
        await conn.drain()
        conn.send_raw(data[offset : offset + CHUNK])


async def closed_cleanly(conn: Connection, timeout: float = OP_TIMEOUT) -> None:
    """The connection ends (both sides) without an error."""
    error = await asyncio.wait_for(conn.wait_closed(), timeout)
    assert error is None, repr(error)
    assert conn.has_ended


async def py_exchange(
    dht: DHT, public_key: bytes, size: int, timeout: float = OP_TIMEOUT, **options: Any
) -> Connection:
    """Connect, send pattern(size, PY_SEED), end our side, read the echo to the end."""
    conn = await dht.connect(public_key, timeout=timeout, **options)
    assert conn.remote_public_key == public_key
    got = Received(conn)
    await asyncio.wait_for(send_pattern(conn, size), timeout)
    conn.close()
    await closed_cleanly(conn, timeout)
    assert got.bytes == size
    assert got.sha256 == digest(pattern(size, PY_SEED))
    return conn


def stream_of(conn: Connection) -> UDXStream:
    assert isinstance(conn.transport, UDXStream)
    return conn.transport


def on_puncher(dht: DHT, conn: Connection) -> bool:
    """Whether the connection's UDX stream runs on a holepunch socket (not the node's own)."""
    return stream_of(conn).socket not in (dht.node.server, dht.node.client)


# ---------------------------------------------------------------------- data both ways


@pytest.mark.parametrize("size", SIZES, ids=["0B", "1B", "64KiB", "16MiB"])
async def test_python_connects_to_js_echo(
    testnet: Address, js_nodes: StartNode, pydht: OpenDHT, size: int
) -> None:
    server = await js_nodes(testnet)
    dht = await pydht(testnet)
    server_pk = await js_listen(server, 1, "echo")
    timeout = BIG_TIMEOUT if size > MIB else OP_TIMEOUT

    await py_exchange(dht, server_pk, size, timeout=timeout)
    assert sum(dht.connects.values()) == 1, dht.connects

    conn, end = await js_accepted(server, server_pk, timeout)
    assert conn["remote_public_key"] == dht.default_key_pair.public_key.hex()
    assert conn["remote_host"] == HOST
    assert end["bytes"] == size
    assert end["sha256"] == digest(pattern(size, PY_SEED))
    assert end["remote_ended"] is True
    assert server.seen("server_error") == []


@pytest.mark.parametrize("size", JS_SIZES, ids=["0B", "1B", "64KiB", "16MiB"])
async def test_js_connects_to_python_echo(
    testnet: Address, js_nodes: StartNode, pydht: OpenDHT, size: int
) -> None:
    client = await js_nodes(testnet)
    dht = await pydht(testnet)
    server = await py_listen(dht, 2)
    timeout = BIG_TIMEOUT if size > MIB else OP_TIMEOUT

    (result,) = await js_connect(
        client, server.public_key, size=size, seed=seed(9).hex(), timeout=timeout
    )
    r = done(result)
    assert r["sent"] == size
    assert r["received"] == size
    assert r["sha256"] == digest(pattern(size, JS_SEED))
    assert r["remote_host"] == HOST

    got = await server.next()
    assert got.conn.remote_public_key == key_of(9)
    await closed_cleanly(got.conn)
    assert got.bytes == size
    assert got.sha256 == r["sha256"]
    assert len(server.received) == 1
    assert sum(server.server.accepts.values()) == 1


# ---------------------------------------------------------------------- many at once


async def test_concurrent_connections_each_way(
    testnet: Address, js_nodes: StartNode, pydht: OpenDHT
) -> None:
    jsnode = await js_nodes(testnet)
    dht = await pydht(testnet)
    js_pk = await js_listen(jsnode, 3, "echo")
    server = await py_listen(dht, 4)
    want_js = digest(pattern(CONCURRENT_SIZE, JS_SEED))
    want_py = digest(pattern(CONCURRENT_SIZE, PY_SEED))

    # JavaScript -> Python: one connect command with count=20
    results = await js_connect(jsnode, server.public_key, count=CONCURRENT, size=CONCURRENT_SIZE)
    for result in results:
        r = done(result)
        assert (r["received"], r["sha256"]) == (CONCURRENT_SIZE, want_js)
    assert len(server.received) == CONCURRENT
    for got in server.received:
        await closed_cleanly(got.conn)
        assert (got.bytes, got.sha256) == (CONCURRENT_SIZE, want_js)
    assert sum(server.server.accepts.values()) == CONCURRENT

    # Python -> JavaScript: 20 concurrent DHT.connect, each with its own key pair
    key_pairs = [KeyPair.generate() for _ in range(CONCURRENT)]
    conns = await asyncio.gather(
        *(
            py_exchange(dht, js_pk, CONCURRENT_SIZE, key_pair=kp, timeout=OP_TIMEOUT)
            for kp in key_pairs
        )
    )
    assert [c.remote_public_key for c in conns] == [js_pk] * CONCURRENT
    assert sum(dht.connects.values()) == CONCURRENT, dht.connects
    ends = [await js_accepted(jsnode, js_pk) for _ in range(CONCURRENT)]
    assert sorted(conn["remote_public_key"] for conn, _ in ends) == sorted(
        kp.public_key.hex() for kp in key_pairs
    )
    for _conn, end in ends:
        assert (end["bytes"], end["sha256"]) == (CONCURRENT_SIZE, want_py)
    assert jsnode.seen("server_error") == []


# ---------------------------------------------------------------------- holepunching


async def open_behind_nat(pydht: OpenDHT, bootstrap: Address, nat: Nat) -> DHT:
    """A Python DHT behind ``nat``; firewalled because the NAT filtered its reachability check."""
    dht = await pydht(bootstrap, nat=nat)
    assert dht.node.firewalled
    # dht-rpc's quick firewall check: a testnet node pinged our server socket's real port
    # (the PING_NAT we sent named it) and the NAT kept it out
    assert nat.bypassed >= 1, nat
    return dht


async def test_holepunch_python_behind_nat_connects_to_js(
    testnet: Address, js_nodes: StartNode, nat: Nat, pydht: OpenDHT
) -> None:
    server = await js_nodes(testnet, firewalled=True)
    dht = await open_behind_nat(pydht, testnet, nat)
    server_pk = await js_listen(server, 5, "echo", share_local_address=False)
    forwarded_in = nat.forwarded_in

    conn = await py_exchange(dht, server_pk, MIB)
    assert on_puncher(dht, conn)
    assert dht.connects == {"holepunch": 1}
    js_conn, end = await js_accepted(server, server_pk)
    assert js_conn["socket"] == "puncher"
    assert js_conn["firewalled"] is True
    assert (end["bytes"], end["sha256"]) == (MIB, digest(pattern(MIB, PY_SEED)))
    # the echo came in through the NAT (at least one datagram per 1500 bytes); our puncher
    # sent to the server's first, so nothing had to be dropped this way round
    assert nat.forwarded_in - forwarded_in > MIB // 1500, nat


async def test_holepunch_js_connects_to_python_behind_nat(
    testnet: Address, js_nodes: StartNode, nat: Nat, pydht: OpenDHT
) -> None:
    client = await js_nodes(testnet, firewalled=True)
    dht = await open_behind_nat(pydht, testnet, nat)
    server = await py_listen(dht, 6, share_local_address=False)
    dropped, bypassed = nat.dropped, nat.bypassed

    (result,) = await js_connect(client, server.public_key, size=MIB, local_connection=False)
    r = done(result)
    assert (r["received"], r["sha256"]) == (MIB, digest(pattern(MIB, JS_SEED)))
    assert r["socket"] == "puncher"
    assert r["firewalled"] is True
    got = await server.next()
    await closed_cleanly(got.conn)
    assert (got.bytes, got.sha256) == (MIB, r["sha256"])
    assert on_puncher(dht, got.conn)
    assert server.server.accepts == {"puncher": 1}
    # the client's first probe reached our puncher's public port before we had sent to it
    assert nat.dropped > dropped, nat
    # and nobody tried our real ports: no LAN address was shared
    assert nat.bypassed == bypassed, nat


async def test_holepunch_after_failed_lan_shortcut(
    testnet: Address, js_nodes: StartNode, nat: Nat, pydht: OpenDHT
) -> None:
    """The Python server shares its LAN address; the JavaScript client's LAN shortcut pings
    the real port behind the NAT, which keeps it out, and the holepunch connects instead."""
    client = await js_nodes(testnet, firewalled=True)
    dht = await open_behind_nat(pydht, testnet, nat)
    server = await py_listen(dht, 7, share_local_address=True)
    bypassed = nat.bypassed

    (result,) = await js_connect(client, server.public_key, size=64 * KIB)
    r = done(result)
    assert (r["received"], r["sha256"]) == (64 * KIB, digest(pattern(64 * KIB, JS_SEED)))
    assert r["socket"] == "puncher"
    got = await server.next()
    await closed_cleanly(got.conn)
    assert (got.bytes, got.sha256) == (64 * KIB, r["sha256"])
    assert on_puncher(dht, got.conn)
    assert server.server.accepts == {"puncher": 1}
    assert nat.bypassed > bypassed, nat  # the LAN shortcut's ping hit the real port


# ---------------------------------------------------------------------- errors


async def test_unknown_key_not_found(testnet: Address, pydht: OpenDHT) -> None:
    dht = await pydht(testnet)
    started = time.monotonic()
    with pytest.raises(DHTPeerNotFound) as info:
        await dht.connect(key_of(0x55), timeout=NOT_FOUND_TIMEOUT * 2)
    assert info.value.code == "PEER_NOT_FOUND"
    assert time.monotonic() - started < NOT_FOUND_TIMEOUT


async def test_python_firewall_refuses_js_key(
    testnet: Address, js_nodes: StartNode, pydht: OpenDHT
) -> None:
    client = await js_nodes(testnet)
    dht = await pydht(testnet)
    asked: list[bytes] = []

    def firewall(remote_public_key: bytes, payload: NoisePayload, address: Address) -> bool:
        asked.append(remote_public_key)
        return remote_public_key == key_of(10)

    server = await py_listen(dht, 8, firewall=firewall)

    # another key gets through
    (result,) = await js_connect(client, server.public_key, size=10, seed=seed(11).hex())
    done(result)
    got = await server.next()
    assert got.conn.remote_public_key == key_of(11)
    await closed_cleanly(got.conn)

    (result,) = await js_connect(
        client, server.public_key, size=10, seed=seed(10).hex(), timeout=REFUSED_TIMEOUT
    )
    assert result["event"] == "connect_error", result
    assert result["code"] == "PEER_CONNECTION_FAILED", result
    assert client.seen("connected", cid=result["cid"]) == []
    assert key_of(10) in asked and key_of(11) in asked
    assert len(server.received) == 1
    assert sum(server.server.accepts.values()) == 1


async def test_connect_after_js_unlisten(
    testnet: Address, js_nodes: StartNode, pydht: OpenDHT
) -> None:
    server = await js_nodes(testnet)
    dht = await pydht(testnet)
    server_pk = await js_listen(server, 12, "echo")
    await py_exchange(dht, server_pk, 10)
    got = await js_do(server, "unlistened", cmd="unlisten", seed=seed(12).hex())
    assert got["public_key"] == server_pk.hex()

    started = time.monotonic()
    with pytest.raises(PeerConnectError) as info:
        await dht.connect(server_pk, timeout=OP_TIMEOUT)
    # the relays dropped the record on unannounce: not found at once
    assert info.value.code == "PEER_NOT_FOUND", info.value
    assert time.monotonic() - started < NOT_FOUND_TIMEOUT
    assert sum(dht.connects.values()) == 1


# ---------------------------------------------------------------------- Python relays


def count_relaying(nodes: list[DHT]) -> Counter[str]:
    """Count the PEER_HANDSHAKE ("on_handshake") and PEER_HOLEPUNCH ("on_holepunch")
    requests the routers of ``nodes`` handle from now on."""
    counts: Counter[str] = Counter()
    for dht in nodes:
        router = dht.router
        for name in ("on_handshake", "on_holepunch"):
            original = getattr(router, name)

            def counted(incoming: Any, _original: Any = original, _name: str = name) -> Any:
                counts[_name] += 1
                return _original(incoming)

            setattr(router, name, counted)
    return counts


async def test_python_testnet_relays(js_nodes: StartNode, pydht: OpenDHT) -> None:
    """On a network of Python nodes only, JavaScript and Python client nodes connect both
    ways, directly and by holepunch (Python behind the NAT): every handshake and holepunch
    message between them is relayed by the Python testnet nodes."""
    async with DHTTestnet(TESTNET_SIZE) as net, Nat("consistent") as nat:
        (boot,) = net.bootstrap
        relayed = count_relaying(net.nodes)
        jsnode = await js_nodes(boot)
        js_fw = await js_nodes(boot, firewalled=True)
        dht = await pydht(boot)
        natted = await open_behind_nat(pydht, boot, nat)

        # Python -> JavaScript and JavaScript -> Python, no NAT
        js_pk = await js_listen(jsnode, 13, "echo")
        await py_exchange(dht, js_pk, 64 * KIB)
        _conn, end = await js_accepted(jsnode, js_pk)
        assert (end["bytes"], end["sha256"]) == (64 * KIB, digest(pattern(64 * KIB, PY_SEED)))

        server = await py_listen(dht, 14)
        (result,) = await js_connect(jsnode, server.public_key, size=64 * KIB)
        r = done(result)
        assert (r["received"], r["sha256"]) == (64 * KIB, digest(pattern(64 * KIB, JS_SEED)))
        got = await server.next()
        await closed_cleanly(got.conn)
        assert (got.bytes, got.sha256) == (64 * KIB, r["sha256"])

        # holepunch: Python behind the NAT -> firewalled JavaScript server
        fw_pk = await js_listen(js_fw, 15, "echo", share_local_address=False)
        conn = await py_exchange(natted, fw_pk, 64 * KIB)
        assert on_puncher(natted, conn)
        assert natted.connects == {"holepunch": 1}
        js_conn, end = await js_accepted(js_fw, fw_pk)
        assert js_conn["socket"] == "puncher"
        assert (end["bytes"], end["sha256"]) == (64 * KIB, digest(pattern(64 * KIB, PY_SEED)))

        # holepunch: firewalled JavaScript client -> Python server behind the NAT
        nat_server = await py_listen(natted, 16, share_local_address=False)
        (result,) = await js_connect(
            js_fw, nat_server.public_key, size=64 * KIB, local_connection=False
        )
        r = done(result)
        assert r["socket"] == "puncher"
        assert (r["received"], r["sha256"]) == (64 * KIB, digest(pattern(64 * KIB, JS_SEED)))
        got = await nat_server.next()
        await closed_cleanly(got.conn)
        assert (got.bytes, got.sha256) == (64 * KIB, r["sha256"])
        assert nat_server.server.accepts == {"puncher": 1}

        # the testnet's Python nodes did the relaying (there is nobody else)
        assert relayed["on_handshake"] > 0 and relayed["on_holepunch"] > 0, relayed
        nodes = {n.address for n in net.nodes}
        # (an unfirewalled server names itself first, as hyperdht's announcer does)
        assert set(server.server.relay_addresses) - {dht.address} <= nodes
        assert set(nat_server.server.relay_addresses) <= nodes

        # close the JavaScript nodes and Python clients while the testnet still answers
        await asyncio.gather(jsnode.close(), js_fw.close())
        for node in (dht, natted):
            await asyncio.wait_for(node.close(), CLOSE_TIMEOUT)
