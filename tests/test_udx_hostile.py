"""UDX against hostile input: fuzzed datagrams, lying acks, far sequence numbers, window abuse.

A packet may be processed, ignored, or (a DESTROY inside the window) reset its stream. Nothing
else is allowed: no exception, no hang, no memory that grows with what a peer sends, and a socket
keeps serving its other streams. The stream core runs on the simulator's virtual clock
(tests/udxsim.py) or is driven by hand as a lying peer; the socket tests use real UDP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from udxsim import Sim

from peersockets.udx import UDXSocket, UDXStream
from peersockets.udx import packet as p
from peersockets.udx.congestion import INITIAL_WINDOW
from peersockets.udx.stream import Closed, StreamCore

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRANSFER = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HALF = 1 << 31
MASK = p.SEQ_MASK
MAX_PAYLOAD = p.MAX_DATAGRAM - p.HEADER_SIZE
"""The most payload one datagram can carry (a hostile peer ignores the MTU)."""
PAYLOAD = 1152
"""max_payload at the base MTU on IPv4: what our sender puts in a DATA packet."""
TIMEOUT = 30.0


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def packet(
    type_: int,
    seq: int,
    ack: int,
    body: bytes = b"",
    *,
    rwnd: int = 4 << 20,
    to: int = 1,
    data_offset: int = 0,
) -> memoryview:
    """A datagram as the peer of core ``to`` would send it (seq and ack wrap)."""
    return memoryview(p.encode(type_, to, rwnd & MASK, seq, ack, body, data_offset))


def connected(local_id: int = 1, **settings: Any) -> StreamCore:
    core = StreamCore(local_id, **settings)
    core.connect(local_id + 1, "peer", 0.0)
    return core


def take(core: StreamCore) -> list[tuple[int, int, int, int, bytes]]:
    """Empty ``outgoing``: (type, rwnd, seq, ack, body) of each datagram, after checking its framing."""
    out = []
    for datagram, _path in core.outgoing:
        assert p.HEADER_SIZE <= len(datagram) <= p.MAX_DATAGRAM
        assert datagram[:2] == b"\xff\x01"
        _, _, type_, _, stream_id, rwnd, seq, ack = p.HEADER.unpack_from(datagram)
        assert stream_id == core.remote_id
        out.append((type_, rwnd, seq, ack, datagram[p.HEADER_SIZE :]))
    core.outgoing.clear()
    return out


def sender_state(core: StreamCore) -> tuple[object, ...]:
    """Everything an ack, window or SACK can change on the sending side."""
    return (
        core._snd_una,
        core._snd_nxt,
        core._peer_rwnd,
        core._wl1,
        core._wl2,
        core._cc.cwnd,
        core._sacked,
        core.unacked_bytes,
        [(s.seq, s.sacked, s.lost) for s in core._inflight.values()],
        list(core._by_time),
        sorted(core._lost),
        core._state,
        core.rto,
    )


def held_bytes(core: StreamCore) -> int:
    """Received payload the core holds: unread plus out of order."""
    return core._unread + sum(len(payload) for _flags, payload in core._ooo.values())


def check_invariants(core: StreamCore) -> None:
    timer = core.get_timer()
    assert timer is None or math.isfinite(timer)
    if core.closed:  # everything held is released
        assert core._inflight == {} and core._by_time == {} and core._lost == [] and not core._queue
        assert (
            core._ooo == {} and core._ranges == [] and core.queued == 0 and core.unacked_bytes == 0
        )
        return
    assert len(core._ooo) <= core._max_ooo
    assert all(seq >= core._rcv_nxt for seq in core._ooo)
    assert core._unread < core._window + MAX_PAYLOAD  # accepted only while below the window
    assert core._snd_una <= core._snd_nxt
    assert all(core._snd_una <= seq < core._snd_nxt for seq in core._inflight)
    assert set(core._by_time) <= set(core._inflight)
    assert core._sacked == sum(1 for sent in core._inflight.values() if sent.sacked)
    assert core.unacked_bytes == sum(len(sent.payload) for sent in core._inflight.values())
    assert core.queued == sum(len(piece) for piece in core._queue)


def check_sent(net: Sim, seen: dict[str, int]) -> None:
    """Every datagram either core sent since the last check is one well-framed UDX packet."""
    for direction, core in (("a->b", net.a), ("b->a", net.b)):
        sent = net.sent[direction]
        for datagram in sent[seen[direction] :]:
            assert p.HEADER_SIZE <= len(datagram) <= p.MAX_DATAGRAM
            assert datagram[:2] == b"\xff\x01"
            assert p.stream_id_of(datagram) == core.remote_id
        seen[direction] = len(sent)


# ------------------------------------------------------------------ strategies

FLAGS = st.one_of(
    st.integers(0, 255),
    st.sampled_from(
        [p.STATE, p.DATA, p.END, p.DATA | p.END, p.SACK, p.MESSAGE, p.DESTROY, p.HEARTBEAT]
    ),
)
OFFSETS = st.one_of(
    st.integers(-70, 70),
    st.integers(-HALF, HALF - 1),
    st.sampled_from([HALF - 1, HALF, MASK, 63, 64, 65, -1]),
)
RWND = st.one_of(st.sampled_from([0, 1, PAYLOAD - 1, PAYLOAD, 4 << 20, MASK]), st.integers(0, MASK))
DATA_OFFSET = st.one_of(st.just(0), st.integers(0, 255))


def draw_body(data: st.DataObject, flags: int, sack_base: int) -> bytes:
    if flags & p.SACK and data.draw(st.booleans(), label="sack blocks"):
        blocks = data.draw(st.lists(st.tuples(OFFSETS, OFFSETS), max_size=60), label="blocks")
        body = p.encode_sacks([(sack_base + start, sack_base + end) for start, end in blocks])
        return body + data.draw(st.binary(max_size=64), label="tail")
    return data.draw(st.binary(max_size=MAX_PAYLOAD), label="body")


def draw_datagram(data: st.DataObject, core: StreamCore) -> bytes:
    """Anything starting FF 01: raw bytes, or a header with seq/ack/rwnd/SACKs near and far."""
    if data.draw(st.integers(0, 3), label="raw?") == 0:
        tail = data.draw(
            st.binary(min_size=p.HEADER_SIZE - 2, max_size=p.MAX_DATAGRAM - 2), label="raw"
        )
        return b"\xff\x01" + tail
    flags = data.draw(FLAGS, label="flags")
    seq = core._rcv_nxt + data.draw(OFFSETS, label="seq offset")
    ack = core._snd_una + data.draw(OFFSETS, label="ack offset")
    body = draw_body(data, flags, core._snd_una)
    datagram = p.encode(
        flags, core.local_id, data.draw(RWND), seq, ack, body, data.draw(DATA_OFFSET)
    )
    return datagram[: p.MAX_DATAGRAM]


def draw_unacceptable(data: st.DataObject, core: StreamCore) -> bytes:
    """A packet no receiver may take as data or acks: any flags, but DATA/END far outside the
    window, DESTROY behind it, and an ack beyond anything sent (so its SACKs and window go too)."""
    flags = data.draw(FLAGS, label="flags")
    ahead = st.integers(core._max_ooo, HALF - 1)
    behind = st.integers(-HALF, -1)
    if flags & p.DESTROY:
        offsets = behind
    elif flags & (p.DATA | p.END):
        offsets = st.one_of(ahead, behind)
    else:
        offsets = OFFSETS
    seq = core._rcv_nxt + data.draw(offsets, label="seq offset")
    flight = core._snd_nxt - core._snd_una
    ack = core._snd_nxt + data.draw(st.integers(1, HALF - 1 - flight), label="ack beyond")
    body = draw_body(data, flags, core._snd_una)
    datagram = p.encode(
        flags, core.local_id, data.draw(RWND), seq, ack, body, data.draw(DATA_OFFSET)
    )
    return datagram[: p.MAX_DATAGRAM]


# --------------------------------------------------------------- 1. core fuzz


@FUZZ
@given(st.data())
def test_the_core_survives_arbitrary_datagrams_and_keeps_its_invariants(
    data: st.DataObject,
) -> None:
    net = Sim(delay=0.01, max_out_of_order=64)
    net.a.write(payload_of(30_000))
    net.a.end()
    net.flush(net.a)
    net.b.write(payload_of(5_000, 1))
    net.flush(net.b)
    seen = {"a->b": 0, "b->a": 0}
    for _ in range(data.draw(st.integers(1, 25), label="junk count")):
        for _ in range(data.draw(st.integers(0, 5), label="steps")):
            net.step()
        core = data.draw(st.sampled_from([net.a, net.b]), label="target")
        core.receive(memoryview(draw_datagram(data, core)), net.now)
        net.flush(core)
        for c in (net.a, net.b):
            check_invariants(c)
        check_sent(net, seen)
    for _ in range(3000):  # junk may have acked or reset anything: only "no crash" from here
        if not net.step():
            break
    for c in (net.a, net.b):
        check_invariants(c)
    check_sent(net, seen)


@TRANSFER
@given(st.data(), st.integers(0, 2**16))
def test_a_transfer_through_junk_that_cannot_be_accepted_arrives_intact(
    data: st.DataObject, seed: int
) -> None:
    net = Sim(delay=0.01, jitter=0.01, duplicate=0.02, seed=seed, max_out_of_order=64)
    a_data, b_data = payload_of(40_000, seed), payload_of(12_000, seed + 1)
    net.a.write(a_data)
    net.a.end()
    net.flush(net.a)
    net.b.write(b_data)
    net.b.end()
    net.flush(net.b)
    rng = random.Random(seed)
    injected = 0
    budget = data.draw(st.integers(5, 40), label="junk count")
    while not (net.a.closed and net.b.closed):
        assert net.now < 120.0, "the transfer did not finish"
        assert net.step(), "the network went quiet before the transfer finished"
        if injected < budget and rng.random() < 0.3:
            core = net.a if rng.random() < 0.5 else net.b
            core.receive(memoryview(draw_unacceptable(data, core)), net.now)
            net.flush(core)
            injected += 1
    assert bytes(net.received["b"]) == a_data
    assert bytes(net.received["a"]) == b_data
    assert [e for e in net.events["a"] if isinstance(e, Closed)] == [Closed(None)]
    assert [e for e in net.events["b"] if isinstance(e, Closed)] == [Closed(None)]


# ------------------------------------------------------------ 2. lying acks


def _sender_with_flight(packets: int = 10) -> StreamCore:
    a = connected()
    a.write(payload_of(PAYLOAD * 40))
    a.flush(0.0)
    assert [t for t, *_ in take(a)] == [p.DATA] * INITIAL_WINDOW
    a.receive(packet(p.STATE, 0, INITIAL_WINDOW - packets), 0.01)  # leave ``packets`` in flight
    a.flush(0.01)
    take(a)
    return a


@pytest.mark.parametrize("beyond", [1, 2, 1000, HALF - 1 - INITIAL_WINDOW])
@pytest.mark.parametrize("type_", [p.STATE, p.SACK, p.DATA, p.MESSAGE, p.END])
@pytest.mark.parametrize("rwnd", [0, MASK])
def test_an_ack_for_data_never_sent_is_ignored(beyond: int, type_: int, rwnd: int) -> None:
    a = _sender_with_flight()
    before = sender_state(a)
    body = (
        p.encode_sacks([(a._snd_una, a._snd_nxt)]) if type_ == p.SACK else b"x" * (type_ & p.DATA)
    )
    a.receive(packet(type_, 1000, a._snd_nxt + beyond, body, rwnd=rwnd), 0.02)
    assert sender_state(a) == before
    a.flush(0.02)
    assert all(t in (p.STATE, p.SACK) for t, *_ in take(a))  # at most an ack of the data
    a.receive(packet(p.STATE, 0, a._snd_nxt), 0.03)  # a true ack still works afterwards
    assert a._snd_una == a._snd_nxt and a._inflight == {}


@pytest.mark.parametrize("behind", [1, 5000, HALF])
def test_an_ack_far_behind_changes_nothing(behind: int) -> None:
    a = _sender_with_flight()
    before = sender_state(a)
    a.receive(packet(p.STATE, 5, a._snd_una - behind, rwnd=0), 0.02)
    assert sender_state(a) == before


def test_sack_blocks_outside_the_flight_empty_or_reversed_are_ignored() -> None:
    a = _sender_with_flight()
    a.receive(packet(p.STATE, 0, a._snd_una + 2), 0.02)
    una, nxt = a._snd_una, a._snd_nxt
    before = sender_state(a)
    bad = [
        (nxt, nxt + 2),  # beyond snd_nxt
        (nxt + 5, nxt + 1),  # beyond and reversed
        (una - 2, una),  # below snd_una
        (una - 1, una + 3),  # starts below snd_una
        (una + 3, nxt + 1),  # ends beyond snd_nxt
        (una + 4, una + 4),  # empty
        (una + 6, una + 3),  # reversed
        (una + 3 + HALF, una + 5),  # start half the sequence space away
        (una + 3, una + 3 + HALF),  # end half the sequence space away
    ]
    a.receive(packet(p.SACK, 0, una, p.encode_sacks(bad)), 0.03)
    assert sender_state(a) == before
    a.receive(packet(p.SACK, 0, una, p.encode_sacks([(una + 3, una + 5)])), 0.04)
    assert [s.seq for s in a._inflight.values() if s.sacked] == [una + 3, una + 4]


def test_a_packet_of_ten_thousand_sack_blocks_is_processed_boundedly() -> None:
    a = _sender_with_flight()
    una, nxt = a._snd_una, a._snd_nxt
    blocks = [(una + 5, una + 2)] * 9_999 + [(una + 3, una + 4)]
    area = p.encode_sacks(blocks)
    assert len(p.decode_sacks(area)) <= 4 * p.MAX_SACK_BLOCKS
    before = sender_state(a)
    a.receive(packet(p.SACK, 0, una, area), 0.02)
    assert sender_state(a) == before  # the one valid block lies past the decoder's cap
    many_valid = [(una + i % (nxt - una), una + i % (nxt - una) + 1) for i in range(10_000)]
    a.receive(packet(p.SACK, 0, una, p.encode_sacks(many_valid)), 0.03)
    assert all(s.sacked for s in a._inflight.values())
    assert a._sacked == nxt - una and a.unacked_bytes == 0


# ------------------------------------------------ 3. sequence numbers far away


@pytest.mark.parametrize("start", [0, (1 << 32) - 100])
@pytest.mark.parametrize(
    "offset_name", ["max_ooo", "max_ooo+1", "10**6", "2**31-1", "2**31", "2**32-1", "-1"]
)
def test_data_far_outside_the_window_is_not_buffered_only_acked(
    start: int, offset_name: str
) -> None:
    max_ooo = 256
    offset = {
        "max_ooo": max_ooo,
        "max_ooo+1": max_ooo + 1,
        "10**6": 10**6,
        "2**31-1": HALF - 1,
        "2**31": HALF,
        "2**32-1": MASK,
        "-1": -1,
    }[offset_name]
    b = connected(2, ack=start, max_out_of_order=max_ooo)
    rcv_nxt = b._rcv_nxt
    for type_ in (p.DATA, p.DATA | p.END, p.END):
        b.receive(packet(type_, rcv_nxt + offset, 0, b"far" * (type_ & p.DATA), to=2), 0.0)
        b.flush(0.0)
        assert b._ooo == {} and b._rcv_nxt == rcv_nxt and b.incoming == []
        assert [(t, ack) for t, _rwnd, _seq, ack, _body in take(b)] == [(p.STATE, rcv_nxt & MASK)]
    assert not b.closed and b.events == []
    b.receive(packet(p.DATA, rcv_nxt + max_ooo - 1, 0, b"edge", to=2), 0.0)
    assert list(b._ooo) == [rcv_nxt + max_ooo - 1]  # the last seq inside the buffer is kept


def test_100k_packets_far_outside_the_window_buffer_nothing_and_inside_it_stay_bounded() -> None:
    max_ooo = 256
    b = connected(2, max_out_of_order=max_ooo)
    rng = random.Random(7)
    types = [p.DATA, p.END, p.DATA | p.END, p.DATA | p.SACK, p.DATA | p.MESSAGE]
    for i in range(100_000):
        offset = rng.randrange(max_ooo, 1 << 32)  # everything outside [rcv_nxt, rcv_nxt + max_ooo)
        b.receive(packet(rng.choice(types), offset, 0, b"z" * rng.randrange(1, 64), to=2), i * 1e-4)
        if i % 1000 == 0:
            b.flush(i * 1e-4)
            take(b)
            b.messages.clear()
    assert b._ooo == {} and b._ranges == [] and b._rcv_nxt == 0 and b.incoming == []
    assert not b.closed
    for i in range(100_000):  # now inside the buffer, above a hole that is never filled
        size = MAX_PAYLOAD if i % 100 == 0 else 8
        b.receive(
            packet(p.DATA, rng.randrange(1, 4 * max_ooo), 0, bytes(size), to=2), 10 + i * 1e-4
        )
        if i % 1000 == 0:
            b.flush(10 + i * 1e-4)
            sacks = take(b)
            assert all(len(body) <= 8 * p.MAX_SACK_BLOCKS for *_, body in sacks)
    assert 0 < len(b._ooo) <= max_ooo - 1
    assert held_bytes(b) <= max_ooo * MAX_PAYLOAD
    check_invariants(b)


# ------------------------------------------- 4. a sender that ignores our window


def test_a_flood_of_in_order_data_stops_at_the_receive_window_when_nobody_reads() -> None:
    window, max_ooo = 64 * 1024, 128
    b = connected(2, receive_window=window, max_out_of_order=max_ooo)
    acks: list[tuple[int, int, int]] = []
    for seq in range(3000):
        b.receive(packet(p.DATA, seq, 0, bytes(MAX_PAYLOAD), to=2), seq * 1e-3)
        if seq % 10 == 9:
            b.flush(seq * 1e-3)
            acks += [(t, rwnd, ack) for t, rwnd, _seq, ack, _body in take(b)]
        b.incoming.clear()  # handed to the application, which never reads (no consumed())
    accepted = math.ceil(window / MAX_PAYLOAD)
    assert b._rcv_nxt == accepted
    assert window <= b._unread < window + MAX_PAYLOAD
    # data past the window is never cumulatively acked
    assert max(ack for *_, ack in acks) == accepted
    assert acks[-1][:2] == (p.SACK, 0)  # the window is shut
    assert len(b._ooo) <= max_ooo and held_bytes(b) <= window + (max_ooo + 1) * MAX_PAYLOAD
    for i in range(1000):  # the peer keeps pushing the next packet: still refused
        b.receive(packet(p.DATA, accepted, 0, bytes(MAX_PAYLOAD), to=2), 5 + i * 1e-3)
    assert b._rcv_nxt == accepted and b.incoming == []
    check_invariants(b)


# --------------------------------------------------- 5. huge and zero windows


def _drive(
    a: StreamCore,
    until: float,
    answer: Callable[[float, list[tuple[int, int, int, int, bytes]]], None],
) -> float:
    """Run ``a``'s timers up to ``until`` (virtual seconds); ``answer`` sees what it sent each time."""
    now = 0.0
    while True:
        timer = a.get_timer()
        if timer is None or timer > until:
            return now
        now = timer
        a.handle_timer(now)
        answer(now, take(a))


