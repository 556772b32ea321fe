"""Bounded receiving, unit by unit: the mux's item budget and halting, the batch limit,
skipped extension names, the swarm-wide receive budget, fair topic queues, PeerEvents
that cancel out, and a connection's backlog over an in-memory pipe."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import next_of
from hostile import open_frame
from test_vectors import Recorder

from peersockets import PeerEvent, Peersockets, TopicMessage
from peersockets.api import QUANTUM, _DriveLink, _EventInbox, _Inbox
from peersockets.budget import FREE_BYTES, ReceiveBudget
from peersockets.connection import ITEMS_PER_READ, Connection
from peersockets.errors import ChannelError, DecodeError, ReceiveBudgetExceeded
from peersockets.pipe import create_pipe
from peersockets.testing import MemoryNetwork
from peersockets.wire import hypercore as hc
from peersockets.wire.crypto import KeyPair
from peersockets.wire.encoding import encode_string, encode_uint
from peersockets.wire.protomux import MAX_BATCH, Mux

# -- the mux: item budget, halting, batch limit, channel count ------------------------------


def paired_mux(recorder: Recorder) -> Mux:
    """A mux with channel "p" paired (our id 1, the remote's id 1)."""
    mux = Mux()
    mux.open("p", None, b"", recorder)
    mux.receive_frame(open_frame(1, "p", None))
    mux.take_frames()
    return mux


def batch(count: int) -> bytes:
    """A batch frame of ``count`` one-byte messages (type 0, payload = index % 256)."""
    items = b"".join(b"\x02\x00" + bytes([i % 256]) for i in range(count))
    return b"\x00\x00\x01" + items


def test_a_batch_stops_when_the_item_budget_is_spent_and_resumes_in_order() -> None:
    recorder = Recorder()
    mux = paired_mux(recorder)
    mux.item_budget = 10
    assert mux.receive_frame(batch(25)) is False
    assert mux.unfinished_batch and len(recorder.events) == 1 + 9  # open + 9 (one for the frame)
    mux.item_budget = 10
    assert mux.resume_batch() is False
    mux.item_budget = 100
    assert mux.resume_batch() is True and not mux.unfinished_batch
    got = [e[3] for e in recorder.events if e[0] == "message"]
    assert got == [bytes([i]) for i in range(25)]


def test_a_halted_mux_leaves_the_rest_of_the_batch_unparsed() -> None:
    recorder = Recorder()
    mux = paired_mux(recorder)

    class Halting(Recorder):
        def channel_message(self, channel: Any, message_type: int, payload: memoryview) -> None:
            super().channel_message(channel, message_type, payload)
            if len(self.events) == 3:
                mux.halted = True  # what hold_reading does from inside a handler

    halting = Halting()
    mux._local[0].handler = halting  # type: ignore[union-attr]
    # the rest holds an invalid item: parsing it would raise, so it must not be parsed
    frame = batch(5) + b"\x00\x00" + b"\x02\x00\x00"  # then channel 0: a nested batch
    assert mux.receive_frame(frame) is False
    assert len(halting.events) == 3
    mux.halted = False
    with pytest.raises(ChannelError, match="nested"):
        mux.resume_batch()
    assert [e[3] for e in halting.events] == [bytes([i]) for i in range(5)]


def test_a_batch_item_past_the_batch_limit_is_refused() -> None:
    mux = paired_mux(Recorder())
    filler = b"\xfe" + (MAX_BATCH - 1).to_bytes(4, "little") + b"\x00" * (MAX_BATCH - 1)
    ok = b"\x00\x00\x01" + filler + b"\x02\x00\x01"  # the last item starts at the limit
    assert mux.receive_frame(ok)
    too_far = b"\x00\x00\x01" + filler + b"\x41\x00" + bytes(64) + b"\x02\x00\x01"
    with pytest.raises(DecodeError, match="past the batch limit"):
        mux.receive_frame(too_far)


def test_the_mux_reports_its_first_open_and_last_closed_channel() -> None:
    changes: list[bool] = []
    mux = Mux()
    mux.on_channels = changes.append
    recorder = Recorder()
    a = mux.open("a", None, b"", recorder)
    b = mux.open("b", None, b"", recorder)
    mux.receive_frame(open_frame(1, "a", None))
    mux.receive_frame(open_frame(2, "b", None))
    assert changes == [True] and mux.open_channels == 2
    a.close()
    assert changes == [True]
    mux.receive_frame(b"\x00\x03\x02")  # the remote closes b
    assert changes == [True, False] and mux.open_channels == 0 and b.closed


# -- hypercore: extension names that can never be topics -------------------------------------


class Extensions:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def peer_opened(self, channel: hc.HypercoreChannel) -> None:
        pass

    def peer_extension(self, channel: hc.HypercoreChannel, name: str, message: bytes) -> None:
        self.got.append((name, message))

    def peer_closed(self, channel: hc.HypercoreChannel, by_remote: bool) -> None:
        pass


def test_long_extension_names_and_their_repeats_are_skipped_undecoded() -> None:
    listener = Extensions()
    channel = hc.HypercoreChannel(Mux(), bytes(32), bytes(64), True, listener, max_name_bytes=16)
    deliver = channel.channel_message
    deliver(channel.mux_channel, 9, memoryview(encode_string("short") + b"1"))
    deliver(channel.mux_channel, 9, memoryview(b"\x00" + b"2"))
    long_name = encode_uint(1 << 30) + b"\xff"  # announces a 1 GiB name: never read
    deliver(channel.mux_channel, 9, memoryview(long_name))
    deliver(channel.mux_channel, 9, memoryview(b"\x00" + b"3"))  # a repeat of the skipped name
    deliver(channel.mux_channel, 9, memoryview(encode_string("x" * 16) + b"4"))  # at the limit
    assert listener.got == [("short", b"1"), ("short", b"2"), ("x" * 16, b"4")]


# -- the receive budget ----------------------------------------------------------------------


class Reader:
    def __init__(self) -> None:
        self.holders: set[object] = set()
        self.error: BaseException | None = None

    @property
    def is_reading(self) -> bool:
        return not self.holders

    def hold_reading(self, holder: object) -> None:
        self.holders.add(holder)

    def release_reading(self, holder: object) -> None:
        self.holders.discard(holder)

    def abort(self, error: BaseException | None = None) -> None:
        self.error = error


def test_the_receive_budget_pauses_all_but_one_reader_past_its_limit() -> None:
    budget = ReceiveBudget(1_000_000)
    a, b, c = Reader(), Reader(), Reader()
    budget.update(a, FREE_BYTES)  # within the free allowance: not counted
    assert budget.used == 0
    budget.update(a, 600_000)
    budget.update(b, 600_000)  # over: b is paused, a reads on
    assert budget.used == 1_200_000 and not b.is_reading and a.is_reading
    budget.update(c, 100_000)  # over, and another (a) reads on: paused
    assert not c.is_reading
    budget.update(a, 0)  # a's frame completed: everyone may read again
    assert budget.used == 700_000 and b.is_reading and c.is_reading
    budget.forget(b)
    budget.forget(c)
    assert budget.used == 0


def test_the_last_reader_reads_on_so_a_frame_larger_than_the_budget_completes() -> None:
    budget = ReceiveBudget(100_000)
    a, b = Reader(), Reader()
    budget.update(a, 90_000)
    budget.update(b, 90_000)
    assert not b.is_reading
    b.holders.add("queue")  # ...and a is held by its application too: no one reads
    budget.update(a, 500_000)  # a is the only reader left: it reads on
    assert a.is_reading and a.error is None


def test_past_twice_the_budget_a_connection_that_wants_more_is_ended() -> None:
    budget = ReceiveBudget(1_000_000)
    readers = [Reader() for _ in range(12)]
    for reader in readers:
        budget.update(reader, 200_000)
    ended = [r for r in readers if r.error is not None]
    assert ended and all(isinstance(r.error, ReceiveBudgetExceeded) for r in ended)
    assert budget.used <= 2 * 1_000_000
    assert "max_receive_buffer (1000000)" in str(ended[0].error)


# -- fair topic queues -----------------------------------------------------------------------


class Source:
    """Stands in for a Connection as the source of queued messages."""

    has_ended = False

    def __init__(self) -> None:
        self.holders: set[object] = set()

    def hold_reading(self, holder: object) -> None:
        self.holders.add(holder)

    def release_reading(self, holder: object) -> None:
        self.holders.discard(holder)


def message(peer: int, text: bytes) -> TopicMessage:
    return TopicMessage(peer, text, bytes(32))


def inbox(max_items: int = 100, overflow: Any = "pause") -> _Inbox:
    return _Inbox(max_items, 1 << 30, overflow)


def test_peers_are_read_round_robin_a_quantum_at_a_time() -> None:
    queue = inbox(max_items=10_000)
    for i in range(3 * QUANTUM):
        queue.put(message(1, b"flood %d" % i))
    queue.put(message(2, b"healthy"))
    taken = [queue.pop() for _ in range(len(queue))]
    assert taken.index(message(2, b"healthy")) == QUANTUM  # after one quantum, not 48
    flood = [m.message for m in taken if m.peer_id == 1]
    assert flood == [b"flood %d" % i for i in range(3 * QUANTUM)]  # each peer in order


def test_only_the_peer_over_its_share_is_paused_and_nothing_is_lost() -> None:
    queue = inbox(max_items=100)
    flooder, healthy = Source(), Source()
    queue.put(message(2, b"h0"), healthy)  # type: ignore[arg-type]
    for i in range(60):
        queue.put(message(1, b"%d" % i), flooder)  # type: ignore[arg-type]
    assert flooder.holders and not healthy.holders  # share: 100 / 2 peers
    queue.put(message(2, b"h1"), healthy)  # type: ignore[arg-type]
    assert not healthy.holders
    got = [queue.pop() for _ in range(len(queue))]
    assert not flooder.holders  # released once its lane was down to half its share
    assert [m.message for m in got if m.peer_id == 1] == [b"%d" % i for i in range(60)]
    assert [m.message for m in got if m.peer_id == 2] == [b"h0", b"h1"]


def test_drop_oldest_drops_the_flooders_messages_not_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="peersockets")
    queue = inbox(max_items=100, overflow="drop-oldest")
    queue.put(message(2, b"healthy"))
    for i in range(10_000):
        queue.put(message(1, b"%d" % i))
    got = [queue.pop() for _ in range(len(queue))]
    assert message(2, b"healthy") in got
    assert queue.dropped == 10_000 - 50
    assert [m.message for m in got if m.peer_id == 1] == [b"%d" % i for i in range(9_950, 10_000)]
    assert len(caplog.records) == 1  # the first drop; then a summary at most every 5 s
    assert "dropped" in caplog.records[0].getMessage()


