"""Python swarms and JavaScript hyperdrive apps on hyperswarm meet by the drive key alone.

The JavaScript side is tests/interop/js/swarm_peer.mjs (hyperswarm 4.17.2 joining
``drive.discoveryKey``, every connection handed to ``store.replicate``); the Python
side is ``Swarm(bootstrap=...)`` + ``Peersockets(swarm, drive_key)``: no address is
given anywhere. The DHT is a JavaScript testnet (dht_peer.mjs --testnet 5) or a
network of Python nodes (DHTTestnet, 4 nodes: hyperdht needs a few storing nodes).
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

from peersockets import PeerEvent, Peersockets, Swarm
from peersockets.testing import DHTTestnet

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(150)

SCRIPT = "swarm_peer.mjs"
TIMEOUT = 30.0
COUNT = 1000
SIZES = [(i * 37) % 3001 for i in range(COUNT)]


async def next_of(iterator: Any, timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(iterator.__anext__(), timeout)


@pytest_asyncio.fixture(params=["js-testnet", "python-testnet"])
async def bootstrap(request: pytest.FixtureRequest, js: StartPeer) -> AsyncIterator[str]:
    if request.param == "js-testnet":
        net = await js("dht_peer.mjs", "--testnet", "5")
        first = (await net.expect("testnet", timeout=TIMEOUT))["bootstrap"][0]
        yield f"{first['host']}:{first['port']}"
        return
    async with DHTTestnet(4) as testnet:
        host, port = testnet.bootstrap[0]
        yield f"{host}:{port}"


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def js_peer(js: StartPeer, tmp_path: Path, name: str, bootstrap: str, *args: str) -> tuple[JsPeer, dict[str, Any]]:
    peer = await js(SCRIPT, "--storage", str(tmp_path / name), "--bootstrap", bootstrap, *args)
    return peer, await peer.expect("ready", timeout=TIMEOUT)


async def python_peer(stack: AsyncExitStack, bootstrap: str, drive_key: str) -> tuple[Swarm, Peersockets]:
    swarm = await stack.enter_async_context(Swarm(bootstrap=[bootstrap]))
    ps = await stack.enter_async_context(Peersockets(swarm, drive_key))
    return swarm, ps


async def test_a_python_peer_and_a_hyperswarm_app_meet_and_talk(
    js: StartPeer, tmp_path: Path, bootstrap: str, stack: AsyncExitStack
) -> None:
    """No address given: they meet; 1,000 messages each way, in order; when the JavaScript app
    exits the Python peer sees it leave, and when it comes back (same key) join again."""
    owner, info = await js_peer(js, tmp_path, "owner", bootstrap, "--seed", "11" * 32)
    await owner.expect("joined", timeout=TIMEOUT)
    swarm, ps = await python_peer(stack, bootstrap, info["key"])
    events = ps.watch()
    chat = ps.join("chat")
    join = await next_of(events)
    assert isinstance(join, PeerEvent) and join.type == "join" and join.public_key.hex() == info["public_key"]
    await owner.expect("peer-add", timeout=TIMEOUT, remote_public_key=swarm.public_key.hex())
    for i, size in enumerate(SIZES):
        await chat.send(join.peer_id, pattern(size, i))
    for i, size in enumerate(SIZES):
        got = await owner.expect("ext", topic="chat", timeout=TIMEOUT)
        assert got["sha256"] == hashlib.sha256(pattern(size, i)).hexdigest(), f"message {i}"
    await owner.send({"cmd": "send", "topic": "chat", "sizes": SIZES, "seed": 5000})
    for i, size in enumerate(SIZES):
        message = await next_of(chat)
        assert message.message == pattern(size, 5000 + i), f"message {i}"
    assert len(swarm.connections) == 1  # one connection kept, whichever side dialled

    await owner.close()
    left = await next_of(events)
    assert left.type == "leave" and left.public_key == join.public_key

    back, again = await js_peer(js, tmp_path, "owner", bootstrap, "--seed", "11" * 32)
    assert again["key"] == info["key"] and again["public_key"] == info["public_key"]
    rejoined = await next_of(events, 60)  # our retries, or its lookup finding us
    assert rejoined.type == "join" and rejoined.public_key == join.public_key
    await back.send({"cmd": "send_text", "topic": "chat", "text": "back again"})
    assert (await next_of(chat)).message == b"back again"
    await back.close()


async def test_three_python_and_two_javascript_peers_all_see_each_other(
    js: StartPeer, tmp_path: Path, bootstrap: str, stack: AsyncExitStack
) -> None:
    owner, info = await js_peer(js, tmp_path, "owner", bootstrap)
    await owner.expect("joined", timeout=TIMEOUT)
    other, _ = await js_peer(js, tmp_path, "other", bootstrap, "--key", info["key"])
    # hyperswarm looks a topic up once per join (then every 10 min): two peers joining at the
    # same moment may both look up before either announced, and miss each other till then
    await other.expect("joined", timeout=TIMEOUT)
    pythons = [await python_peer(stack, bootstrap, info["key"]) for _ in range(3)]
    everyone = {info["public_key"], *(swarm.public_key.hex() for swarm, _ in pythons)}
    for swarm, ps in pythons:
        async def sees_four(ps: Peersockets = ps) -> None:
            while len(ps.peers) < 4:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(sees_four(), 60)
        assert {ps.peer_public_key(p).hex() for p in ps.peers} == (everyone | {other_key(other)}) - {swarm.public_key.hex()}
    python_keys = {swarm.public_key.hex() for swarm, _ in pythons}
    for peer in (owner, other):
        added: set[str] = set()
        while not python_keys <= added:
            added.add((await peer.expect("peer-add", timeout=60))["remote_public_key"])
    await other.close()
    await owner.close()


def other_key(peer: JsPeer) -> str:
    ready = peer.seen("ready")[0]
    key: str = ready["public_key"]
    return key


async def test_a_python_peer_on_two_drives_sees_the_peers_of_both(
    js: StartPeer, tmp_path: Path, bootstrap: str, stack: AsyncExitStack
) -> None:
    first, first_info = await js_peer(js, tmp_path, "first", bootstrap)
    second, second_info = await js_peer(js, tmp_path, "second", bootstrap)
    await first.expect("joined", timeout=TIMEOUT)
    await second.expect("joined", timeout=TIMEOUT)
    swarm = await stack.enter_async_context(Swarm(bootstrap=[bootstrap]))
    on_first = await stack.enter_async_context(Peersockets(swarm, first_info["key"]))
    on_second = await stack.enter_async_context(Peersockets(swarm, second_info["key"]))
    chat_first, chat_second = on_first.join("chat"), on_second.join("chat")
    join_first = await next_of(on_first.watch())
    join_second = await next_of(on_second.watch())
    assert join_first.public_key.hex() == first_info["public_key"]
    assert join_second.public_key.hex() == second_info["public_key"]
    await first.expect("peer-add", timeout=TIMEOUT, remote_public_key=swarm.public_key.hex())
    await second.expect("peer-add", timeout=TIMEOUT, remote_public_key=swarm.public_key.hex())
    await first.send({"cmd": "send_text", "topic": "chat", "text": "on the first drive"})
    await second.send({"cmd": "send_text", "topic": "chat", "text": "on the second drive"})
    assert (await next_of(chat_first)).message == b"on the first drive"
    assert (await next_of(chat_second)).message == b"on the second drive"
    await first.close()
    await second.close()


async def test_joining_at_the_same_moment_both_keep_the_same_connection(
    js: StartPeer, tmp_path: Path, bootstrap: str, stack: AsyncExitStack
) -> None:
    """Both sides may dial: hyperswarm's rule (which Python follows) decides, so that the
    JavaScript app and the Python peer keep one and the same connection."""
    owner, info = await js_peer(js, tmp_path, "owner", bootstrap)
    swarm, ps = await python_peer(stack, bootstrap, info["key"])  # no waiting for its join
    events = ps.watch()
    chat = ps.join("chat")
    join = await next_of(events)
    await owner.expect("peer-add", timeout=TIMEOUT, remote_public_key=swarm.public_key.hex())
    await owner.send({"cmd": "send_text", "topic": "chat", "text": "one connection"})
    assert (await next_of(chat)).message == b"one connection"
    await asyncio.sleep(1.5)  # a duplicate, if any, is closed by now (and a retry would be back)
    assert len(swarm.connections) == 1
    opened = [e for e in owner.seen("connection") if e["remote_public_key"] == swarm.public_key.hex()]
    closed = [e for e in owner.seen("connection-close") if e["remote_public_key"] == swarm.public_key.hex()]
    assert len(opened) - len(closed) == 1
    assert opened[-1]["handshake_hash"] == swarm.connections[0].handshake_hash.hex()
    assert ps.peers == [join.peer_id]
    await owner.close()