def test_a_zero_window_forever_gets_only_probes_at_a_steady_pace_and_no_growth() -> None:
    a = connected()
    a.write(payload_of(1 << 20))
    a.flush(0.0)
    first = take(a)
    assert len(first) == INITIAL_WINDOW
    a.receive(packet(p.STATE, 0, INITIAL_WINDOW, rwnd=0), 0.01)  # everything acked, window shut
    a.flush(0.01)
    probes = [0.01] if [t for t, *_ in take(a)] == [p.HEARTBEAT] else []
    assert probes, "a shut window with data queued is probed at once"
    queued = a.queued

    def answer(now: float, sent: list[tuple[int, int, int, int, bytes]]) -> None:
        assert [t for t, *_ in sent] in ([], [p.HEARTBEAT])
        if sent:
            probes.append(now)
            a.receive(packet(p.STATE, 0, INITIAL_WINDOW, rwnd=0), now)  # still shut
            a.flush(now)
            assert take(a) == []
        assert a._inflight == {} and a._lost == [] and a.queued == queued and not a.closed

    end = _drive(a, 3600.0, answer)
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    assert end > 3500 and not a.closed
    assert len(probes) > 1000
    assert gaps[0] >= a.rto - 1e-9 and all(g2 >= g1 - 1e-9 for g1, g2 in itertools.pairwise(gaps))
    assert max(gaps) <= 2 * a.rto + 1e-9
    a.receive(packet(p.STATE, 1, INITIAL_WINDOW, rwnd=4 << 20), end + 0.5)  # the window opens
    a.flush(end + 0.5)
    assert [t for t, *_ in take(a)][:2] == [p.DATA, p.DATA]


