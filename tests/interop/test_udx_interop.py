"""Python UDX against udx-native (tests/interop/js/udx_peer.mjs), Python on either side.

Every transfer is sha256-checked; the lossy paths go through tests/udxrelay.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from udxrelay import LossyRelay

from peersockets.errors import StreamReset, StreamTimeout
from peersockets.udx import UDXSocket, UDXStream

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(180)

SCRIPT = "udx_peer.mjs"
MIB = 1024 * 1024
TIMEOUT = 60.0
PY_ID, JS_ID = 0x11223344, 0x55667788


def digest(size: int, seed: int = 0) -> str:
    return hashlib.sha256(pattern(size, seed)).hexdigest()


@pytest_asyncio.fixture
async def py() -> AsyncIterator[UDXSocket]:
    sock = await UDXSocket.bind("127.0.0.1", 0)
    try:
        yield sock
    finally:
        await sock.close()


async def start_js(js: StartPeer) -> tuple[JsPeer, int]:
    peer = await js(SCRIPT)
    listening = await peer.expect("listening")
    return peer, int(listening["port"])


async def js_stream(peer: JsPeer, **cmd: Any) -> None:
    await peer.send({"cmd": "stream", **cmd})
    await peer.expect("stream-created", local_id=cmd["local_id"])


async def read_all(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read to EOF in chunks; (length, sha256) of everything read."""
    digest_ = hashlib.sha256()
    length = 0
    while chunk := await reader.read(1024 * 1024):
        digest_.update(chunk)
        length += len(chunk)
    return length, digest_.hexdigest()


async def python_to_js(py: UDXSocket, js_peer: JsPeer, port: int, size: int, seed: int, **settings: Any) -> UDXStream:
    """Python writes pattern(size, seed) and ends; the JS sink checks it and ends back."""
    await js_stream(js_peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="sink")
    reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port), **settings)
    writer.write(pattern(size, seed))
    writer.write_eof()
    end = await js_peer.expect("stream-end", local_id=JS_ID, timeout=TIMEOUT)
    assert (end["length"], end["sha256"]) == (size, digest(size, seed))
    assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (0, hashlib.sha256().hexdigest())
    await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
    await js_peer.expect("stream-close", local_id=JS_ID, timeout=TIMEOUT)
    assert not js_peer.seen("stream-error")
    stream = writer.transport
    assert isinstance(stream, UDXStream) and stream.closed.exception() is None
    return stream


async def js_to_python(py: UDXSocket, js_peer: JsPeer, port: int, size: int, seed: int) -> None:
    """The JS source writes pattern(size, seed) and ends; Python checks it and ends back."""
    reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port))
    await js_stream(js_peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="source", size=size, seed=seed)
    assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (size, digest(size, seed))
    writer.write_eof()
    await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
    await js_peer.expect("stream-close", local_id=JS_ID, timeout=TIMEOUT)
    assert not js_peer.seen("stream-error")


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * MIB], ids=["0B", "1B", "64KiB", "64MiB"])
async def test_python_to_udx_native(js: StartPeer, py: UDXSocket, size: int) -> None:
    peer, port = await start_js(js)
    await python_to_js(py, peer, port, size, seed=size % 251)


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * MIB], ids=["0B", "1B", "64KiB", "64MiB"])
async def test_udx_native_to_python(js: StartPeer, py: UDXSocket, size: int) -> None:
    peer, port = await start_js(js)
    await js_to_python(py, peer, port, size, seed=size % 251 + 1)


async def test_echo_both_ways_at_once(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="echo")
    reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port))
    data = pattern(8 * MIB, 3)
    writer.write(data)
    writer.write_eof()
    assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (len(data), digest(8 * MIB, 3))
    await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


