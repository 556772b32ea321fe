"""A JavaScript hyperdht client on a network of Python DHT nodes (peersockets.testing.DHTTestnet).

The mirror of test_dht_interop.py: there Python clients use a JavaScript testnet,
here the storing nodes are ours, so the JavaScript client's ANNOUNCE signatures,
tokens and values are checked, stored and served by the Python store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from peersockets.testing import DHTTestnet
from peersockets.wire.crypto import KeyPair, blake2b_256

from .conftest import StartPeer
from .jspeer import JsPeer
from .test_dht_interop import js_announce, js_do, js_lookup, key_of, py_lookup, seed

pytestmark = pytest.mark.timeout(120)
TIMEOUT = 30.0


@pytest_asyncio.fixture
async def python_network() -> AsyncIterator[DHTTestnet]:
    async with DHTTestnet(5) as testnet:
        yield testnet


@pytest_asyncio.fixture
async def js_on_python(js: StartPeer, python_network: DHTTestnet) -> JsPeer:
    host, port = python_network.bootstrap[0]
    peer = await js("dht_peer.mjs", "--bootstrap", f"{host}:{port}")
    await peer.expect("ready", timeout=TIMEOUT)
    return peer


async def test_announce_and_lookup_both_ways_on_python_nodes(python_network: DHTTestnet, js_on_python: JsPeer) -> None:
    client = await python_network.client()
    topic = os.urandom(32)
    await js_announce(js_on_python, topic, 7)
    assert set(await py_lookup(client, topic)) == {key_of(7)}
    stored = sum(node._store.sizes()["records"] for node in python_network.nodes if node._store is not None)
    assert stored >= 3  # every closest Python node verified the JS signature made for it
    await asyncio.wait_for(client.announce(topic, KeyPair.from_seed(seed(8))), TIMEOUT)
    assert set(await js_lookup(js_on_python, topic)) == {key_of(7), key_of(8)}
    await js_do(js_on_python, "unannounced", cmd="unannounce", topic=topic.hex(), seed=seed(7).hex())
    assert set(await py_lookup(client, topic)) == {key_of(8)}


async def test_values_both_ways_on_python_nodes(python_network: DHTTestnet, js_on_python: JsPeer) -> None:
    client = await python_network.client()
    put = await js_do(js_on_python, "immutable_put", cmd="immutable_put", value=b"from javascript".hex())
    assert bytes.fromhex(put["key"]) == blake2b_256(b"from javascript")
    assert await asyncio.wait_for(client.immutable_get(bytes.fromhex(put["key"])), TIMEOUT) == b"from javascript"
    key = await asyncio.wait_for(client.immutable_put(b"from python"), TIMEOUT)
    got = await js_do(js_on_python, "immutable_get", cmd="immutable_get", key=key.hex())
    assert got["value"] == b"from python".hex()
    await js_do(js_on_python, "mutable_put", cmd="mutable_put", seed=seed(9).hex(), value=b"js v4".hex(), seq=4)
    value = await asyncio.wait_for(client.mutable_get(key_of(9)), TIMEOUT)
    assert value is not None and (value.seq, value.value) == (4, b"js v4")
    await asyncio.wait_for(client.mutable_put(KeyPair.from_seed(seed(10)), b"py v2", seq=2), TIMEOUT)
    got = await js_do(js_on_python, "mutable_get", cmd="mutable_get", public_key=key_of(10).hex(), seq=0)
    assert (got["seq"], got["value"]) == (2, b"py v2".hex())


async def test_a_self_announce_on_python_nodes_is_found_by_find_peer(
    python_network: DHTTestnet, js_on_python: JsPeer
) -> None:
    await js_announce(js_on_python, blake2b_256(key_of(11)), 11, [("127.0.0.1", 4000)])
    client = await python_network.client()
    record = await asyncio.wait_for(client.find_peer(key_of(11)), TIMEOUT)
    assert record is not None and record.public_key == key_of(11)
    got = await js_do(js_on_python, "find_peer", cmd="find_peer", public_key=key_of(11).hex())
    assert got["found"] is True
