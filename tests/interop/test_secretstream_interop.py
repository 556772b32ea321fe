"""secret-stream against @hyperswarm/secret-stream over loopback TCP, Python as either role."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from peersockets.connection import Connection
from peersockets.errors import DecryptionError
from peersockets.wire.crypto import KeyPair
from peersockets.wire.secretstream import MAX_MESSAGE

from .conftest import PythonListener, StartPeer, python_connects
from .jspeer import JsPeer, pattern

SIZES = [0, 1, 64 * 1024, MAX_MESSAGE]


class Inbox:
    """Collects raw secret-stream messages of a Connection."""

    def __init__(self, conn: Connection) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        conn.message_handler = self.queue.put_nowait

    async def get(self, timeout: float = 30) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)


@asynccontextmanager
async def connected(
    js: StartPeer, python_role: str, *js_args: str
) -> AsyncIterator[tuple[Connection, JsPeer, KeyPair]]:
    key_pair = KeyPair.generate()
    if python_role == "initiator":
        peer = await js("secretstream_peer.mjs", "--listen", *js_args)
        port = (await peer.expect("listening"))["port"]
        conn = await python_connects(port, key_pair)
        try:
            yield conn, peer, key_pair
        finally:
            conn.abort()
    else:
        async with PythonListener(key_pair) as listener:
            peer = await js("secretstream_peer.mjs", "--connect", str(listener.port), *js_args)
            conn = await listener.accept()
            try:
                yield conn, peer, key_pair
            finally:
                conn.abort()


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_handshake_agrees(js: StartPeer, python_role: str) -> None:
    async with connected(js, python_role) as (conn, peer, key_pair):
        info = await peer.expect("handshake")
        assert info["handshake_hash"] == conn.handshake_hash.hex()
        assert info["remote_public_key"] == key_pair.public_key.hex()
        assert info["public_key"] == conn.remote_public_key.hex()
        assert info["initiator"] is (python_role == "responder")


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_messages_both_ways_intact(js: StartPeer, python_role: str) -> None:
    async with connected(js, python_role, "--echo") as (conn, peer, _):
        inbox = Inbox(conn)
        await peer.expect("handshake")
        for i, size in enumerate(SIZES):
            message = pattern(size, i)
            conn.send_raw(message)
            got = await peer.expect("message", timeout=60)
            assert got["length"] == size
            assert got["sha256"] == hashlib.sha256(message).hexdigest()
            echoed = await inbox.get(timeout=60)  # JavaScript -> Python
            assert echoed == message
        for i, size in enumerate(SIZES):  # messages JavaScript originates
            await peer.send({"cmd": "send", "size": size, "seed": 100 + i})
            assert await inbox.get(timeout=60) == pattern(size, 100 + i)


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_tampered_frame_from_javascript_ends_connection(
    js: StartPeer, python_role: str
) -> None:
    async with connected(js, python_role) as (conn, peer, _):
        inbox = Inbox(conn)
        await peer.send({"cmd": "send", "size": 10, "seed": 1})
        assert await inbox.get() == pattern(10, 1)
        await peer.send({"cmd": "send_tampered", "size": 10, "seed": 2})
        error = await asyncio.wait_for(conn.wait_closed(), 10)
        assert isinstance(error, DecryptionError)
        assert "failed authentication" in str(error)
        assert inbox.queue.empty()


async def test_tampered_frame_from_python_is_refused_by_javascript(js: StartPeer) -> None:
    async with connected(js, "initiator") as (conn, peer, _):
        await peer.expect("handshake")
        assert conn.transport is not None
        frame = bytearray(conn.stream.encrypt(b"hello"))
        frame[5] ^= 0x01
        conn.transport.write(bytes(frame))
        await peer.expect("stream-error")
        await asyncio.wait_for(conn.wait_closed(), 10)
