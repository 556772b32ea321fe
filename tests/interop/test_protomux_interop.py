"""protomux against the real protomux package on a real secret-stream over loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from peersockets.connection import Connection
from peersockets.wire.encoding import decode_buffer, decode_string, encode_buffer, encode_string
from peersockets.wire.protomux import Channel

from .conftest import PythonListener, StartPeer, python_connects
from .jspeer import JsPeer

CHANNEL_ID = bytes([0x42]) * 32


class Recorder:
    """A ChannelHandler whose events tests can await."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        self.events.put_nowait(("open", channel.protocol, handshake))

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        if message_type == 0:
            value: Any = decode_buffer(payload, 0)[0]
        else:
            value = decode_string(payload, 0)[0]
        self.events.put_nowait(("message", message_type, value))

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        self.events.put_nowait(("close", by_remote, channel.rejected))

    async def next(self, timeout: float = 10) -> tuple[Any, ...]:
        return await asyncio.wait_for(self.events.get(), timeout)


@asynccontextmanager
async def connected(
    js: StartPeer, python_role: str, *js_args: str
) -> AsyncIterator[tuple[Connection, JsPeer]]:
    if python_role == "initiator":
        peer = await js("protomux_peer.mjs", "--listen", *js_args)
        port = (await peer.expect("listening"))["port"]
        conn = await python_connects(port)
        try:
            yield conn, peer
        finally:
            conn.abort()
    else:
        async with PythonListener() as listener:
            peer = await js("protomux_peer.mjs", "--connect", str(listener.port), *js_args)
            conn = await listener.accept()
            try:
                yield conn, peer
            finally:
                conn.abort()


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_python_opens_channel_and_messages_flow(js: StartPeer, python_role: str) -> None:
    async with connected(js, python_role, "--accept", "test/echo") as (conn, peer):
        rec = Recorder()
        channel = conn.mux.open("test/echo", CHANNEL_ID, b"\x01\x02", rec)
        opened = await peer.expect("open", protocol="test/echo")
        assert opened["id"] == CHANNEL_ID.hex() and opened["handshake"] == "0102"
        assert await rec.next() == ("open", "test/echo", b"")
        channel.send(0, encode_buffer(b"\xde\xad"))
        channel.send(1, encode_string("héllo"))
        assert (await peer.expect("message"))["data"] == "dead"
        assert (await peer.expect("message"))["text"] == "héllo"
        # a batch from JavaScript: several messages in one frame
        items = [{"type": 1, "text": f"item {i}"} for i in range(5)] + [{"type": 0, "data": "ff"}]
        await peer.send(
            {"cmd": "batch", "protocol": "test/echo", "id": CHANNEL_ID.hex(), "items": items}
        )
        got = [await rec.next() for _ in items]
        assert got == [("message", 1, f"item {i}") for i in range(5)] + [("message", 0, b"\xff")]
        # JavaScript closes its side: our channel closes, by the remote
        await peer.send({"cmd": "close", "protocol": "test/echo", "id": CHANNEL_ID.hex()})
        assert await rec.next() == ("close", True, False)
        assert channel.closed


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_javascript_opens_channel_python_accepts(js: StartPeer, python_role: str) -> None:
    async with connected(js, python_role) as (conn, peer):
        rec = Recorder()
        opened: list[Channel] = []

        def pair(protocol: str, id: bytes | None) -> None:
            opened.append(conn.mux.open(protocol, id, b"\x07", rec))

        conn.mux.pair("test/from-js", None, pair)
        await peer.send(
            {"cmd": "open", "protocol": "test/from-js", "id": None, "handshake": "0a0b"}
        )
        assert await rec.next() == ("open", "test/from-js", b"\x0a\x0b")
        js_open = await peer.expect("open", protocol="test/from-js")
        assert js_open["handshake"] == "07"
        # a burst from Python goes out as one batch; JavaScript decodes every item
        for i in range(20):
            opened[0].send(1, encode_string(f"burst {i}"))
        texts = [(await peer.expect("message"))["text"] for _ in range(20)]
        assert texts == [f"burst {i}" for i in range(20)]
        # Python closes: JavaScript sees a remote close
        opened[0].close()
        closed = await peer.expect("close", protocol="test/from-js")
        assert closed["remote"] is True and closed["opened"] is True
        assert await rec.next() == ("close", False, False)
        # the id is free again: the next channel reuses local id 1 and still works
        first_id = opened[0].local_id
        await peer.send(
            {"cmd": "open", "protocol": "test/from-js", "id": "01" * 32, "handshake": ""}
        )
        assert await rec.next() == ("open", "test/from-js", b"")
        assert opened[1].local_id == first_id
        opened[1].send(1, encode_string("on the reused id"))
        assert (await peer.expect("message", id="01" * 32))["text"] == "on the reused id"


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_rejects_both_ways(js: StartPeer, python_role: str) -> None:
    async with connected(js, python_role) as (conn, peer):
        rec = Recorder()
        channel = conn.mux.open("test/nobody-home", None, b"", rec)
        assert await rec.next() == ("close", True, True)  # JavaScript rejected it
        assert channel.rejected
        # JavaScript opens something Python never paired: Python rejects it
        await peer.send({"cmd": "open", "protocol": "test/unwanted", "id": None, "handshake": ""})
        closed = await peer.expect("close", protocol="test/unwanted")
        assert closed["opened"] is False and closed["remote"] is True
        assert not conn.is_closed  # rejects end channels, never the connection


@pytest.mark.parametrize("python_role", ["initiator", "responder"])
async def test_close_before_slow_javascript_pairing_closes_its_channel(
    js: StartPeer, python_role: str
) -> None:
    # JavaScript pairs incoming opens asynchronously (here 300 ms late): Python's close
    # reaches it while its remote slot has no channel yet and is ignored there. When the
    # JavaScript channel opens, Python closes it again, so no ghost channel is left open.
    async with connected(js, python_role, "--accept", "test/slow", "--accept-delay", "300") as (
        conn,
        peer,
    ):
        rec = Recorder()
        channel = conn.mux.open("test/slow", CHANNEL_ID, b"", rec)
        first_id = channel.local_id
        channel.close()
        assert await rec.next() == ("close", False, False)
        opened = await peer.expect("open", protocol="test/slow", id=CHANNEL_ID.hex())
        assert opened["handshake"] == ""
        closed = await peer.expect("close", timeout=5, protocol="test/slow", id=CHANNEL_ID.hex())
        assert closed["remote"] is True
        assert not conn.is_closed
        # the id was freed: the next channel reuses it and JavaScript accepts the open
        other = "01" * 32
        again = conn.mux.open("test/slow", bytes.fromhex(other), b"\x05", rec)
        assert again.local_id == first_id
        assert (await peer.expect("open", protocol="test/slow", id=other))["handshake"] == "05"
        assert await rec.next() == ("open", "test/slow", b"")
        again.send(1, encode_string("on the freed id"))
        assert (await peer.expect("message", id=other))["text"] == "on the freed id"
        assert not conn.is_closed and not peer.seen("stream-error")