async def test_the_mtu_reaches_1500_both_ways(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    stream = await python_to_js(py, peer, port, 16 * MIB, seed=4)
    assert stream.core.mtu == 1500
    peer2, port2 = await start_js(js)
    async with await UDXSocket.bind("127.0.0.1", 0) as py2:
        await js_to_python(py2, peer2, port2, 16 * MIB, seed=5)
    await peer2.send({"cmd": "stats", "local_id": JS_ID})
    stats = await peer2.expect("stats", local_id=JS_ID)
    assert stats["mtu"] == 1500  # udx-native probed through our receiver (padded packets)


async def test_a_python_stream_learns_its_remote_from_udx_natives_first_packet(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    seen: list[tuple[str, int]] = []

    def firewall(sock: UDXSocket, source: tuple[str, int]) -> bool:
        seen.append(source[:2])
        waiting.connect(sock, JS_ID, source)
        return False

    waiting = py.create_stream(PY_ID, firewall=firewall)
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    waiting.set_protocol(protocol)
    protocol.connection_made(waiting)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="source", size=MIB, seed=6)
    assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (MIB, digest(MIB, 6))
    assert seen == [("127.0.0.1", port)]
    waiting.close()
    await asyncio.wait_for(waiting.wait_closed(), TIMEOUT)
    await peer.expect("stream-close", local_id=JS_ID, timeout=TIMEOUT)


async def test_python_destroy_resets_udx_native(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="idle")
    _reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port))
    writer.write(b"x")
    await peer.send({"cmd": "stats", "local_id": JS_ID})
    for _ in range(100):
        stats = await peer.expect("stats", local_id=JS_ID)
        if stats["received"] == 1:
            break
        await asyncio.sleep(0.02)
        await peer.send({"cmd": "stats", "local_id": JS_ID})
    writer.transport.abort()
    error = await peer.expect("stream-error", local_id=JS_ID, timeout=TIMEOUT)
    assert error["code"] == "ECONNRESET"


async def test_udx_native_destroy_resets_python(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="idle")
    reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port))
    await peer.send({"cmd": "write", "local_id": JS_ID, "size": 10, "seed": 0})
    assert await asyncio.wait_for(reader.readexactly(10), TIMEOUT) == pattern(10, 0)
    await peer.send({"cmd": "destroy", "local_id": JS_ID})
    with pytest.raises(StreamReset):
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


async def test_a_vanished_udx_native_peer_ends_the_python_stream_with_a_timeout(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="idle")
    reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port), min_rto=0.05)
    await peer.send({"cmd": "write", "local_id": JS_ID, "size": 5, "seed": 1})
    assert await asyncio.wait_for(reader.readexactly(5), TIMEOUT) == pattern(5, 1)
    peer.proc.kill()  # gone without a DESTROY: nothing answers on its port any more
    await peer.proc.wait()
    writer.write(b"anyone?")
    with pytest.raises(StreamTimeout):
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


LOSSY = [
    pytest.param({"loss": 0.01}, id="1pct-loss"),
    pytest.param({"loss": 0.05, "duplicate": 0.02, "reorder": 0.02}, id="5pct-loss-dup-reorder"),
]


async def relayed(py_port: int, js_port: int, **impairments: float) -> LossyRelay:
    """A relay whose side A is Python and side B udx-native."""
    return await LossyRelay.start(target_a=("127.0.0.1", py_port), target_b=("127.0.0.1", js_port), seed=11, **impairments)


@pytest.mark.parametrize("impairments", LOSSY)
async def test_through_a_lossy_path_python_to_udx_native(js: StartPeer, py: UDXSocket, impairments: dict[str, float]) -> None:
    peer, port = await start_js(js)
    async with await relayed(py.address[1], port, **impairments) as relay:
        await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=relay.address_for_b[1], mode="sink")
        reader, writer = await py.open_stream(PY_ID, JS_ID, relay.address_for_a)
        writer.write(pattern(4 * MIB, 7))
        writer.write_eof()
        end = await peer.expect("stream-end", local_id=JS_ID, timeout=TIMEOUT)
        assert (end["length"], end["sha256"]) == (4 * MIB, digest(4 * MIB, 7))
        assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (0, hashlib.sha256().hexdigest())
        assert relay.a_to_b.lost > 0