def test_a_zero_window_peer_that_never_answers_is_probed_forever() -> None:
    a = connected()
    a.write(payload_of(1 << 16))
    a.flush(0.0)
    take(a)
    a.receive(packet(p.STATE, 0, INITIAL_WINDOW, rwnd=0), 0.01)
    a.flush(0.01)
    count = len(take(a))

    def answer(now: float, sent: list[tuple[int, int, int, int, bytes]]) -> None:
        nonlocal count
        assert [t for t, *_ in sent] in ([], [p.HEARTBEAT])
        count += len(sent)
        assert a._inflight == {} and not a.closed

    end = _drive(a, 7200.0, answer)
    assert end > 7000 and count > 3000 and not a.closed


def test_a_peer_advertising_a_4_gib_window_is_still_limited_by_cwnd() -> None:
    a = connected()
    a.write(payload_of(PAYLOAD * 3000))
    a.flush(0.0)
    sent = take(a)
    assert [t for t, *_ in sent] == [p.DATA] * INITIAL_WINDOW  # before any ack: the initial window
    now = 0.0
    delivered = 0
    while a.queued or a._inflight:
        now += 0.01
        ack = a._snd_una + len(sent) if sent else a._snd_nxt
        cwnd_before = a._cc.cwnd
        a.receive(packet(p.STATE, 0, ack, rwnd=MASK), now)
        delivered = len(sent)
        a.flush(now)
        sent = take(a)
        assert len(a._by_time) <= a._cc.cwnd
        assert len(sent) <= a._cc.cwnd <= cwnd_before + delivered
        assert now < 60
    assert a.unacked_bytes == 0


