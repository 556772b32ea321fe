"""The Python DHT (peersockets.dht) on a JavaScript hyperdht 6 testnet, next to a hyperdht client.

Every test starts its own testnet of five persistent hyperdht nodes on 127.0.0.1
(random ports) and, when it needs one, a JavaScript hyperdht client node, both
from tests/interop/js/dht_peer.mjs; the Python DHTs are ephemeral client nodes
bootstrapped from the testnet. What one side writes (announcements, immutable
and mutable values), the other side reads.

A badly signed mutable value cannot be stored through hyperdht (its storing
nodes drop such a put unanswered), so a forging storing node is a Python
RPCNode (``Forger``). Unreachable bootstrap nodes are a closed UDP port (the
kernel answers with ICMP port unreachable) and a bound socket that never reads:
with them, every query waits out their requests' six sends (about 6 s, as in
hyperdht), which is why those two tests take longest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from peersockets.dht import records as r
from peersockets.dht.dht import DHT, MutableValue, PeerRecord
from peersockets.dht.node import Incoming, RPCNode
from peersockets.errors import DHTError
from peersockets.wire.crypto import KeyPair, blake2b_256

from .conftest import StartPeer
from .jspeer import JsPeer

pytestmark = pytest.mark.timeout(150)

SCRIPT = "dht_peer.mjs"
HOST = "127.0.0.1"
TESTNET_SIZE = 5
START_TIMEOUT = 30.0
"""Starting the testnet or a client node, opening a Python DHT (bootstrap)."""
OP_TIMEOUT = 30.0
"""One DHT operation, either side (a query gives up after 6 s per silent node)."""
CLOSE_TIMEOUT = 10.0

Address = tuple[str, int]


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def key_of(n: int) -> bytes:
    """The public key of seed(n): KeyPair.from_seed here, HyperDHT.keyPair in JavaScript."""
    return KeyPair.from_seed(seed(n)).public_key


# ---------------------------------------------------------------------- fixtures


@dataclass
class JsTestnet:
    peer: JsPeer
    bootstrap: Address
    nodes: list[Address]


@pytest_asyncio.fixture
async def testnet(js: StartPeer) -> JsTestnet:
    peer = await js(SCRIPT, "--testnet", str(TESTNET_SIZE))
    event = await peer.expect("testnet", timeout=START_TIMEOUT)
    (boot,) = event["bootstrap"]
    nodes = [(n["host"], int(n["port"])) for n in event["nodes"]]
    assert len(nodes) == TESTNET_SIZE and len(set(nodes)) == TESTNET_SIZE
    return JsTestnet(peer, (boot["host"], int(boot["port"])), nodes)


@pytest_asyncio.fixture
async def js_client(js: StartPeer, testnet: JsTestnet) -> JsPeer:
    host, port = testnet.bootstrap
    peer = await js(SCRIPT, "--bootstrap", f"{host}:{port}")
    ready = await peer.expect("ready", timeout=START_TIMEOUT)
    assert ready["ephemeral"] is True
    return peer


@contextlib.asynccontextmanager
async def python_dht(bootstrap: Sequence[str | Address]) -> AsyncIterator[DHT]:
    """An open ephemeral Python DHT on 127.0.0.1; always closed afterwards."""
    dht = DHT(bootstrap=bootstrap, host=HOST)
    try:
        await asyncio.wait_for(dht.open(), START_TIMEOUT)
        yield dht
    finally:
        await asyncio.wait_for(dht.close(), CLOSE_TIMEOUT)


@pytest_asyncio.fixture
async def py(testnet: JsTestnet) -> AsyncIterator[DHT]:
    async with python_dht([testnet.bootstrap]) as dht:
        yield dht


@pytest.fixture
def closed_port() -> int:
    """A UDP port on 127.0.0.1 nothing listens on (bound, then closed): datagrams bounce."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that takes datagrams and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])


# ---------------------------------------------------------------------- helpers


async def js_do(peer: JsPeer, event: str, **cmd: Any) -> dict[str, Any]:
    """Send one command to the JS client; its answer ``event`` (a cmd-error fails the test)."""
    await peer.send(cmd)
    got = await peer.arrivals.expect(
        lambda e: e if e.get("event") in (event, "cmd-error") else None,
        f"event {event!r} (or cmd-error) for {cmd}",
        OP_TIMEOUT,
    )
    if got["event"] == "cmd-error":
        raise AssertionError(f"the JS client failed {cmd}: {got['message']}\n{peer._describe()}")
    return got


