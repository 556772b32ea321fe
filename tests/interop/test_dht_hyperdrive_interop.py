"""A JavaScript hyperdrive replicating over a DHT connection with a Python Peersockets peer.

The JavaScript drive owner (tests/interop/js/hyperdrive_peer.mjs --dht) runs a
hyperdht node on a JavaScript testnet (dht_peer.mjs --testnet) and replicates its
corestore over whatever secret stream hyperdht hands over, as hyperswarm does.
The Python side is a Swarm + Peersockets whose Connection is made by
``DHT.connect``/``DHT.listen`` (IK through the DHT, then the secret-stream over a
UDX stream). Both directions are covered; in the second, Python sits behind a
simulated NAT (tests/natsim.py) and JavaScript stays firewalled, so the stream
is holepunched (it runs on puncher sockets on both sides).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from natsim import Nat  # tests/ is on sys.path

from peersockets import PeerEvent, Peersockets, Swarm
from peersockets.connection import Connection
from peersockets.dht import DHT
from peersockets.wire.noise import HandshakeResult

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(120)

COUNT = 200
SIZES = [(i * 53) % 2500 for i in range(COUNT)]


async def next_of(iterator: Any, timeout: float = 20.0) -> Any:
    return await asyncio.wait_for(iterator.__anext__(), timeout)


@pytest_asyncio.fixture
async def testnet(js: StartPeer) -> str:
    net = await js("dht_peer.mjs", "--testnet", "5")
    info = await net.expect("testnet", timeout=30)
    first = info["bootstrap"][0]
    return f"{first['host']}:{first['port']}"


async def exchange(peer: JsPeer, ps: Peersockets, swarm: Swarm) -> None:
    """The JavaScript owner joins the Python peer; messages both ways, in order and intact."""
    events = ps.watch()
    chat = ps.join("chat")
    join = await next_of(events)
    assert isinstance(join, PeerEvent) and join.type == "join"
    added = await peer.expect("peer-add", timeout=20)
    assert added["remote_public_key"] == swarm.public_key.hex()
    await peer.send({"cmd": "send_text", "topic": "chat", "text": "hello over the DHT"})
    message = await next_of(chat)
    assert message.message == b"hello over the DHT" and message.peer_id == join.peer_id
    for i, size in enumerate(SIZES):
        await chat.send(join.peer_id, pattern(size, i))
    for i, size in enumerate(SIZES):
        got = await peer.expect("ext", topic="chat", timeout=30)
        assert got["sha256"] == hashlib.sha256(pattern(size, i)).hexdigest(), f"message {i}"
        assert got["from"] == swarm.public_key.hex()
    await peer.send({"cmd": "send", "topic": "chat", "sizes": SIZES, "seed": 900})
    for i, size in enumerate(SIZES):
        assert (await next_of(chat, 30)).message == pattern(size, 900 + i), f"message {i}"
    assert not peer.pending("ext")


def maker(swarm: Swarm) -> Any:
    def make(_key_pair: Any, initiator: bool, handshake: HandshakeResult) -> Connection:
        return swarm.make_connection(initiator, handshake)

    return make


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def test_python_connects_to_a_javascript_drive_owner_by_key(
    js: StartPeer, testnet: str, tmp_path: Path, stack: AsyncExitStack
) -> None:
    peer = await js("hyperdrive_peer.mjs", "--storage", str(tmp_path / "js"), "--dht", testnet, "--dht-listen")
    info = await peer.expect("ready", timeout=20)
    await peer.expect("dht-listening", timeout=30)
    host, port = testnet.rsplit(":", 1)
    dht = await stack.enter_async_context(DHT(bootstrap=[(host, int(port))], host="127.0.0.1"))
    swarm = await stack.enter_async_context(Swarm(dht=False))
    ps = await stack.enter_async_context(Peersockets(swarm, info["key"]))
    connection = await dht.connect(
        bytes.fromhex(info["public_key"]), key_pair=swarm.key_pair, make_connection=maker(swarm), timeout=30
    )
    assert connection.remote_public_key.hex() == info["public_key"]
    connected = await peer.expect("connection", timeout=20)
    assert connected["transport"] == "dht" and connected["remote_public_key"] == swarm.public_key.hex()
    assert connected["handshake_hash"] == connection.handshake_hash.hex()
    await exchange(peer, ps, swarm)
    await peer.close()  # before the testnet: its server unannounces from the testnet's nodes


async def test_a_javascript_drive_owner_holepunches_to_a_python_peer_behind_a_nat(
    js: StartPeer, testnet: str, tmp_path: Path, stack: AsyncExitStack
) -> None:
    host, port = testnet.rsplit(":", 1)
    nat = await stack.enter_async_context(Nat())
    dht = await stack.enter_async_context(DHT(bootstrap=[(host, int(port))], host="127.0.0.1", bind_socket=nat.bind))
    assert dht.node.firewalled
    swarm = await stack.enter_async_context(Swarm(dht=False))
    peer = await js(
        "hyperdrive_peer.mjs", "--storage", str(tmp_path / "js"), "--dht", testnet, "--dht-quick-firewall", "false"
    )
    info = await peer.expect("ready", timeout=20)
    assert (await peer.expect("dht-ready", timeout=30))["firewalled"] is True
    ps = await stack.enter_async_context(Peersockets(swarm, info["key"]))
    server = await dht.listen(swarm.key_pair, make_connection=maker(swarm), share_local_address=False)
    await peer.send({"cmd": "dht_connect", "public_key": swarm.public_key.hex()})
    connected = await peer.expect("connection", timeout=30)
    assert connected["transport"] == "dht" and connected["socket"] == "puncher"
    await exchange(peer, ps, swarm)  # (JavaScript reports "connection" before its first packet reaches us)
    assert server.accepts == {"puncher": 1}
    assert nat.dropped + nat.bypassed > 0
    await peer.close()