def test_a_leave_cancels_its_unread_join_so_churn_evicts_no_one() -> None:
    events = _EventInbox(max_items=3, max_bytes=1 << 20)
    events.put(PeerEvent("join", 1, b"a"))
    for peer in range(2, 10_000):  # a peer that churns: a new id each time
        events.put(PeerEvent("join", peer, b"churn"))
        events.put(PeerEvent("leave", peer, b"churn"))
    events.put(PeerEvent("join", 10_000, b"b"))
    assert [events.pop() for _ in range(len(events))] == [
        PeerEvent("join", 1, b"a"),
        PeerEvent("join", 10_000, b"b"),
    ]
    assert events.dropped == 0
    events.put(PeerEvent("leave", 1, b"a"))  # its join was read: the leave is told
    assert events.pop() == PeerEvent("leave", 1, b"a")


async def test_reopens_past_the_rate_are_rejected() -> None:
    net = MemoryNetwork()
    a, b = net.swarm(), net.swarm()
    try:
        ps_a = Peersockets(a, bytes(32), reopen_rate=0.0)
        ps_b = Peersockets(b, bytes(32))
        net.connect(a, b)
        events = ps_a.watch()
        assert (await next_of(events)).type == "join"
        conn, conn_b = a.connections[0], b.connections[0]
        joined = []
        for _ in range(12):
            link = ps_b._links.get(conn_b)
            if link is not None:
                link.channel.close()  # b closes its drive channel, then opens it again
            await asyncio.sleep(0.01)
            ps_b._set_link(conn_b, _DriveLink(ps_b, conn_b))
            await asyncio.sleep(0.01)
            joined.append(len(ps_a.peers))
        assert joined == [1] * 10 + [0, 0]  # a burst of 10 reopens, then rejected
        assert not conn.is_closed
    finally:
        await a.close()
        await b.close()


