"""The asyncio side of UDX over real UDP sockets on loopback: streams, demultiplexing, closing."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from peersockets.connection import Connection
from peersockets.errors import (
    ConnectionClosed,
    InvalidSetting,
    ListenError,
    MessageTooLarge,
    SocketClosed,
    StreamIdInUse,
    StreamReset,
    StreamTimeout,
)
from peersockets.udx import HOLD, UDXSocket, UDXStream
from peersockets.udx import packet as p
from peersockets.wire.crypto import KeyPair

TIMEOUT = 20.0


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_writers: list[asyncio.StreamWriter] = []


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[UDXSocket, UDXSocket]]:
    """Two sockets; every writer opened by the test is closed, then the sockets."""
    a = await UDXSocket.bind("127.0.0.1", 0)
    b = await UDXSocket.bind("127.0.0.1", 0)
    try:
        yield a, b
    finally:
        while _writers:
            writer = _writers.pop()
            writer.transport.abort()
            del writer
        await a.close()
        await b.close()


async def open_stream(sock: UDXSocket, local_id: int | None, remote_id: int, address: tuple[str, int], **settings: float) -> Streams:
    reader, writer = await sock.open_stream(local_id, remote_id, address, **settings)
    _writers.append(writer)
    return reader, writer


async def open_pair(a: UDXSocket, b: UDXSocket, a_id: int = 1, b_id: int = 2) -> tuple[Streams, Streams]:
    return await open_stream(a, a_id, b_id, b.address), await open_stream(b, b_id, a_id, a.address)


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 4 * 1024 * 1024])
async def test_bytes_arrive_intact_both_ways_and_end_is_eof(pair: tuple[UDXSocket, UDXSocket], size: int) -> None:
    a, b = pair
    (ra, wa), (rb, wb) = await open_pair(a, b)
    data_a, data_b = os.urandom(size), os.urandom(size // 2)

    async def side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
        writer.write(data)
        writer.write_eof()
        return await reader.read()

    got_b, got_a = await asyncio.wait_for(asyncio.gather(side(ra, wa, data_a), side(rb, wb, data_b)), TIMEOUT)
    assert hashlib.sha256(got_b).digest() == hashlib.sha256(data_b).digest()
    assert hashlib.sha256(got_a).digest() == hashlib.sha256(data_a).digest()
    wa.close()
    wb.close()
    await asyncio.wait_for(asyncio.gather(wa.wait_closed(), wb.wait_closed()), TIMEOUT)
    stream = wa.transport
    assert isinstance(stream, UDXStream) and stream.closed.done() and stream.closed.exception() is None


async def test_the_mtu_reaches_1500_on_loopback(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (rb, _wb) = await open_pair(a, b)
    stream = wa.transport
    assert isinstance(stream, UDXStream)
    sent = 0
    while stream.core.mtu < 1500 and sent < 64 * 1024 * 1024:
        wa.write(bytes(256 * 1024))
        sent += 256 * 1024
        await asyncio.wait_for(rb.readexactly(256 * 1024), TIMEOUT)
    assert stream.core.mtu == 1500


async def test_drain_waits_for_the_window_and_write_after_eof_is_refused(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (rb, _wb) = await open_pair(a, b)
    stream = wa.transport
    assert isinstance(stream, UDXStream)
    wa.write(bytes(8 * 1024 * 1024))
    assert stream.get_write_buffer_size() > stream.get_write_buffer_limits()[1]
    reading = asyncio.ensure_future(rb.readexactly(8 * 1024 * 1024))
    await asyncio.wait_for(wa.drain(), TIMEOUT)
    assert stream.get_write_buffer_size() <= stream.get_write_buffer_limits()[1]
    await asyncio.wait_for(reading, TIMEOUT)
    wa.write_eof()
    with pytest.raises(ConnectionClosed, match="write_eof"):
        wa.write(b"late")


async def test_abort_sends_destroy_and_the_peer_reads_a_reset(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (rb, wb) = await open_pair(a, b)
    wa.write(b"x")
    assert await asyncio.wait_for(rb.readexactly(1), TIMEOUT) == b"x"
    wa.transport.abort()
    with pytest.raises(StreamReset):
        await asyncio.wait_for(rb.read(), TIMEOUT)
    with pytest.raises(StreamReset):
        await asyncio.wait_for(wb.wait_closed(), TIMEOUT)


async def test_a_vanished_remote_ends_with_a_timeout(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, _b = pair
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        _r, w = await open_stream(a, 1, 2, silent.getsockname(), min_rto=0.02)
        w.write(b"anyone there?")
        with pytest.raises(StreamTimeout):
            await asyncio.wait_for(w.wait_closed(), TIMEOUT)
        assert a.udx.streams == {}
    finally:
        silent.close()


async def test_a_remote_that_never_ends_after_close_is_destroyed_after_close_timeout(
    pair: tuple[UDXSocket, UDXSocket],
) -> None:
    a, b = pair
    _ra, wa = await open_stream(a, 1, 2, b.address, close_timeout=0.2)
    rb, wb = await open_stream(b, 2, 1, a.address)
    wa.write(b"bye")
    wa.close()
    assert await asyncio.wait_for(rb.readexactly(3), TIMEOUT) == b"bye"
    assert await asyncio.wait_for(rb.read(), TIMEOUT) == b""  # our END arrived; b does not end
    await asyncio.wait_for(wa.wait_closed(), TIMEOUT)
    with pytest.raises(StreamReset):
        await asyncio.wait_for(wb.wait_closed(), TIMEOUT)


async def test_non_udx_datagrams_and_unknown_ids_go_to_on_message(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    got: list[tuple[bytes, tuple[str, int]]] = []
    b.on_message = lambda data, source: got.append((data, source[:2]))
    (_ra, wa), (rb, _wb) = await open_pair(a, b)
    dead_stream = p.encode(p.DATA, 999, 0, 0, 0, b"for nobody")
    for datagram in (b"\x03dht request", b"\x00", dead_stream, b"\xff\x01short"):
        a.send(datagram, b.address)
    wa.write(b"stream data")
    assert await asyncio.wait_for(rb.readexactly(11), TIMEOUT) == b"stream data"
    for _ in range(100):
        if len(got) == 4:
            break
        await asyncio.sleep(0.01)
    assert [data for data, _ in got] == [b"\x03dht request", b"\x00", dead_stream, b"\xff\x01short"]
    assert all(source == a.address for _, source in got)


async def test_an_unconnected_stream_drops_packets_by_default(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    got: list[bytes] = []
    b.on_message = lambda data, _source: got.append(data)
    waiting = b.create_stream(2)
    _ra, wa = await open_stream(a, 1, 2, b.address)
    wa.write(b"hello?")
    a.send(b"\x03marker", b.address)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [b"\x03marker"]  # the stream's packet was eaten, not passed on
    assert not waiting.core.connected
    waiting.abort()


async def test_a_firewall_that_connects_adopts_the_first_packets_source(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    seen: list[tuple[str, int]] = []
    received = bytearray()
    ended = asyncio.Event()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.extend(data)

        def eof_received(self) -> bool:
            ended.set()
            return True

    def firewall(sock: UDXSocket, source: tuple[str, int]) -> bool:
        seen.append(source[:2])
        if source[1] == 0:
            return True
        waiting.connect(sock, 1, source)
        return False

    waiting = b.create_stream(2, firewall=firewall)
    waiting.set_protocol(Sink())
    _ra, wa = await open_stream(a, 1, 2, b.address)
    wa.write(b"first packet tells who I am")
    wa.write_eof()
    await asyncio.wait_for(ended.wait(), TIMEOUT)
    assert bytes(received) == b"first packet tells who I am"
    assert seen == [a.address]
    assert waiting.remote_address == a.address and waiting.remote_id == 1
    waiting.write(b"reply")
    waiting.close()
    await asyncio.wait_for(waiting.wait_closed(), TIMEOUT)


async def test_a_firewall_may_hold_early_packets_until_the_stream_connects(pair: tuple[UDXSocket, UDXSocket]) -> None:
    """HOLD keeps what arrives before the remote is decided (hyperdht's client, whose server may
    send before the handshake reply arrives): delivered in order once connected, nothing resent."""
    a, b = pair
    received = bytearray()
    ended = asyncio.Event()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.extend(data)

        def eof_received(self) -> bool:
            ended.set()
            return True

    held: list[tuple[str, int]] = []

    def firewall(sock: UDXSocket, source: tuple[str, int]) -> bool | str:
        held.append(source)
        return HOLD

    waiting = b.create_stream(2, firewall=firewall)
    _ra, wa = await open_stream(a, 1, 2, b.address)
    wa.write(b"sent before the other side knew who I was")
    wa.write_eof()
    for _ in range(100):
        if held:
            break
        await asyncio.sleep(0.01)
    assert held and not waiting.core.connected
    waiting.set_protocol(Sink())
    waiting.connect(b, 1, a.address)
    await asyncio.wait_for(ended.wait(), TIMEOUT)
    assert bytes(received) == b"sent before the other side knew who I was"
    sender = wa.transport
    assert isinstance(sender, UDXStream)
    assert sender.core.stats.retransmits == 0  # the held packets were enough
    waiting.close()
    await asyncio.wait_for(waiting.wait_closed(), TIMEOUT)


async def test_change_remote_moves_a_live_stream_to_another_socket(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (ra, wa), (rb, wb) = await open_pair(a, b)
    wa.write(b"via the first path")
    assert await asyncio.wait_for(rb.readexactly(18), TIMEOUT) == b"via the first path"
    async with await UDXSocket.bind("127.0.0.1", 0, udx=b.udx) as b2:
        stream_b = wb.transport
        assert isinstance(stream_b, UDXStream)
        changed = stream_b.change_remote(b2, 1, a.address)
        await asyncio.wait_for(changed, TIMEOUT)
        wb.write(b"from the second socket")
        assert await asyncio.wait_for(ra.readexactly(22), TIMEOUT) == b"from the second socket"
        assert stream_b.socket is b2
        wa.write(b"and back")
        assert await asyncio.wait_for(rb.readexactly(8), TIMEOUT) == b"and back"
        stream_b.abort()


async def test_ipv6_streams() -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6; the UDX IPv6 test needs [::1]")
    async with await UDXSocket.bind("::1", 0) as a, await UDXSocket.bind("::1", 0) as b:
        (ra, wa), (rb, wb) = await open_pair(a, b)
        data = os.urandom(300_000)
        wa.write(data)
        assert await asyncio.wait_for(rb.readexactly(len(data)), TIMEOUT) == data
        stream = wa.transport
        assert isinstance(stream, UDXStream)
        assert stream.core.max_payload == stream.core.mtu - 48 - 20  # the IPv6 header overhead
        wb.write(b"v6")
        assert await asyncio.wait_for(ra.readexactly(2), TIMEOUT) == b"v6"


async def test_a_hundred_streams_on_one_socket(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    count, size = 100, 64 * 1024
    streams = [await open_pair(a, b, 1000 + i, 5000 + i) for i in range(count)]

    async def one(i: int) -> bool:
        (_ra, wa), (rb, _wb) = streams[i]
        data = os.urandom(size)
        wa.write(data)
        wa.write_eof()
        return await rb.read() == data

    assert all(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), TIMEOUT))
    assert len(a.udx.streams) == count


async def test_messages_are_unordered_datagrams_with_a_size_limit(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (_rb, wb) = await open_pair(a, b)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    stream_b = wb.transport
    assert isinstance(stream_b, UDXStream)
    stream_b.message_handler = got.put_nowait
    stream_a = wa.transport
    assert isinstance(stream_a, UDXStream)
    stream_a.send_message(b"ping")
    stream_a.send_message(b"")
    assert await asyncio.wait_for(got.get(), TIMEOUT) == b"ping"
    assert await asyncio.wait_for(got.get(), TIMEOUT) == b""
    with pytest.raises(MessageTooLarge, match="1153"):
        stream_a.send_message(bytes(1153))


async def test_ids_unique_per_instance_and_bad_settings_are_typed_errors(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    await open_stream(a, 7, 8, b.address)
    with pytest.raises(StreamIdInUse, match="7"):
        await open_stream(a, 7, 9, b.address)
    with pytest.raises(InvalidSetting, match="-1"):
        a.create_stream(-1)
    with pytest.raises(InvalidSetting, match="70000"):
        await open_stream(a, None, 9, ("127.0.0.1", 70000))
    with pytest.raises(InvalidSetting, match="4294967296"):
        await open_stream(a, None, 2**32, b.address)
    random_ids = {a.create_stream().local_id for _ in range(50)}
    assert len(random_ids) == 50 and 7 not in random_ids
    with pytest.raises(ListenError, match="70000"):
        await UDXSocket.bind("127.0.0.1", 70000)


async def test_a_closed_socket_refuses_work_and_aborts_its_streams(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (rb, _wb) = await open_pair(a, b)
    wa.write(b"x")
    await asyncio.wait_for(rb.readexactly(1), TIMEOUT)
    await a.close()
    assert a.closed
    with pytest.raises(SocketClosed):
        a.create_stream()
    with pytest.raises(StreamReset):
        await asyncio.wait_for(rb.read(), TIMEOUT)


async def test_a_secret_stream_connection_runs_over_udx(pair: tuple[UDXSocket, UDXSocket]) -> None:
    """Connection (secret-stream + protomux) is transport-agnostic: the same class as over TCP."""
    a, b = pair
    ka, kb = KeyPair.generate(), KeyPair.generate()
    initiator, responder = Connection(ka, True), Connection(kb, False)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    responder.message_handler = lambda message: got.put_nowait(bytes(message))
    a.connect_protocol(initiator, 1, 2, b.address)
    b.connect_protocol(responder, 2, 1, a.address)
    await asyncio.wait_for(asyncio.gather(initiator.wait_established(), responder.wait_established()), TIMEOUT)
    assert initiator.remote_public_key == kb.public_key
    big = os.urandom(1024 * 1024)
    initiator.send_raw(b"hello over udx")
    initiator.send_raw(big)
    assert await asyncio.wait_for(got.get(), TIMEOUT) == b"hello over udx"
    assert await asyncio.wait_for(got.get(), TIMEOUT) == big
    initiator.close()
    await asyncio.wait_for(asyncio.gather(initiator.wait_closed(), responder.wait_closed()), TIMEOUT)


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
async def test_with_and_without_segmentation_offload(monkeypatch: pytest.MonkeyPatch, offload: bool) -> None:
    """UDP_SEGMENT / UDP_GRO where the kernel has them, one datagram per call where not."""
    import peersockets.udx.socket as udx_socket

    monkeypatch.setattr(udx_socket, "SEGMENTATION", offload)
    monkeypatch.setattr(udx_socket, "COALESCING", offload)
    async with await UDXSocket.bind("127.0.0.1", 0) as a, await UDXSocket.bind("127.0.0.1", 0) as b:
        got: list[bytes] = []
        b.on_message = lambda data, _source: got.append(data)
        (_ra, wa), (rb, _wb) = await open_pair(a, b)
        data = os.urandom(2 * 1024 * 1024)
        wa.write(data)
        wa.write_eof()
        assert await asyncio.wait_for(rb.read(), TIMEOUT) == data
        a.send(b"\x03" * 2048, b.address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\x03" * 3000, b.address)  # libudx truncates past 2048; so do we
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        assert [len(x) for x in got] == [2048, 2048]
        wa.transport.abort()


async def test_a_kernel_that_refuses_segmentation_falls_back_to_single_datagrams(
    pair: tuple[UDXSocket, UDXSocket],
) -> None:
    a, b = pair
    refusals: list[int] = []
    real = a._sock

    class Refusing:
        """The socket, except that a segmented send fails as a kernel without GSO fails."""

        def sendmsg(self, *args: object) -> int:
            refusals.append(1)
            raise OSError(errno.EIO, "no UDP_SEGMENT here")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    a._sock = Refusing()  # type: ignore[assignment]
    (_ra, wa), (rb, _wb) = await open_pair(a, b)
    data = os.urandom(1024 * 1024)
    wa.write(data)
    assert await asyncio.wait_for(rb.readexactly(len(data)), TIMEOUT) == data
    assert refusals == [1] and not a._segmentation
    a._sock = real


async def test_a_reply_written_by_a_task_carries_the_ack(pair: tuple[UDXSocket, UDXSocket]) -> None:
    """The pure ack after a batch waits one loop turn: an echo sends one datagram per message, not two."""
    a, b = pair
    (ra, wa), (rb, wb) = await open_pair(a, b)
    sent = {"a": 0, "b": 0}
    for name, sock in (("a", a), ("b", b)):
        real = sock._send

        def counting(datagram: bytes, address: tuple[str, int], real: object = real, name: str = name) -> None:
            sent[name] += 1
            real(datagram, address)  # type: ignore[operator]

        sock._send = counting  # type: ignore[method-assign]

    async def echo() -> None:
        while data := await rb.read(1):
            wb.write(data)

    echoing = asyncio.ensure_future(echo())
    for _ in range(200):
        wa.write(b"x")
        assert await asyncio.wait_for(ra.readexactly(1), TIMEOUT) == b"x"
    assert sent["b"] <= 205  # the echo replies within a loop turn: its data carried every ack
    assert sent["a"] <= 405  # the pinger's next write comes turns later: data, then an ack
    echoing.cancel()


async def test_writing_after_a_reset_raises_the_reset(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (_rb, wb) = await open_pair(a, b)
    wb.write(b"x")
    wa.transport.abort()
    with pytest.raises(StreamReset):
        await asyncio.wait_for(wb.wait_closed(), TIMEOUT)
    with pytest.raises(StreamReset, match="cannot write"):
        wb.write(b"after the reset")


class _NoSocket:
    """Stands for a UDXSocket in transport tests that feed packets by hand; sends go nowhere."""

    address = ("127.0.0.1", 1)

    def _send(self, datagram: bytes, address: tuple[str, int]) -> None:
        pass

    def _send_many(self, datagrams: list[bytes], address: tuple[str, int]) -> None:
        pass

    def _attach(self, stream: UDXStream) -> None:
        pass

    def _detach(self, stream: UDXStream) -> None:
        pass


async def test_a_protocol_that_writes_while_reading_still_gets_the_bytes_in_order() -> None:
    """Found in review: handing over held data released more from the out-of-order buffer,
    and a nested flush (the protocol's write) delivered it before the rest."""
    from peersockets.udx.stream import StreamCore

    loop = asyncio.get_running_loop()
    core = StreamCore(1, receive_window=3000, max_out_of_order=64)
    stream = UDXStream(core, loop, unregister=lambda _s: None)
    got: list[bytes] = []

    class Replier(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.append(data)
            if len(data) == 100:
                stream.write(b"reply")

    stream.set_protocol(Replier())
    stream.connect(_NoSocket(), 2, ("127.0.0.1", 9))  # type: ignore[arg-type]
    stream.pause_reading()

    def packet_(seq: int, size: int) -> memoryview:
        return memoryview(p.encode(p.DATA, 1, 1 << 22, seq, 0, seq.to_bytes(2, "big") * (size // 2)))

    for seq in range(1, 40):
        stream._receive(packet_(seq, 100), loop.time())  # above a hole at 0
    stream._receive(packet_(0, 2900), loop.time())  # fills it; the window is full
    stream._flush(defer_ack=True)
    stream.resume_reading()
    for _ in range(20):
        await asyncio.sleep(0)
    seqs = [int.from_bytes(piece[:2], "big") for piece in got]
    assert seqs == list(range(40))
    stream.abort()


async def test_writelines_after_write_eof_is_refused_like_write(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), _ = await open_pair(a, b)
    wa.write_eof()
    with pytest.raises(ConnectionClosed, match="write_eof"):
        wa.writelines([b"after", b"eof"])
    waiting = a.create_stream(55)
    with pytest.raises(ConnectionClosed, match="not connected"):
        waiting.writelines([b"too soon"])
    waiting.abort()


async def test_drain_on_a_reset_stream_raises(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, b = pair
    (_ra, wa), (_rb, wb) = await open_pair(a, b)
    wa.write(bytes(8 * 1024 * 1024))  # more than the window: drain must wait
    draining = asyncio.ensure_future(wa.drain())
    await asyncio.sleep(0.01)
    wb.transport.abort()
    with pytest.raises((StreamReset, ConnectionResetError)):
        await asyncio.wait_for(draining, TIMEOUT)


async def test_closing_a_socket_ends_its_unconnected_streams_too(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, _b = pair
    waiting = a.create_stream(77)
    await a.close()
    assert waiting.core.closed and waiting.closed.done()
    assert 77 not in a.udx.streams


async def test_a_bad_address_fails_before_the_protocol_sees_anything(pair: tuple[UDXSocket, UDXSocket]) -> None:
    a, _b = pair
    events: list[str] = []

    class Watcher(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            events.append("made")

        def connection_lost(self, exc: Exception | None) -> None:
            events.append("lost")

    with pytest.raises(InvalidSetting, match="got 0"):
        a.connect_protocol(Watcher(), None, 2, ("127.0.0.1", 0))
    with pytest.raises(InvalidSetting, match=r"'no-such-host\.invalid'"):
        a.connect_protocol(Watcher(), None, 2, ("no-such-host.invalid", 9))
    await asyncio.sleep(0.01)
    assert events == []
    assert a.udx.streams == {}


@pytest.mark.parametrize("coalescing", [True, False], ids=["gro", "plain"])
async def test_a_lone_datagram_is_read_with_a_probe_and_a_burst_is_drained(
    monkeypatch: pytest.MonkeyPatch, coalescing: bool
) -> None:
    """After one datagram the socket asks the kernel whether another waits instead of
    reading into nothing; a burst switches it to reading until nothing is left, a lone
    datagram back to probing, and a zero-length datagram (the probe's 0) still arrives."""
    import peersockets.udx.socket as udx_socket

    monkeypatch.setattr(udx_socket, "COALESCING", coalescing)
    async with await UDXSocket.bind("127.0.0.1", 0) as b:
        got: list[bytes] = []
        b.on_message = lambda data, _source: got.append(data)
        events: list[int] = []
        read = b._on_readable

        def counted() -> None:
            before = len(got)
            read()
            events.append(len(got) - before)

        asyncio.get_running_loop().remove_reader(b._fd)
        asyncio.get_running_loop().add_reader(b._fd, counted)

        async def arrived(count: int) -> None:
            for _ in range(500):
                if len(got) >= count:
                    return
                await asyncio.sleep(0.002)
            raise AssertionError(f"{len(got)} of {count} datagrams arrived")

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\x03lone", b.address)
            await arrived(1)
            assert b._probing, "a lone datagram leaves the socket probing"
            burst = [b"\x03%d" % i for i in range(50)]
            for datagram in burst:  # all queued in the kernel before the loop reads
                raw.sendto(datagram, b.address)
            await arrived(51)
            assert got[1:] == burst
            assert max(events) > 1 and not b._probing, events  # found more: drained
            raw.sendto(b"\x03again", b.address)
            await arrived(52)
            assert b._probing, "an event of one datagram goes back to probing"
            raw.sendto(b"", b.address)  # FIONREAD says 0 for it: read on the next turn
            raw.sendto(b"\x03after", b.address)
            await arrived(54)
            assert got[52:] == [b"", b"\x03after"]


async def test_an_idle_stream_lets_its_timer_lapse_instead_of_cancelling_per_packet(
    pair: tuple[UDXSocket, UDXSocket],
) -> None:
    """Once all is acked the armed timer is left to fire once (no call_at per packet);
    it finds nothing due and the stream keeps no timer after it."""
    a, b = pair
    (ra, wa), (rb, wb) = await open_pair(a, b)
    transport = wa.transport
    assert isinstance(transport, UDXStream)
    for _ in range(20):
        wa.write(b"p")
        assert await asyncio.wait_for(rb.readexactly(1), TIMEOUT) == b"p"
        wb.write(b"q")
        assert await asyncio.wait_for(ra.readexactly(1), TIMEOUT) == b"q"
    for _ in range(300):  # the TLP or RTO deadline it was armed for passes
        if transport._timer is None:
            break
        await asyncio.sleep(0.01)
    assert transport._timer is None and transport.core.get_timer() is None
    wa.write(b"still works")
    assert await asyncio.wait_for(rb.readexactly(11), TIMEOUT) == b"still works"


async def test_a_probe_the_kernel_refuses_falls_back_to_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    import peersockets.udx.socket as udx_socket

    def refuse(*_args: object) -> int:
        raise OSError(errno.EBADF, "no FIONREAD here")

    monkeypatch.setattr(udx_socket, "_ioctl", refuse)
    async with await UDXSocket.bind("127.0.0.1", 0) as b:
        got: list[bytes] = []
        b.on_message = lambda data, _source: got.append(data)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for datagram in (b"\x03one", b"\x03two", b"\x03three"):
                raw.sendto(datagram, b.address)
            for _ in range(500):
                if len(got) == 3:
                    break
                await asyncio.sleep(0.002)
        assert got == [b"\x03one", b"\x03two", b"\x03three"]
