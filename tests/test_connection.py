"""The asyncio connection: handshake, keepalive, timeouts and errors, over in-memory pipes."""

from __future__ import annotations

import asyncio

import pytest

from peersockets.connection import Connection
from peersockets.errors import (
    ConnectionClosed,
    DecryptionError,
    FrameTooLarge,
    HandshakeError,
    HandshakeTimeout,
    ProtocolError,
)
from peersockets.pipe import PipeTransport, create_pipe
from peersockets.wire.crypto import KeyPair


def pair(**options: float) -> tuple[Connection, Connection, PipeTransport, PipeTransport]:
    a = Connection(KeyPair.generate(), True, **options)  # type: ignore[arg-type]
    b = Connection(KeyPair.generate(), False, **options)  # type: ignore[arg-type]
    ta, tb = create_pipe(a, b)
    return a, b, ta, tb


async def established(*conns: Connection) -> None:
    for conn in conns:
        await asyncio.wait_for(conn.wait_established(), 5)


async def test_handshake_over_a_pipe_authenticates_both_keys() -> None:
    a, b, _, _ = pair()
    await established(a, b)
    assert a.remote_public_key == b.key_pair.public_key
    assert b.remote_public_key == a.key_pair.public_key
    assert a.handshake_hash == b.handshake_hash and len(a.handshake_hash) == 64
    a.close()
    assert await asyncio.wait_for(b.wait_closed(), 5) is None


async def test_keepalive_is_sent_after_idle_and_ignored_on_receipt() -> None:
    """Driven by handle_timer at the deadlines the core gives: no sleeping, no slack."""
    a, b, _, _ = pair(keepalive=60, pair_timeout=0)  # a keepalive first, not the pair deadline
    await established(a, b)
    received: list[bytes] = []
    b.message_handler = lambda m: received.append(bytes(m))
    due = a.timers.get_timer()
    assert due is not None
    a.handle_timer(due - 0.001)  # early: nothing is owed yet
    a.handle_timer(due)
    await asyncio.sleep(0)  # the pipe delivers on the next loop turn
    assert received == [b""]  # an empty frame: a keepalive, which b ignores
    a.send_raw(b"data")  # writing restarts the idle clock
    later = a.timers.get_timer()
    assert later is not None and later > due
    a.handle_timer(due)  # what was due before the write is not any more
    await asyncio.sleep(0)
    assert received == [b"", b"data"] and not b.is_closed
    a.close()
    await asyncio.wait_for(b.wait_closed(), 5)


async def test_empty_messages_reach_protomux_harmlessly() -> None:
    a, b, _, _ = pair(keepalive=0)
    await established(a, b)
    for _ in range(3):
        a.send_raw(b"")
    await asyncio.sleep(0.02)
    assert not b.is_closed
    a.close()