# -- a connection's backlog ------------------------------------------------------------------


async def channel_over_a_pipe() -> tuple[Connection, Connection, Recorder]:
    """Two connections over a pipe with channel "p" paired; b's messages are recorded."""
    a = Connection(KeyPair.generate(), True)
    b = Connection(KeyPair.generate(), False)
    create_pipe(a, b)
    await asyncio.wait_for(asyncio.gather(a.wait_established(), b.wait_established()), 5)
    recorder = Recorder()
    a.mux.open("p", None, b"", Recorder())
    b.mux.open("p", None, b"", recorder)
    a.flush()
    await asyncio.sleep(0.01)
    return a, b, recorder


async def test_a_large_batch_is_handled_over_several_turns_in_order() -> None:
    a, b, recorder = await channel_over_a_pipe()
    count = 5 * ITEMS_PER_READ
    turns = 0
    a.send_raw(batch(count))
    while sum(1 for e in recorder.events if e[0] == "message") < count:
        turns += 1
        await asyncio.sleep(0)
        assert turns < 100
    assert turns >= 4  # not in one loop turn
    got = [e[3] for e in recorder.events if e[0] == "message"]
    assert got == [bytes([i % 256]) for i in range(count)]
    a.close()
    await asyncio.wait_for(b.wait_closed(), 5)


async def test_the_remote_ending_its_side_waits_for_the_backlog() -> None:
    a, b, recorder = await channel_over_a_pipe()
    b.hold_reading("app")
    a.send_raw(batch(3 * ITEMS_PER_READ))
    a.close()  # our side ends right after the batch
    await asyncio.sleep(0.05)
    assert not b.has_ended  # held: neither the rest of the batch nor the end is taken
    b.release_reading("app")
    await asyncio.wait_for(b.wait_closed(), 5)
    assert sum(1 for e in recorder.events if e[0] == "message") == 3 * ITEMS_PER_READ


async def test_a_message_handed_to_a_waiting_reader_that_is_cancelled_is_not_lost() -> None:
    """put() hands a message straight to a reader already waiting; if that reader is
    cancelled before it runs (a wait_for timeout), the message goes back first in line."""
    queue = inbox()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the reader waits
    queue.put(message(1, b"first"))
    queue.put(message(1, b"second"))
    assert len(queue) == 1  # the first went straight to the reader
    reader.cancel()  # ... which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert [queue.pop().message for _ in range(len(queue))] == [b"first", b"second"]
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put(message(2, b"direct"))
    assert len(queue) == 0 and (await waiting).message == b"direct"