async def js_lookup(peer: JsPeer, topic: bytes) -> dict[bytes, list[Address]]:
    """public key -> relay addresses of every peer the JS client finds on ``topic``."""
    got = await js_do(peer, "lookup", cmd="lookup", topic=topic.hex())
    assert got["topic"] == topic.hex()
    assert len(got["keys"]) == len(set(got["keys"]))
    return {
        bytes.fromhex(p["public_key"]): [(a["host"], a["port"]) for a in p["relay_addresses"]]
        for p in got["peers"]
    }


async def js_announce(peer: JsPeer, topic: bytes, n: int, relays: Sequence[Address] = ()) -> None:
    got = await js_do(
        peer,
        "announced",
        cmd="announce",
        topic=topic.hex(),
        seed=seed(n).hex(),
        relay_addresses=[{"host": h, "port": p} for h, p in relays],
    )
    assert got["public_key"] == key_of(n).hex()


async def py_lookup(dht: DHT, topic: bytes) -> dict[bytes, PeerRecord]:
    """public key -> record of every peer the Python DHT finds on ``topic`` (the whole query)."""

    async def collect() -> dict[bytes, PeerRecord]:
        found: dict[bytes, PeerRecord] = {}
        async for peer in dht.lookup(topic):
            assert peer.public_key not in found, "lookup yielded a public key twice"
            found[peer.public_key] = peer
        return found

    return await asyncio.wait_for(collect(), OP_TIMEOUT)


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, OP_TIMEOUT)


# ---------------------------------------------------------------------- announce / lookup


async def test_announce_lookup_both_ways(py: DHT, js_client: JsPeer) -> None:
    topic = os.urandom(32)
    py_kp = KeyPair.from_seed(seed(1))
    assert await js_lookup(js_client, topic) == {}
    assert await py_lookup(py, topic) == {}

    await bounded(py.announce(topic, py_kp))
    assert await js_lookup(js_client, topic) == {py_kp.public_key: []}

    await js_announce(js_client, topic, 2)
    found = await py_lookup(py, topic)
    assert found == {
        py_kp.public_key: PeerRecord(py_kp.public_key, ()),
        key_of(2): PeerRecord(key_of(2), ()),
    }
    assert set(await js_lookup(js_client, topic)) == {py_kp.public_key, key_of(2)}

    # another topic is untouched
    other = os.urandom(32)
    assert await py_lookup(py, other) == {}
    assert await js_lookup(js_client, other) == {}


async def test_relay_addresses_both_ways(py: DHT, js_client: JsPeer) -> None:
    topic = os.urandom(32)
    py_relays = [("127.0.0.1", 4001), ("10.1.2.3", 65535)]
    js_relays = [("192.168.7.8", 1), ("127.0.0.1", 4002), ("10.0.0.1", 9)]
    await bounded(py.announce(topic, KeyPair.from_seed(seed(1)), py_relays))
    await js_announce(js_client, topic, 2, js_relays)
    assert await js_lookup(js_client, topic) == {key_of(1): py_relays, key_of(2): js_relays}
    found = await py_lookup(py, topic)
    assert found == {
        key_of(1): PeerRecord(key_of(1), tuple(py_relays)),
        key_of(2): PeerRecord(key_of(2), tuple(js_relays)),
    }


async def test_unannounce(py: DHT, js_client: JsPeer) -> None:
    topic = os.urandom(32)
    py_kp = KeyPair.from_seed(seed(3))
    await bounded(py.announce(topic, py_kp))
    await js_announce(js_client, topic, 4)
    assert set(await js_lookup(js_client, topic)) == {py_kp.public_key, key_of(4)}

    await bounded(py.unannounce(topic, py_kp))
    assert await js_lookup(js_client, topic) == {key_of(4): []}
    assert set(await py_lookup(py, topic)) == {key_of(4)}

    # and the JS key goes the same way
    await js_do(js_client, "unannounced", cmd="unannounce", topic=topic.hex(), seed=seed(4).hex())
    assert await py_lookup(py, topic) == {}
    assert await js_lookup(js_client, topic) == {}