async def test_handshake_timeout_drops_a_silent_peer() -> None:
    silent = Connection(KeyPair.generate(), False, handshake_timeout=0.1)

    class Mute(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass

    create_pipe(Mute(), silent)
    deadline = silent.timers.get_timer()
    assert deadline is not None
    silent.handle_timer(deadline)  # what the loop timer does when the deadline comes
    error = await asyncio.wait_for(silent.wait_closed(), 5)
    assert isinstance(error, HandshakeTimeout) and "0.1 s" in str(error)
    with pytest.raises(HandshakeTimeout):
        await silent.wait_established()


async def test_tampered_frame_ends_only_that_connection() -> None:
    a, b, ta, _ = pair()
    c, d, _, _ = pair()
    await established(a, b, c, d)
    frame = bytearray(a.stream.encrypt(b"hello"))
    frame[-1] ^= 1
    ta.write(bytes(frame))
    error = await asyncio.wait_for(b.wait_closed(), 5)
    assert isinstance(error, DecryptionError) and isinstance(error, ProtocolError)
    await asyncio.wait_for(a.wait_closed(), 5)
    got: list[bytes] = []
    d.message_handler = lambda m: got.append(bytes(m))
    c.send_raw(b"still fine")
    await asyncio.sleep(0.02)
    assert got == [b"still fine"] and not c.is_closed
    c.close()


async def test_replayed_frame_is_refused() -> None:
    a, b, ta, _ = pair(keepalive=0)
    await established(a, b)
    frame = bytes(a.stream.encrypt(b"once"))
    b.message_handler = lambda m: None
    ta.write(frame)
    ta.write(frame)
    assert isinstance(await asyncio.wait_for(b.wait_closed(), 5), DecryptionError)


async def test_oversized_length_prefix_ends_connection_at_once() -> None:
    a = Connection(KeyPair.generate(), True)
    b = Connection(KeyPair.generate(), False, max_frame_size=1024)
    ta, _ = create_pipe(a, b)
    await established(a, b)
    ta.write(b"\xff\xff\xff")
    error = await asyncio.wait_for(b.wait_closed(), 5)
    assert isinstance(error, FrameTooLarge) and "16777215" in str(error)


async def test_garbage_instead_of_a_handshake() -> None:
    b = Connection(KeyPair.generate(), False)

    class Garbage(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(b"\x05\x00\x00hello")

    create_pipe(Garbage(), b)
    error = await asyncio.wait_for(b.wait_closed(), 5)
    assert isinstance(error, HandshakeError)


async def test_drain_after_close_raises_connection_closed() -> None:
    a, b, _, _ = pair()
    await established(a, b)
    a.abort()
    await asyncio.wait_for(a.wait_closed(), 5)
    with pytest.raises(ConnectionClosed):
        await a.drain()
    with pytest.raises(ConnectionClosed):
        a.send_raw(b"x")


class _Sink:
    """A channel handler that records the messages it gets."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def channel_opened(self, channel: object, handshake: bytes) -> None:
        pass

    def channel_message(self, channel: object, message_type: int, payload: memoryview) -> None:
        self.got.append(bytes(payload))

    def channel_closed(self, channel: object, by_remote: bool) -> None:
        pass


async def test_a_lone_message_goes_at_once_and_a_burst_as_one_frame() -> None:
    """Corking: a message on an idle connection is written in the same call, every time
    (not every other time after a quiet spell); the rest of a burst queued in the same
    loop turn goes as one frame when the turn ends."""
    a, b, ta, _ = pair(keepalive=0)
    await established(a, b)
    sink = _Sink()
    sender = a.mux.open("test/cork", None, b"", _Sink())
    b.mux.open("test/cork", None, b"", sink)
    await asyncio.sleep(0.01)
    writes: list[int] = []
    real_write = ta.write
    ta.write = lambda data: (writes.append(len(data)), real_write(data))[1]  # type: ignore[method-assign]
    for round_ in range(4):
        await asyncio.sleep(0.005)  # a quiet spell
        sender.send(0, b"lone %d" % round_)
        assert len(writes) == round_ + 1, "a lone message waited for another loop turn"
    await asyncio.sleep(0.005)
    sender.send(0, b"burst 0")
    for i in range(1, 100):
        sender.send(0, b"burst %d" % i)
    assert len(writes) == 5  # the first at once, the others held by the cork
    await asyncio.sleep(0)
    assert len(writes) == 6  # ... and written as one frame at the end of the turn
    await asyncio.sleep(0.01)
    assert sink.got == [b"lone %d" % r for r in range(4)] + [b"burst %d" % i for i in range(100)]
    a.close()
    await asyncio.wait_for(b.wait_closed(), 5)


async def test_a_sender_cancelled_after_its_turn_came_passes_the_turn_on() -> None:
    a, b, _, _ = pair(keepalive=0)
    await established(a, b)
    a.pause_writing()  # as the transport does when its buffer is full
    first = asyncio.create_task(a.drain())
    second = asyncio.create_task(a.drain())
    await asyncio.sleep(0)
    assert not first.done() and not second.done() and not a.can_send_now
    a.resume_writing()  # the first in line gets the turn ...
    first.cancel()  # ... and is cancelled before it runs
    await asyncio.wait_for(second, 5)  # the turn was passed on, not lost
    a.end_turn()
    assert first.cancelled() and a.can_send_now
    a.close()
    await asyncio.wait_for(b.wait_closed(), 5)