def test_a_4_gib_window_that_never_acks_gets_the_initial_window_then_a_timeout() -> None:
    a = connected()
    a.write(payload_of(PAYLOAD * 3000))
    a.flush(0.0)
    take(a)
    a.receive(packet(p.STATE, 0, 0, rwnd=MASK), 0.01)  # huge window, nothing acked
    a.flush(0.01)
    seqs: set[int] = set()

    def answer(now: float, sent: list[tuple[int, int, int, int, bytes]]) -> None:
        seqs.update(seq for t, _rwnd, seq, _ack, _body in sent if t & p.DATA)
        assert len(a._inflight) <= INITIAL_WINDOW + 1

    _drive(a, 60.0, answer)
    assert seqs <= set(range(INITIAL_WINDOW + 1))  # the initial window and one tail-loss probe
    assert a.closed and a._inflight == {} and a.queued == 0


# -------------------------------------------------- bugs the fuzzing found (fixed)


def _window_behind(window_packets: int = 2) -> StreamCore:
    """b with packets 1-3 buffered, then 0 arriving while the reader reads nothing."""
    b = connected(2, receive_window=window_packets * PAYLOAD)
    for seq in (1, 2, 3, 0):
        b.receive(packet(p.DATA, seq, 0, bytes(PAYLOAD), to=2), 0.0)
    return b


