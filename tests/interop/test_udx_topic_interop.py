"""A Python peersockets peer against a real JavaScript hyperdrive 13 owner over one UDX stream.

The Python side runs its Swarm's Connection over peersockets.udx (pure Python);
the JavaScript side runs udx-native 1.21.3 and replicates its corestore over the
stream as hyperswarm does with a UDX connection:
``store.replicate(new NoiseSecretStream(initiator, udx.createStream(id), { keyPair }))``
(tests/interop/js/hyperdrive_peer.mjs --udx, command udx_connect).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from udxrelay import LossyRelay  # tests/ is on sys.path: the interop package's root

from peersockets import PeerEvent, PeerEvents, Peersockets, Swarm, Topic
from peersockets.connection import Connection
from peersockets.udx import UDXSocket, UDXStream

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(180)

PYTHON_ID = 11
JS_ID = 22
COUNT = 1000
# 0 B to ~3 KB: empty, sub-packet and multi-packet messages (a UDX packet carries ~1.2 KB)
SIZES = [(i * 37) % 3001 for i in range(COUNT)]
MiB = 1024 * 1024
LARGE = MiB  # the largest message of the TCP tests


@dataclass
class Meeting:
    peer: JsPeer
    info: dict[str, Any]
    swarm: Swarm
    sock: UDXSocket
    stream: UDXStream
    conn: Connection
    ps: Peersockets
    events: PeerEvents
    chat: Topic
    relay: LossyRelay | None


async def next_of(iterator: Any, timeout: float = 20.0) -> Any:
    return await asyncio.wait_for(iterator.__anext__(), timeout)


@asynccontextmanager
async def udx_meeting(
    js: StartPeer,
    tmp_path: Path,
    python_role: str,
    *,
    framed: bool = False,
    **impairments: Any,
) -> AsyncIterator[Meeting]:
    """A JavaScript drive owner and a Python Swarm + Peersockets joined by one UDX stream.

    framed: the JavaScript stream is made with ``{ framed: true }``, as hyperdht's are.
    impairments: the stream runs through a LossyRelay with these settings (loss=...).
    """
    peer = await js("hyperdrive_peer.mjs", "--storage", str(tmp_path / "js-drive"), "--udx")
    info = await peer.expect("ready", timeout=20)
    js_port = (await peer.expect("udx-listening"))["port"]
    async with AsyncExitStack() as stack:
        sock = await UDXSocket.bind("127.0.0.1", 0)
        stack.push_async_callback(sock.close)
        js_address: tuple[str, int] = ("127.0.0.1", js_port)  # where Python sends
        py_port = sock.address[1]  # where JavaScript sends (on 127.0.0.1)
        relay = None
        if impairments:
            relay = await LossyRelay.start(
                target_a=("127.0.0.1", py_port), target_b=js_address, **impairments
            )
            stack.push_async_callback(relay.close)
            js_address, py_port = relay.address_for_a, relay.address_for_b[1]
        swarm = Swarm(dht=False)
        stack.push_async_callback(swarm.close)  # runs before the sockets close
        initiator = python_role == "initiator"
        conn = swarm.make_connection(initiator)
        udx_connect = {
            "cmd": "udx_connect",
            "local_id": JS_ID,
            "remote_id": PYTHON_ID,
            "port": py_port,
            "initiator": not initiator,
            "framed": framed,
        }
        # The responder's stream is connected first, so the initiator's first packet finds it.
        if initiator:
            await peer.send(udx_connect)
            await peer.expect("udx-stream", local_id=JS_ID)
            stream = sock.connect_protocol(conn, PYTHON_ID, JS_ID, js_address)
        else:
            stream = sock.connect_protocol(conn, PYTHON_ID, JS_ID, js_address)
            await peer.send(udx_connect)
            await peer.expect("udx-stream", local_id=JS_ID)
        await asyncio.wait_for(conn.wait_established(), 20)
        assert stream.get_protocol() is conn
        assert conn.remote_public_key.hex() == info["public_key"]
        connected = await peer.expect("connection", timeout=20)
        assert connected["transport"] == "udx" and connected["local_id"] == JS_ID
        assert connected["remote_public_key"] == swarm.public_key.hex()
        assert connected["initiator"] is (not initiator)
        assert connected["handshake_hash"] == conn.handshake_hash.hex()

        ps = Peersockets(swarm, info["key"])
        stack.push_async_callback(ps.close)  # runs first
        assert ps.discovery_key.hex() == info["discovery_key"]
        events = ps.watch()
        chat = ps.join("chat")
        yield Meeting(peer, info, swarm, sock, stream, conn, ps, events, chat, relay)


@pytest.mark.parametrize("framed", [False, True], ids=["plain", "framed"])
@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_topic_messages_over_udx(
    js: StartPeer, tmp_path: Path, python_role: str, framed: bool
) -> None:
    async with udx_meeting(js, tmp_path, python_role, framed=framed) as m:
        await _exchange(m)


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_topic_messages_over_udx_on_a_lossy_path(
    js: StartPeer, tmp_path: Path, python_role: str
) -> None:
    # Both UDX implementations recover each other's losses, duplicates and reorderings.
    async with udx_meeting(
        js, tmp_path, python_role, loss=0.03, duplicate=0.01, reorder=0.03, seed=7
    ) as m:
        await _exchange(m)
        assert m.relay is not None
        assert m.relay.a_to_b.lost > 0 and m.relay.b_to_a.lost > 0


async def _exchange(m: Meeting) -> None:
    """Join; one message, 1,000 messages and a large one each way; the JavaScript peer exits."""
    peer, chat = m.peer, m.chat
    # The JavaScript owner joins, by its public key, on the UDX connection.
    join = await next_of(m.events)
    assert isinstance(join, PeerEvent) and join.type == "join"
    assert join.public_key.hex() == m.info["public_key"]
    added = await peer.expect("peer-add", timeout=20)
    assert added["remote_public_key"] == m.swarm.public_key.hex()
    assert m.ps.peers == [join.peer_id]
    assert m.swarm.connections == [m.conn]

    # One message each way.
    await peer.send({"cmd": "send_text", "topic": "chat", "text": "hello over udx"})
    msg = await next_of(chat)
    assert msg.message == b"hello over udx" and msg.peer_id == join.peer_id
    assert msg.public_key == join.public_key
    await chat.send(join.peer_id, b"hello from python")
    got = await peer.expect("ext", topic="chat", timeout=20)
    assert got["length"] == len(b"hello from python")
    assert got["sha256"] == hashlib.sha256(b"hello from python").hexdigest()
    assert got["from"] == m.swarm.public_key.hex()

    # 1,000 messages each way, in order and intact.
    for i, size in enumerate(SIZES):
        await chat.send(join.peer_id, pattern(size, i))
    for i, size in enumerate(SIZES):
        got = await peer.expect("ext", topic="chat", timeout=30)
        assert got["length"] == size, f"message {i}"
        assert got["sha256"] == hashlib.sha256(pattern(size, i)).hexdigest(), f"message {i}"
    await peer.send({"cmd": "send", "topic": "chat", "sizes": SIZES, "seed": 5000})
    for i, size in enumerate(SIZES):
        msg = await next_of(chat, timeout=30)
        assert msg.peer_id == join.peer_id
        assert msg.message == pattern(size, 5000 + i), f"message {i} of {size} bytes"

    # A large message each way, then a small one behind it: intact and in order.
    await chat.send(join.peer_id, pattern(LARGE, 7))
    await chat.send(join.peer_id, b"after the large one")
    got = await peer.expect("ext", topic="chat", timeout=60)
    assert got["length"] == LARGE
    assert got["sha256"] == hashlib.sha256(pattern(LARGE, 7)).hexdigest()
    got = await peer.expect("ext", topic="chat", timeout=30)
    assert got["sha256"] == hashlib.sha256(b"after the large one").hexdigest()
    await peer.send({"cmd": "send", "topic": "chat", "sizes": [LARGE, 5], "seed": 9})
    msg = await next_of(chat, timeout=60)
    assert len(msg.message) == LARGE and msg.message == pattern(LARGE, 9)
    assert (await next_of(chat)).message == pattern(5, 10)

    assert not m.conn.is_closed and m.ps.peers == [join.peer_id]
    assert not peer.pending("ext"), "JavaScript got more messages than were sent"

    # The JavaScript peer exits: its peer leaves and the UDX connection ends (on a clear
    # path: its one DESTROY packet is not retransmitted).
    if m.relay is not None:
        m.relay.loss = m.relay.duplicate = m.relay.reorder = 0.0
    await peer.close()
    assert peer.returncode == 0, peer.stderr
    leave = await next_of(m.events, timeout=30)
    assert leave == PeerEvent("leave", join.peer_id, join.public_key, join.address)
    assert m.ps.peers == []
    await asyncio.wait_for(m.conn.wait_closed(), 30)
    await asyncio.wait_for(m.stream.wait_closed(), 30)
    assert m.swarm.connections == []
    assert not peer.seen("stream-error") and not peer.seen("error")


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_python_leaves_first_and_the_udx_stream_ends_cleanly(
    js: StartPeer, tmp_path: Path, python_role: str
) -> None:
    async with udx_meeting(js, tmp_path, python_role) as m:
        join = await next_of(m.events)
        assert join.type == "join"
        await m.peer.expect("peer-add", timeout=20)
        await m.ps.close()
        removed = await m.peer.expect("peer-remove", timeout=20)
        assert removed["remote_public_key"] == m.swarm.public_key.hex()
        # Closing the swarm ends the secret stream, so the UDX stream: END both ways, no reset.
        await m.swarm.close(timeout=20)
        closed = await m.peer.expect("stream-close", timeout=20)
        assert closed["transport"] == "udx" and closed["local_id"] == JS_ID
        await asyncio.wait_for(m.stream.wait_closed(), 20)
        assert m.conn.has_ended and m.conn.error is None
        assert m.stream.closed.exception() is None
    assert not m.peer.seen("stream-error") and not m.peer.seen("error")