@pytest.mark.parametrize("impairments", LOSSY)
async def test_through_a_lossy_path_udx_native_to_python(js: StartPeer, py: UDXSocket, impairments: dict[str, float]) -> None:
    peer, port = await start_js(js)
    async with await relayed(py.address[1], port, **impairments) as relay:
        reader, writer = await py.open_stream(PY_ID, JS_ID, relay.address_for_a)
        await js_stream(
            peer, local_id=JS_ID, remote_id=PY_ID, port=relay.address_for_b[1], mode="source", size=4 * MIB, seed=8
        )
        assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (4 * MIB, digest(4 * MIB, 8))
        writer.write_eof()
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
        assert relay.b_to_a.lost > 0


async def test_a_100_ms_stall_both_ways_loses_nothing(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    async with await relayed(py.address[1], port) as relay:
        await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=relay.address_for_b[1], mode="echo")
        reader, writer = await py.open_stream(PY_ID, JS_ID, relay.address_for_a)
        data = pattern(4 * MIB, 9)
        writer.write(data[: 2 * MIB])
        await asyncio.sleep(0.02)
        relay.stall(0.1)
        writer.write(data[2 * MIB :])
        writer.write_eof()
        assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (len(data), digest(4 * MIB, 9))
        assert relay.a_to_b.stalled + relay.b_to_a.stalled > 0


async def test_a_hundred_streams_on_one_socket_to_udx_native(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    count, size = 100, 64 * 1024
    for i in range(count):
        await js_stream(peer, local_id=JS_ID + i, remote_id=PY_ID + i, port=py.address[1], mode="echo")

    async def one(i: int) -> tuple[int, str]:
        reader, writer = await py.open_stream(PY_ID + i, JS_ID + i, ("127.0.0.1", port))
        writer.write(pattern(size, i))
        writer.write_eof()
        result = await read_all(reader)
        await writer.wait_closed()
        return result

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), TIMEOUT)
    assert results == [(size, digest(size, i)) for i in range(count)]
    assert not peer.seen("stream-error")


async def test_messages_and_socket_datagrams_both_ways(js: StartPeer, py: UDXSocket) -> None:
    peer, port = await start_js(js)
    await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=py.address[1], mode="idle")
    _reader, writer = await py.open_stream(PY_ID, JS_ID, ("127.0.0.1", port))
    stream = writer.transport
    assert isinstance(stream, UDXStream)
    messages: asyncio.Queue[bytes] = asyncio.Queue()
    datagrams: asyncio.Queue[bytes] = asyncio.Queue()
    stream.message_handler = messages.put_nowait
    py.on_message = lambda data, _source: datagrams.put_nowait(data)

    stream.send_message(b"from python")
    got = await peer.expect("message", local_id=JS_ID, timeout=TIMEOUT)
    assert bytes.fromhex(got["hex"]) == b"from python"
    await peer.send({"cmd": "send_message", "local_id": JS_ID, "hex": b"from js".hex()})
    assert await asyncio.wait_for(messages.get(), TIMEOUT) == b"from js"

    py.send(b"\x03not udx", ("127.0.0.1", port))
    got = await peer.expect("socket-message", timeout=TIMEOUT)
    assert bytes.fromhex(got["hex"]) == b"\x03not udx"
    await peer.send({"cmd": "socket_send", "port": py.address[1], "host": "127.0.0.1", "hex": b"\x13reply".hex()})
    assert await asyncio.wait_for(datagrams.get(), TIMEOUT) == b"\x13reply"
    writer.transport.abort()


async def test_ipv6_both_ways(js: StartPeer) -> None:
    peer = await js(SCRIPT, "--host", "::1")
    port = int((await peer.expect("listening"))["port"])
    async with await UDXSocket.bind("::1", 0) as sock:
        await js_stream(peer, local_id=JS_ID, remote_id=PY_ID, port=sock.address[1], host="::1", mode="echo")
        reader, writer = await sock.open_stream(PY_ID, JS_ID, ("::1", port))
        data = pattern(2 * MIB, 12)
        writer.write(data)
        writer.write_eof()
        assert await asyncio.wait_for(read_all(reader), TIMEOUT) == (len(data), digest(2 * MIB, 12))
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