async def test_find_peer_both_ways(py: DHT, js_client: JsPeer) -> None:
    """A server announces itself at H(public key) (2.3): find_peer / findPeer read that record."""
    py_kp = KeyPair.from_seed(seed(5))
    relays = [("127.0.0.1", 5005)]
    assert await bounded(py.find_peer(py_kp.public_key)) is None
    got = await js_do(js_client, "find_peer", cmd="find_peer", public_key=py_kp.public_key.hex())
    assert got["found"] is False

    await bounded(py.announce(blake2b_256(py_kp.public_key), py_kp, relays))
    got = await js_do(js_client, "find_peer", cmd="find_peer", public_key=py_kp.public_key.hex())
    assert got["found"] is True
    assert [(a["host"], a["port"]) for a in got["relay_addresses"]] == relays

    js_relays = [("127.0.0.1", 6006), ("127.0.0.1", 6007)]
    await js_announce(js_client, blake2b_256(key_of(6)), 6, js_relays)
    assert await bounded(py.find_peer(key_of(6))) == PeerRecord(key_of(6), tuple(js_relays))
    assert await bounded(py.find_peer(key_of(7))) is None


# ---------------------------------------------------------------------- immutable values


async def test_immutable_both_ways(py: DHT, js_client: JsPeer) -> None:
    value = b"immutable from python " + os.urandom(8)
    key = await bounded(py.immutable_put(value))
    assert key == blake2b_256(value)
    got = await js_do(js_client, "immutable_get", cmd="immutable_get", key=key.hex())
    assert got["value"] == value.hex()

    js_value = b"immutable from javascript " + os.urandom(8)
    put = await js_do(js_client, "immutable_put", cmd="immutable_put", value=js_value.hex())
    assert put["key"] == blake2b_256(js_value).hex()
    assert await bounded(py.immutable_get(bytes.fromhex(put["key"]))) == js_value

    # an empty value, a large one (well inside one UDP datagram)
    for v in (b"", os.urandom(1000)):
        k = await bounded(py.immutable_put(v))
        got = await js_do(js_client, "immutable_get", cmd="immutable_get", key=k.hex())
        assert got["value"] == v.hex()

    unknown = os.urandom(32)
    assert await bounded(py.immutable_get(unknown)) is None
    got = await js_do(js_client, "immutable_get", cmd="immutable_get", key=unknown.hex())
    assert got["value"] is None


# ---------------------------------------------------------------------- mutable values


async def test_mutable_both_ways(py: DHT, js_client: JsPeer) -> None:
    py_kp = KeyPair.from_seed(seed(8))
    assert await bounded(py.mutable_get(py_kp.public_key)) is None

    stored = await bounded(py.mutable_put(py_kp, b"python v3", seq=3))
    got = await js_do(
        js_client, "mutable_get", cmd="mutable_get", public_key=py_kp.public_key.hex()
    )
    assert (got["seq"], got["value"]) == (3, b"python v3".hex())
    assert got["signature"] == stored.signature.hex()
    got = await js_do(
        js_client, "mutable_get", cmd="mutable_get", public_key=py_kp.public_key.hex(), seq=4
    )
    assert got["seq"] is None and got["value"] is None

    # a newer seq replaces it
    await bounded(py.mutable_put(py_kp, b"python v4", seq=4))
    got = await js_do(
        js_client, "mutable_get", cmd="mutable_get", public_key=py_kp.public_key.hex()
    )
    assert (got["seq"], got["value"]) == (4, b"python v4".hex())

    put = await js_do(
        js_client,
        "mutable_put",
        cmd="mutable_put",
        seed=seed(9).hex(),
        value=b"javascript v5".hex(),
        seq=5,
    )
    assert put["public_key"] == key_of(9).hex()
    got_py = await bounded(py.mutable_get(key_of(9)))
    assert got_py == MutableValue(5, b"javascript v5", bytes.fromhex(put["signature"]))
    assert await bounded(py.mutable_get(key_of(9), seq=5)) == got_py
    assert await bounded(py.mutable_get(key_of(9), seq=6)) is None


async def test_mutable_put_older_seq_refused(py: DHT, js_client: JsPeer) -> None:
    """Storing nodes refuse a lower seq (SEQ_TOO_LOW): no node accepts it, the put raises."""
    py_kp = KeyPair.from_seed(seed(10))
    await bounded(py.mutable_put(py_kp, b"v7", seq=7))
    with pytest.raises(DHTError):
        await bounded(py.mutable_put(py_kp, b"v6", seq=6))
    got = await js_do(
        js_client, "mutable_get", cmd="mutable_get", public_key=py_kp.public_key.hex()
    )
    assert (got["seq"], got["value"]) == (7, b"v7".hex())


