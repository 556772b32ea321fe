"""A Python peersockets peer against a real JavaScript hyperdrive 13 owner on loopback TCP.

The Python side knows only the drive key; JavaScript registers the
``peersockets/chat`` extension on ``drive.core`` as a JavaScript app would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from peersockets import KeyPair, PeerEvent, Peersockets, Swarm

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

MiB = 1024 * 1024
COUNT = 1000
# 0 B to 1 MiB, weighted to small sizes (about 256 MiB each way in all)
SIZES = [int(MiB * (i / (COUNT - 1)) ** 3) for i in range(COUNT)]


@asynccontextmanager
async def js_owner(js: StartPeer, tmp_path: Path, *args: str) -> AsyncIterator[tuple[JsPeer, dict]]:  # type: ignore[type-arg]
    peer = await js(
        "hyperdrive_peer.mjs", "--storage", str(tmp_path / "js-drive"), "--listen", *args
    )
    ready = await peer.expect("ready", timeout=20)
    listening = await peer.expect("listening")
    yield peer, {**ready, "port": listening["port"]}


async def next_of(iterator: object, timeout: float = 10.0) -> object:
    return await asyncio.wait_for(iterator.__anext__(), timeout)  # type: ignore[attr-defined]


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_chat_with_javascript_hyperdrive(
    js: StartPeer, tmp_path: Path, python_role: str
) -> None:
    async with js_owner(js, tmp_path) as (peer, info), Swarm(dht=False) as swarm:
        if python_role == "initiator":
            await swarm.connect("127.0.0.1", info["port"])
        else:
            _host, port = await swarm.listen("127.0.0.1", 0)
            await peer.send({"cmd": "connect", "port": port})
        ps = Peersockets(swarm, info["key"])
        assert ps.discovery_key.hex() == info["discovery_key"]
        events = ps.watch()
        chat = ps.join("chat")
        join = await next_of(events, timeout=20)
        assert isinstance(join, PeerEvent) and join.type == "join"
        assert join.public_key.hex() == info["public_key"]
        added = await peer.expect("peer-add", timeout=20)
        assert added["remote_public_key"] == swarm.public_key.hex()

        # A JavaScript app and a Python app chat in both directions.
        await peer.send({"cmd": "send_text", "topic": "chat", "text": "hello from javascript"})
        msg = await next_of(chat)
        assert msg.message == b"hello from javascript" and msg.peer_id == join.peer_id  # type: ignore[attr-defined]
        await chat.send(join.peer_id, b"hello from python")
        got = await peer.expect("ext", topic="chat")
        assert got["length"] == len(b"hello from python")
        assert got["from"] == swarm.public_key.hex()

        if python_role == "initiator":
            await _thousand_each_way(peer, ps, chat, join.peer_id)
            await _fifteen_seconds_of_silence(peer, ps, chat, join.peer_id)

        await ps.close()
        removed = await peer.expect("peer-remove", timeout=20)
        assert removed["remote_public_key"] == swarm.public_key.hex()
        leave = await next_of(events)
        assert leave == PeerEvent("leave", join.peer_id, join.public_key, join.address)
    assert not peer.seen("stream-error")


async def _thousand_each_way(peer: JsPeer, ps: Peersockets, chat: object, peer_id: int) -> None:
    # Python -> JavaScript: in order, intact
    for i, size in enumerate(SIZES):
        await chat.send(peer_id, pattern(size, i))  # type: ignore[attr-defined]
    for i, size in enumerate(SIZES):
        got = await peer.expect("ext", topic="chat", timeout=60)
        assert got["length"] == size, f"message {i}"
        assert got["sha256"] == hashlib.sha256(pattern(size, i)).hexdigest(), f"message {i}"
    # JavaScript -> Python: in order, intact
    await peer.send({"cmd": "send", "topic": "chat", "sizes": SIZES, "seed": 5000})
    for i, size in enumerate(SIZES):
        msg = await next_of(chat, timeout=60)
        assert msg.message == pattern(size, 5000 + i), f"message {i} of {size} bytes"  # type: ignore[attr-defined]


async def _fifteen_seconds_of_silence(
    peer: JsPeer, ps: Peersockets, chat: object, peer_id: int
) -> None:
    await asyncio.sleep(15)
    assert ps.peers == [peer_id]
    assert not peer.seen("peer-remove") and not peer.seen("stream-close")
    await chat.send(peer_id, b"still here")  # type: ignore[attr-defined]
    assert (await peer.expect("ext", topic="chat"))["length"] == len(b"still here")
    await peer.send({"cmd": "send_text", "topic": "chat", "text": "me too"})
    assert (await next_of(chat)).message == b"me too"  # type: ignore[attr-defined]


EXTRA_CORES = 1100


@pytest.mark.timeout(60)
@pytest.mark.parametrize("drive_channel", ["first", "last"])
async def test_javascript_store_with_more_cores_than_the_channel_limit(
    js: StartPeer, tmp_path: Path, drive_channel: str
) -> None:
    # A corestore opens one channel per open core as soon as the stream opens (ids 1..1102
    # here, in the order the cores were opened), before any of our rejects can come back:
    # remote channel ids past the 1024-channel limit must not end the connection, and the
    # drive's channel pairs whether its id is 1 or 1101.
    args = ["--extra-cores", str(EXTRA_CORES)]
    if drive_channel == "last":
        args.append("--extra-cores-first")
    async with js_owner(js, tmp_path, *args) as (peer, info), Swarm(dht=False) as swarm:
        assert info["extra_cores"] == EXTRA_CORES
        conn = await swarm.connect("127.0.0.1", info["port"])
        ps = Peersockets(swarm, info["key"])
        events = ps.watch()
        chat = ps.join("chat")
        connected = await peer.expect("connection")
        assert connected["channels"] > EXTRA_CORES  # the extra cores' channels and the drive's
        try:
            join = await next_of(events)
        except TimeoutError:
            join = None
        assert join is not None, f"the drive's peer never joined: {conn.error!r}"
        assert isinstance(join, PeerEvent) and join.type == "join"
        assert join.public_key.hex() == info["public_key"]
        added = await peer.expect("peer-add")
        assert added["remote_public_key"] == swarm.public_key.hex()
        assert not conn.is_closed, f"the connection ended: {conn.error!r}"

        for i in range(3):
            await chat.send(join.peer_id, pattern(300, i))
        for i in range(3):
            got = await peer.expect("ext", topic="chat")
            assert got["length"] == 300 and got["from"] == swarm.public_key.hex()
            assert got["sha256"] == hashlib.sha256(pattern(300, i)).hexdigest()
        await peer.send({"cmd": "send", "topic": "chat", "size": 1000, "seed": 7, "count": 3})
        for j in range(3):
            msg = await next_of(chat)
            assert msg.message == pattern(1000, 7 + j) and msg.peer_id == join.peer_id  # type: ignore[attr-defined]

        assert not conn.is_closed and ps.peers == [join.peer_id]
        await ps.close()
        await peer.expect("peer-remove")
        assert await next_of(events) == PeerEvent("leave", join.peer_id, join.public_key, join.address)
    assert not peer.seen("stream-error")


async def test_wrong_key_gets_no_channel_and_nobody_crashes(js: StartPeer, tmp_path: Path) -> None:
    async with js_owner(js, tmp_path) as (peer, info), Swarm(dht=False) as swarm:
        conn = await swarm.connect("127.0.0.1", info["port"])
        wrong = Peersockets(swarm, KeyPair.generate().public_key)
        events = wrong.watch()
        with pytest.raises(asyncio.TimeoutError):
            await next_of(events, timeout=2)
        assert wrong.peers == []
        assert not peer.seen("peer-add")
        assert not conn.is_closed  # the channel was rejected; the connection lives on
        # The same connection still serves the right drive.
        right = Peersockets(swarm, info["key"])
        assert (await next_of(right.watch(), timeout=20)).type == "join"  # type: ignore[attr-defined]
        await peer.expect("peer-add", timeout=20)
    assert peer.returncode in (None, 0)
    assert not peer.seen("error")
