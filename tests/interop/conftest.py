"""Interop fixtures: real JavaScript peers (pinned npm packages) on loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from peersockets.connection import Connection
from peersockets.wire.crypto import KeyPair

from .jspeer import JsPeer, close_all

StartPeer = Callable[..., Awaitable[JsPeer]]


@pytest_asyncio.fixture
async def js() -> AsyncIterator[StartPeer]:
    """Start JavaScript peers; all are stopped (and reaped) after the test."""
    peers: list[JsPeer] = []

    async def start(script: str, *args: str) -> JsPeer:
        peer = await JsPeer.start(script, *args)
        peers.append(peer)
        return peer

    try:
        yield start
    finally:
        await close_all(peers)


async def python_connects(port: int, key_pair: KeyPair | None = None) -> Connection:
    """Dial a JavaScript peer on 127.0.0.1 as initiator and wait for the handshake."""
    loop = asyncio.get_running_loop()
    kp = key_pair or KeyPair.generate()
    _transport, conn = await loop.create_connection(lambda: Connection(kp, True), "127.0.0.1", port)
    await asyncio.wait_for(conn.wait_established(), 10)
    return conn


class PythonListener:
    """A one-connection TCP listener on 127.0.0.1 whose Connection is the responder."""

    def __init__(self, key_pair: KeyPair | None = None) -> None:
        self.key_pair = key_pair or KeyPair.generate()
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    def _make(self) -> Connection:
        conn = Connection(self.key_pair, False)
        self.connections.put_nowait(conn)
        return conn

    async def __aenter__(self) -> PythonListener:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._make, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def accept(self) -> Connection:
        conn = await asyncio.wait_for(self.connections.get(), 10)
        await asyncio.wait_for(conn.wait_established(), 10)
        return conn