class Forger:
    """A persistent dht-rpc node that answers MUTABLE_GET with a badly signed value (seq 9)
    and IMMUTABLE_GET with a value that does not hash to the key."""

    def __init__(self) -> None:
        self.node = RPCNode(bootstrap=[], host=HOST, persistent=True, on_request=self._on_request)
        self.asked: list[int] = []

    def _on_request(self, node: RPCNode, incoming: Incoming) -> None:
        command = incoming.request.command
        self.asked.append(command)
        value: bytes | None = None
        if command == r.Command.MUTABLE_GET:
            forged = r.MutableGetResponse(9, b"forged", os.urandom(64))
            value = r.encode_mutable_get_response(forged)
        elif command == r.Command.IMMUTABLE_GET:
            value = b"forged"
        node.reply(incoming, token=True, closer_nodes=True, value=value)


@pytest_asyncio.fixture
async def forger() -> AsyncIterator[Forger]:
    f = Forger()
    await f.node.open()
    try:
        yield f
    finally:
        await f.node.close()


async def test_bad_signature_never_returned(
    testnet: JsTestnet, js_client: JsPeer, forger: Forger
) -> None:
    """A node serving a mutable value with a bad signature (and seq 9, newer than the real
    seq 5) is asked, and its value never returned; nor a forged immutable value."""
    put = await js_do(
        js_client, "mutable_put", cmd="mutable_put", seed=seed(11).hex(), value=b"real".hex(), seq=5
    )
    async with python_dht([forger.node.address, testnet.bootstrap]) as dht:
        assert await bounded(dht.mutable_get(key_of(11))) == MutableValue(
            5, b"real", bytes.fromhex(put["signature"])
        )
        assert await bounded(dht.mutable_get(key_of(11), seq=6)) is None
        assert await bounded(dht.mutable_get(key_of(12))) is None
        assert await bounded(dht.immutable_get(os.urandom(32))) is None
    assert forger.asked.count(r.Command.MUTABLE_GET) >= 3
    assert forger.asked.count(r.Command.IMMUTABLE_GET) >= 1


# ---------------------------------------------------------------------- bootstrap lists


async def test_unreachable_bootstrap_entry_is_skipped(
    testnet: JsTestnet, js_client: JsPeer, closed_port: int, silent_port: int
) -> None:
    topic = os.urandom(32)
    bootstrap = [(HOST, closed_port), (HOST, silent_port), testnet.bootstrap]
    async with python_dht(bootstrap) as dht:
        await bounded(dht.announce(topic, KeyPair.from_seed(seed(13))))
        assert await js_lookup(js_client, topic) == {key_of(13): []}
        await js_announce(js_client, topic, 14)
        assert set(await py_lookup(dht, topic)) == {key_of(13), key_of(14)}
        key = await bounded(dht.immutable_put(b"past a dead bootstrap node"))
        got = await js_do(js_client, "immutable_get", cmd="immutable_get", key=key.hex())
        assert got["value"] == b"past a dead bootstrap node".hex()


async def test_only_unreachable_bootstrap_nodes(closed_port: int, silent_port: int) -> None:
    """Opening still returns (the bootstrap query finds nobody); writes raise DHTError, reads
    find nothing: each gives up once its requests have run out of sends, nothing hangs."""
    topic = os.urandom(32)
    kp = KeyPair.from_seed(seed(15))
    async with python_dht([(HOST, closed_port), (HOST, silent_port)]) as dht:
        assert len(dht.node.table) == 0
        with pytest.raises(DHTError):
            await bounded(dht.announce(topic, kp))
        assert await py_lookup(dht, topic) == {}
        assert await bounded(dht.immutable_get(os.urandom(32))) is None
        with pytest.raises(DHTError):
            await bounded(dht.mutable_put(kp, b"nowhere", seq=1))


async def test_bootstrap_string_form(testnet: JsTestnet, js_client: JsPeer) -> None:
    host, port = testnet.bootstrap
    topic = os.urandom(32)
    async with python_dht([f"{host}:{port}"]) as dht:
        assert dht.node.bootstrap_nodes == [(host, port)]
        assert len(dht.node.table) > 0
        await bounded(dht.announce(topic, KeyPair.from_seed(seed(16))))
        assert await js_lookup(js_client, topic) == {key_of(16): []}
        key = await bounded(dht.immutable_put(b"string bootstrap"))
        got = await js_do(js_client, "immutable_get", cmd="immutable_get", key=key.hex())
        assert got["value"] == b"string bootstrap".hex()