def test_a_packet_held_above_a_full_window_is_delivered_once_the_reader_reads() -> None:
    """Found by fuzzing: the packet at rcv_nxt, held in the out-of-order buffer while the
    window was full, was SACKed (so never resent) and never delivered: the stream hung."""
    b = _window_behind()
    b.flush(0.0)
    held = b._rcv_nxt
    assert held in b._ooo  # the window is full: it waits, and the SACK says we have it
    b.consumed(sum(len(x) for x in b.incoming))
    b.incoming.clear()
    assert b._rcv_nxt > held and held not in b._ooo
    b.flush(0.0)
    acks = [ack for _t, _rwnd, _seq, ack, _body in take(b)]
    assert acks and p.unwrap(acks[-1], 0) > held


def test_a_reader_a_window_behind_during_loss_recovery_does_not_stall_the_stream() -> None:
    lost: list[int] = []

    def drop(direction: str, datagram: bytes) -> bool:
        if direction == "a->b" and datagram[2] & p.DATA and not lost:
            lost.append(1)  # the very first DATA packet
            return True
        return False

    net = Sim(delay=0.01, drop=drop, receive_window=4 * PAYLOAD)
    net.consume = False  # the reader reads nothing for two seconds
    data = payload_of(64 * PAYLOAD)
    net.a.write(data)
    net.flush(net.a)
    net.run_for(2.0)
    net.consume = True
    net.b.consumed(len(net.received["b"]))
    net.flush(net.b)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=60.0)
    assert bytes(net.received["b"]) == data


def test_a_resent_packet_leaves_nothing_buffered_below_rcv_nxt() -> None:
    b = _window_behind()
    b.incoming.clear()
    b.consumed(1 << 30)
    b.receive(packet(p.DATA, b._rcv_nxt, 0, bytes(PAYLOAD), to=2), 0.1)  # the peer resends it
    assert all(seq >= b._rcv_nxt for seq in b._ooo), (b._rcv_nxt, sorted(b._ooo))


def test_a_receiver_that_sacks_all_but_trickles_its_ack_cannot_grow_the_senders_memory() -> None:
    a = connected()
    rwnd = 64 * PAYLOAD
    now, cum, seen, sacked_to = 0.0, 0, -1, 0
    chunk = bytes(PAYLOAD * 64)
    for _round in range(600):
        now += 0.01
        if a.queued < len(chunk):
            a.write(chunk)
        for flush in range(2):
            if flush:  # the peer got it all: SACK what is new, move the cumulative ack by one
                cum = min(cum + 1, seen + 1)
                start = max(sacked_to, cum)
                blocks = [(start, seen + 1)] if seen + 1 > start else []
                sacked_to = max(sacked_to, seen + 1)
                a.receive(packet(p.SACK, 0, cum, p.encode_sacks(blocks), rwnd=rwnd), now)
            a.flush(now)
            for t, _rwnd, seq, _ack, _body in take(a):
                if t & p.DATA:
                    seen = max(seen, p.unwrap(seq, a._snd_una))
        assert not a.closed
    assert a._snd_nxt - a._snd_una <= 16384
    assert len(a._inflight) <= 16384 and len(a._sack_ranges) <= 16384


# ------------------------------------------------ 6. the socket under a junk blast


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Every error the loop's exception handler sees while inside."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


class MessageLog:
    """A socket's on_message: records datagrams, and any for a stream id that is live (a demux bug)."""

    def __init__(self, sock: UDXSocket) -> None:
        self.sock = sock
        self.datagrams: list[tuple[bytes, Any]] = []
        self.live: list[bytes] = []
        self.changed = asyncio.Event()
        sock.on_message = self

    def __call__(self, datagram: bytes, source: Any) -> None:
        if p.is_udx(datagram) and p.stream_id_of(datagram) in self.sock.udx.streams:
            self.live.append(datagram)
        self.datagrams.append((datagram, source))
        self.changed.set()

    async def wait_for(self, datagram: bytes, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(d == datagram for d, _ in self.datagrams):
                self.changed.clear()
                await self.changed.wait()


def plain_socket(host: str = "127.0.0.1") -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def nothing_received(sock: socket.socket) -> bool:
    try:
        sock.recvfrom(4096)
    except BlockingIOError:
        return True
    return False


def junk_for_live_stream(rng: random.Random, stream_id: int) -> bytes:
    """Any flags, but DATA/END ~2^30 ahead, DESTROY behind, ack ~2^30 ahead: harmless to a stream
    whose sequence numbers stay near 0 (a 1 MiB transfer is under 1000 packets)."""
    flags = rng.randrange(256)
    seq = 0x90000000 if flags & p.DESTROY else rng.randrange(0x40000000, 0x7FFF0000)
    ack = rng.randrange(0x40000000, 0x7FFF0000)
    body = rng.randbytes(rng.randrange(0, MAX_PAYLOAD + 1))
    if flags & p.SACK and rng.random() < 0.5:
        body = p.encode_sacks(
            [(rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(rng.randrange(300))]
        )
    return p.encode(
        flags,
        stream_id,
        rng.randrange(1 << 32),
        seq,
        ack,
        body,
        rng.choice([0, 0, rng.randrange(256)]),
    )[: p.MAX_DATAGRAM]


async def blast(
    sources: list[socket.socket],
    targets: list[tuple[Any, list[int], set[bytes]]],
    stop: asyncio.Event,
    warmed: asyncio.Event,
    rng: random.Random,
) -> int:
    """Send junk from every source to every (address, live ids, record of non-UDX junk) until
    stop; ``warmed`` is set once 2000 datagrams went out."""
    count = 0
    while not stop.is_set():
        if count >= 2000:
            warmed.set()
        for _ in range(24):
            source = rng.choice(sources)
            address, live, plain = rng.choice(targets)
            kind = rng.randrange(4)
            if kind == 0:  # random bytes, sometimes past the 2048-byte limit
                datagram = rng.randbytes(rng.choice([0, 1, 2, 19, 20, rng.randrange(3000)]))
                if p.is_udx(datagram):
                    continue
                plain.add(datagram[: p.MAX_DATAGRAM])
            elif kind == 1:  # DHT-looking traffic
                datagram = bytes([rng.choice([0x00, 0x03, 0x13])]) + rng.randbytes(
                    rng.randrange(200)
                )
                plain.add(datagram)
            elif kind == 2:  # UDX for an id nobody has
                datagram = p.encode(
                    rng.randrange(256), rng.randrange(1 << 20, 1 << 32), 0, 0, 0, rng.randbytes(40)
                )
            else:
                datagram = junk_for_live_stream(rng, rng.choice(live))
            with contextlib.suppress(BlockingIOError, InterruptedError):
                source.sendto(datagram, address)
                count += 1
        await asyncio.sleep(0.001)
    return count


@pytest.mark.timeout(90)
async def test_a_socket_under_a_junk_blast_keeps_serving_its_streams() -> None:
    with loop_errors() as errors:
        sock_a = await UDXSocket.bind("127.0.0.1", 0)
        sock_b = await UDXSocket.bind("127.0.0.1", 0)
        log_a, log_b = MessageLog(sock_a), MessageLog(sock_b)
        sources = [
            s for s in (plain_socket(), plain_socket(), plain_socket()) if s is not None
        ]
        try:
            _ra1, wa1 = await sock_a.open_stream(101, 201, sock_b.address)
            rb1, wb1 = await sock_b.open_stream(201, 101, sock_a.address)
            ra2, wa2 = await sock_a.open_stream(102, 202, sock_b.address)
            _rb2, wb2 = await sock_b.open_stream(202, 102, sock_a.address)
            writers = [wa1, wb1, wa2, wb2]
            plain_a: set[bytes] = set()
            plain_b: set[bytes] = set()
            stop, warmed = asyncio.Event(), asyncio.Event()
            targets = [(sock_a.address, [101, 102], plain_a), (sock_b.address, [201, 202], plain_b)]
            blaster = asyncio.ensure_future(blast(sources, targets, stop, warmed, random.Random(5)))
            data_1, data_2 = payload_of(1 << 20, 11), payload_of(1 << 20, 12)

            async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
                for offset in range(0, len(data), 64 * 1024):
                    writer.write(data[offset : offset + 64 * 1024])
                    await writer.drain()
                writer.write_eof()

            try:
                # the blast is under way before the streams send, and still going when they are done
                await asyncio.wait_for(warmed.wait(), TIMEOUT)
                _, got_1, _, got_2 = await asyncio.wait_for(
                    asyncio.gather(send(wa1, data_1), rb1.read(), send(wb2, data_2), ra2.read()),
                    TIMEOUT,
                )
                assert not blaster.done()
            finally:
                stop.set()
                sent = await asyncio.wait_for(blaster, TIMEOUT)
            assert hashlib.sha256(got_1).digest() == hashlib.sha256(data_1).digest()
            assert hashlib.sha256(got_2).digest() == hashlib.sha256(data_2).digest()
            assert sent > 2000

            for writer in writers:
                stream = writer.transport
                assert isinstance(stream, UDXStream)
                assert stream.core._ooo == {} and stream.core.error is None
            # no source address was adopted
            assert wa1.transport.get_extra_info("peername") == sock_b.address
            marker = b"\x13end-of-blast"
            for log, sock in ((log_a, sock_a), (log_b, sock_b)):
                sources[0].sendto(marker, sock.address)
                await log.wait_for(marker)
            for log, plain in ((log_a, plain_a), (log_b, plain_b)):
                assert log.live == []  # nothing for a live stream reached on_message
                junk = [d for d, _ in log.datagrams if not p.is_udx(d) and d != marker]
                assert len(junk) > 100 and all(d in plain for d in junk)
                assert all(len(d) <= p.MAX_DATAGRAM for d, _ in log.datagrams)
            # streams answer their remote, never the source of a packet
            assert all(nothing_received(s) for s in sources)

            for writer in (wb1, wa2):
                writer.close()
            await asyncio.wait_for(asyncio.gather(*(w.wait_closed() for w in writers)), TIMEOUT)
            for writer in writers:
                stream = writer.transport
                assert isinstance(stream, UDXStream) and stream.closed.exception() is None
            assert sock_a.udx.streams == {} or all(
                s.core.lingering for s in sock_a.udx.streams.values()
            )
        finally:
            for s in sources:
                s.close()
            await sock_a.close()
            await sock_b.close()
    assert errors == []


# --------------------------------------------- 7. junk to an unconnected stream


async def test_junk_for_an_unconnected_stream_is_dropped_silently() -> None:
    with loop_errors() as errors:
        sock = await UDXSocket.bind("127.0.0.1", 0)
        log = MessageLog(sock)
        plain = plain_socket()
        assert plain is not None
        try:
            stream = sock.create_stream(7777)
            rng = random.Random(3)
            junk = [
                p.encode(p.DATA, 7777, 4 << 20, 0, 0, b"hello"),
                p.encode(p.DATA | p.END, 7777, 4 << 20, 1, 0, b"bye"),
                p.encode(p.END, 7777, 4 << 20, 0, 0),
                p.encode(p.DESTROY, 7777, 4 << 20, 0, 0),
                p.encode(p.HEARTBEAT, 7777, 0, 0, 0),
                p.encode(p.MESSAGE, 7777, 0, 0, 0, b"message"),
                p.encode(p.SACK, 7777, 0, 0, 0, p.encode_sacks([(0, 5)])),
                p.encode(p.STATE, 7777, 0, 0, 0),
            ] + [
                b"\xff\x01"
                + rng.randbytes(2)
                + (7777).to_bytes(4, "little")
                + rng.randbytes(rng.randrange(12, 2040))
                for _ in range(50)
            ]
            for datagram in junk:
                plain.sendto(datagram, sock.address)
            marker = b"\x03marker"
            plain.sendto(marker, sock.address)
            await log.wait_for(marker)
            assert [d for d, _ in log.datagrams] == [marker]
            core = stream.core
            assert not core._received and core._ooo == {} and core._rcv_nxt == 0
            assert core.incoming == [] and core.messages == [] and core.events == []
            assert not core.closed
            assert stream.remote_address is None and not core.connected
            assert nothing_received(plain)

            stream.abort()  # gone: its id is nobody's, so the same packet is the DHT's now
            await asyncio.wait_for(stream.wait_closed(), TIMEOUT)
            plain.sendto(junk[0], sock.address)
            await log.wait_for(junk[0])
        finally:
            plain.close()
            await sock.close()
    assert errors == []
