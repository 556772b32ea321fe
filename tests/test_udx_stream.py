"""The UDX stream core, deterministically: a virtual clock and a simulated network (udxsim)."""

from __future__ import annotations

import random

import pytest
from udxsim import Sim

from peersockets.errors import InvalidSetting, StreamReset, StreamTimeout
from peersockets.udx import packet as p
from peersockets.udx.stream import BASE_MTU, Closed, Ended, RemoteChanged, StreamCore


def header(datagram: bytes) -> tuple[int, int, int, int, int, int]:
    """(type, data_offset, id, rwnd, seq, ack) of a datagram."""
    _, _, type_, offset, stream_id, rwnd, seq, ack = p.HEADER.unpack_from(datagram)
    return type_, offset, stream_id, rwnd, seq, ack


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def transfer(net: Sim, a_data: bytes, b_data: bytes, limit: float = 120.0) -> None:
    """Both sides write, end, and run until both are closed."""
    net.a.write(a_data)
    net.a.end()
    net.flush(net.a)
    net.b.write(b_data)
    net.b.end()
    net.flush(net.b)
    net.run_until(lambda: net.a.closed and net.b.closed, limit=limit)


def test_a_transfer_both_ways_ends_and_closes_without_error() -> None:
    net = Sim(delay=0.01)
    a_data, b_data = payload_of(500_000, 1), payload_of(70_000, 2)
    transfer(net, a_data, b_data)
    assert bytes(net.received["b"]) == a_data
    assert bytes(net.received["a"]) == b_data
    assert net.events["a"] == [Ended(), Closed(None)]
    assert net.events["b"] == [Ended(), Closed(None)]


def test_first_packets_match_the_captured_open_data_end_exchange() -> None:
    """UDX.md 6.1: seq 0 / ack 0 data, the reply acks 1, END-only takes a seq."""
    net = Sim(delay=0.001)
    net.a.write(b"hello")
    net.flush(net.a)
    first = net.sent["a->b"][0]
    assert first == p.encode(p.DATA, 2, 4 * 1024 * 1024, 0, 0, b"hello")
    net.run_until(lambda: bytes(net.received["b"]) == b"hello")
    net.b.write(b"world")
    net.b.end()
    net.flush(net.b)
    reply = net.sent["b->a"][-1]
    assert header(reply)[0] == p.DATA | p.END and reply[20:] == b"world"
    assert header(reply)[4:] == (0, 1)
    net.run_until(lambda: bytes(net.received["a"]) == b"world")
    net.a.end()
    net.flush(net.a)
    end_only = net.sent["a->b"][-1]
    assert header(end_only)[0] == p.END and len(end_only) == 20 and header(end_only)[4] == 1
    net.run_until(lambda: net.a.closed and net.b.closed)
    assert net.a.error is None and net.b.error is None


@pytest.mark.parametrize("loss", [0.01, 0.05])
def test_loss_duplication_and_reordering_lose_and_corrupt_nothing(loss: float) -> None:
    chance = random.Random(7)
    net = Sim(delay=0.01, jitter=0.004, duplicate=0.02, drop=lambda _d, _b: chance.random() < loss)
    a_data, b_data = payload_of(1_000_000, 3), payload_of(200_000, 4)
    transfer(net, a_data, b_data, limit=600)
    assert bytes(net.received["b"]) == a_data
    assert bytes(net.received["a"]) == b_data
    assert net.a.error is None and net.b.error is None


def test_a_stall_of_100_ms_in_both_directions_is_recovered() -> None:
    net = Sim(delay=0.005)
    stall = (0.05, 0.15)
    net.drop = lambda _d, _b: stall[0] <= net.now < stall[1]
    data = payload_of(2_000_000, 5)
    transfer(net, data, b"", limit=60)
    assert bytes(net.received["b"]) == data


def test_out_of_order_data_is_acked_with_sack_blocks_then_a_cumulative_ack() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    for seq in (1, 2, 4):
        receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, seq, 0, b"x")), 0.0)
    receiver.flush(0.0)
    (ack, _path), = receiver.outgoing
    assert header(ack)[0] == p.SACK and header(ack)[5] == 0
    assert p.decode_sacks(ack[20:]) == [(1, 3), (4, 5)]
    receiver.outgoing.clear()
    receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"y")), 0.0)
    receiver.flush(0.0)
    (ack, _path), = receiver.outgoing
    assert header(ack)[0] == p.SACK and header(ack)[5] == 3
    assert p.decode_sacks(ack[20:]) == [(4, 5)]
    assert b"".join(bytes(x) for x in receiver.incoming) == b"yxx"


def test_sack_blocks_are_capped_at_fifty() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    for seq in range(1, 200, 2):
        receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, seq, 0, b"x")), 0.0)
    receiver.flush(0.0)
    (ack, _path), = receiver.outgoing
    assert len(p.decode_sacks(ack[20:])) == p.MAX_SACK_BLOCKS


def test_duplicates_are_dropped_but_acked_again() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    data = memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"once"))
    for _ in range(3):
        receiver.receive(data, 0.0)
        receiver.flush(0.0)
    assert [bytes(x) for x in receiver.incoming] == [b"once"]
    assert len(receiver.outgoing) == 3
    assert all(header(d)[5] == 1 for d, _ in receiver.outgoing)


def test_data_offset_padding_is_skipped_and_too_large_an_offset_drops_the_packet() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, bytes(32) + b"probe", data_offset=32)), 0.0)
    receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, 1, 0, b"short", data_offset=200)), 0.0)
    receiver.flush(0.0)
    assert [bytes(x) for x in receiver.incoming] == [b"probe"]
    assert [header(d)[5] for d, _ in receiver.outgoing] == [1]


def test_end_only_packet_payload_is_not_delivered() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    receiver.receive(memoryview(p.encode(p.END, 2, 1000, 0, 0, b"ignored")), 0.0)
    assert receiver.incoming == []
    assert receiver.events == [Ended()]


def test_message_is_delivered_unacked_and_its_ack_field_counts() -> None:
    net = Sim(delay=0.001)
    net.a.write(b"data")
    net.flush(net.a)
    before = len(net.sent["b->a"])
    net.b.send_message(b"ping", net.now)
    net.flush(net.b)
    net.run_until(lambda: net.messages["a"] == [b"ping"])
    assert net.messages["a"] == [b"ping"]
    assert not any(header(d)[0] & p.DATA for d in net.sent["b->a"][before:])
    message = next(d for d in net.sent["b->a"] if header(d)[0] == p.MESSAGE)
    assert header(message)[4] == 0  # a MESSAGE does not take a seq


def test_heartbeat_is_answered_and_its_ack_and_window_are_ignored() -> None:
    core = StreamCore(2)
    core.connect(1, None, 0.0)
    core.receive(memoryview(p.encode(p.HEARTBEAT, 2, 0, 0, 0)), 0.0)
    core.flush(0.0)
    (answer, _path), = core.outgoing
    assert header(answer)[0] == p.STATE
    assert core._peer_rwnd == 4 * 1024 * 1024  # the heartbeat's rwnd 0 was not taken


def test_destroy_resets_the_peer_and_a_stale_destroy_is_ignored() -> None:
    net = Sim(delay=0.001)
    net.a.write(b"x")
    net.flush(net.a)
    net.run_until(lambda: bytes(net.received["b"]) == b"x")
    stale = p.encode(p.DESTROY, 2, 1000, 0, 0)
    net.b.receive(memoryview(stale), net.now)
    assert not net.b.closed
    net.a.destroy(net.now)
    net.flush(net.a)
    assert net.a.closed and net.a.error is None
    net.run_until(lambda: net.b.closed)
    assert isinstance(net.b.error, StreamReset)
    assert isinstance(net.b.error, ConnectionResetError) or net.b.error.errno == 104


def test_a_vanished_peer_ends_the_stream_with_a_timeout_after_about_13_rto() -> None:
    net = Sim(delay=0.01)
    net.drop = lambda _d, _b: net.now > 0.5
    net.a.write(payload_of(10_000))
    net.flush(net.a)
    net.run_until(lambda: bytes(net.received["b"]) == payload_of(10_000))
    net.run_for(0.6)
    start = net.now
    net.a.write(b"into the void")
    net.flush(net.a)
    net.run_until(lambda: net.a.closed, limit=start + 60)
    assert isinstance(net.a.error, StreamTimeout)
    assert isinstance(net.a.error, TimeoutError)
    elapsed = net.now - start
    assert 12.0 <= elapsed <= 14.5, elapsed


def test_min_rto_setting_shortens_the_give_up_time() -> None:
    net = Sim(delay=0.001, min_rto=0.05)
    net.drop = lambda _d, _b: True
    net.a.write(b"lost")
    net.flush(net.a)
    net.run_until(lambda: net.a.closed, limit=5)
    assert isinstance(net.a.error, StreamTimeout)
    assert net.now < 2.0


def test_a_lost_tail_packet_is_recovered_by_a_probe_before_the_rto() -> None:
    net = Sim(delay=0.005)
    dropped: list[int] = []

    def drop(direction: str, datagram: bytes) -> bool:
        if direction == "a->b" and header(datagram)[0] & p.DATA and header(datagram)[4] == 60 and not dropped:
            dropped.append(60)
            return True
        return False

    net.drop = drop
    data = payload_of(61 * 1152, 9)
    net.a.write(data)
    net.flush(net.a)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=5)
    assert dropped == [60]
    assert net.now < 0.5  # well before the 1 s RTO floor
    assert bytes(net.received["b"]) == data


def test_sack_makes_the_sender_retransmit_exactly_the_holes() -> None:
    net = Sim(delay=0.005)
    holes = {20, 21, 25}
    dropped: set[int] = set()

    def drop(direction: str, datagram: bytes) -> bool:
        type_, _, _, _, seq, _ = header(datagram)
        if direction == "a->b" and type_ & p.DATA and seq in holes and seq not in dropped:
            dropped.add(seq)
            return True
        return False

    net.drop = drop
    data = payload_of(200_000, 11)
    net.a.write(data)
    net.flush(net.a)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=10)
    seqs = [header(d)[4] for d in net.sent["a->b"] if header(d)[0] & p.DATA]
    resent = sorted(seq for seq in set(seqs) if seqs.count(seq) > 1)
    assert resent == sorted(holes)
    assert any(header(d)[0] == p.SACK for d in net.sent["b->a"])
    assert bytes(net.received["b"]) == data


def test_a_reader_that_stops_reading_closes_the_window_and_heartbeats_probe_it() -> None:
    net = Sim(delay=0.001, receive_window=64 * 1024)
    net.consume = False
    data = payload_of(300_000, 12)
    net.a.write(data)
    net.flush(net.a)
    net.run_for(8.0)
    assert len(net.received["b"]) < 64 * 1024 + p.MAX_DATAGRAM  # a window, and the one packet it allows
    heartbeats = [d for d in net.sent["a->b"] if header(d)[0] == p.HEARTBEAT]
    assert 2 <= len(heartbeats) <= 6  # at +0, +rto, +3 rto, +5 rto, ...
    assert not net.a.closed  # zero-window probing never gives up
    net.consume = True
    net.b.consumed(len(net.received["b"]))
    net.flush(net.b)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=30)
    assert bytes(net.received["b"]) == data


def test_keepalive_sends_a_heartbeat_each_period_on_an_idle_stream() -> None:
    net = Sim(delay=0.001, keepalive=0.15)
    net.b._keepalive = None  # one side only: the other's heartbeats would postpone it
    net.a.write(b"x")
    net.flush(net.a)
    net.run_for(1.0)
    heartbeats = [d for d in net.sent["a->b"] if header(d)[0] == p.HEARTBEAT]
    assert 5 <= len(heartbeats) <= 7
    answers = [d for d in net.sent["b->a"] if header(d)[0] == p.STATE]
    assert len(answers) >= len(heartbeats)


def test_mtu_probing_reaches_1500_with_zero_padding() -> None:
    net = Sim(delay=0.001)
    data = b""
    while net.a.mtu < 1500 and len(data) < 10_000_000:  # one probe per round trip
        chunk = payload_of(100_000, len(data))
        data += chunk
        net.a.write(chunk)
        net.flush(net.a)
        expected = len(data)
        net.run_until(lambda: len(net.received["b"]) == expected, limit=10)  # noqa: B023
    assert net.a.mtu == 1500
    probes = [d for d in net.sent["a->b"] if header(d)[1]]
    assert probes
    for probe in probes:
        offset = header(probe)[1]
        assert probe[20 : 20 + offset] == bytes(offset)
        assert len(probe) + 28 <= 1500
    assert max(len(d) for d in net.sent["a->b"]) == 1500 - 28
    assert bytes(net.received["b"]) == data


def test_probes_that_never_arrive_stop_the_search_at_the_largest_working_size() -> None:
    net = Sim(delay=0.001)
    net.drop = lambda direction, datagram: direction == "a->b" and len(datagram) + 28 > 1300
    data = payload_of(600_000, 14)
    net.a.write(data)
    net.flush(net.a)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=30)
    assert BASE_MTU < net.a.mtu <= 1300
    assert not net.a._probing
    assert bytes(net.received["b"]) == data


def test_sequence_numbers_wrap_around_32_bits() -> None:
    start = p.SEQ_MASK - 5
    net = Sim(delay=0.002, seq=start, ack=start)
    data = payload_of(40 * 1152, 15)
    transfer(net, data, data, limit=30)
    assert bytes(net.received["b"]) == data and bytes(net.received["a"]) == data
    seqs = [header(d)[4] for d in net.sent["a->b"] if header(d)[0] & p.DATA]
    assert seqs[0] == start and 0 in seqs and max(seqs) == p.SEQ_MASK


def test_half_close_lets_the_other_side_keep_sending() -> None:
    net = Sim(delay=0.002)
    net.a.end()
    net.flush(net.a)
    net.run_until(lambda: Ended() in net.events["b"])
    assert not net.a.closed and not net.b.closed
    data = payload_of(100_000, 16)
    net.b.write(data)
    net.b.end()
    net.flush(net.b)
    net.run_until(lambda: net.a.closed and net.b.closed)
    assert bytes(net.received["a"]) == data


def test_after_a_graceful_close_a_retransmitted_end_is_acked_again() -> None:
    net = Sim(delay=0.002)
    transfer(net, b"a", b"b")
    assert net.a.lingering or net.b.lingering
    lingering = net.a if net.a.lingering else net.b
    lingering.receive(memoryview(p.encode(p.END, lingering.local_id, 1000, 1, 1)), net.now)
    lingering.flush(net.now)
    assert len(lingering.outgoing) == 1 and header(lingering.outgoing[0][0])[0] == p.STATE
    lingering.outgoing.clear()
    net.run_for(10)
    assert not lingering.lingering


def test_change_remote_reports_once_the_old_packets_are_acked_and_old_ones_keep_their_path() -> None:
    net = Sim(delay=0.01)
    net.a.write(payload_of(20_000, 17))
    net.flush(net.a)
    net.a.change_remote(2, "new-path", net.now)
    net.a.write(b"after")
    net.flush(net.a)
    paths = [path for _d, path in net.a.outgoing]
    assert paths == []  # flushed already by net.flush; look at what was sent instead
    net.run_until(lambda: RemoteChanged() in net.events["a"], limit=5)
    net.run_until(lambda: len(net.received["b"]) == 20_005)


def test_change_remote_with_nothing_outstanding_reports_at_once() -> None:
    core = StreamCore(1)
    core.connect(2, "old", 0.0)
    core.change_remote(3, "new", 0.0)
    assert core.events == [RemoteChanged()]
    core.write(b"x")
    core.flush(0.0)
    (datagram, path), = core.outgoing
    assert path == "new" and header(datagram)[2] == 3


def test_retransmissions_after_change_remote_keep_the_old_id_and_path() -> None:
    core = StreamCore(1, min_rto=0.1)
    core.connect(2, "old", 0.0)
    core.write(b"before")
    core.flush(0.0)
    core.outgoing.clear()
    core.change_remote(3, "new", 0.0)
    core.write(b"after")
    core.flush(0.0)
    assert [(header(d)[2], path) for d, path in core.outgoing] == [(3, "new")]
    core.outgoing.clear()
    resent: list[tuple[int, object, bytes]] = []
    for _ in range(6):  # a tail-loss probe first (the newest packet), then the RTO
        core.handle_timer(core.get_timer() or 0.0)
        resent += [(header(d)[2], path, d[20:]) for d, path in core.outgoing if header(d)[0] & p.DATA]
        core.outgoing.clear()
    assert (2, "old", b"before") in resent
    assert (3, "new", b"after") in resent


def test_unconnected_core_buffers_and_acks_only_after_connect() -> None:
    core = StreamCore(2)
    core.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"early")), 0.0)
    core.flush(0.0)
    assert core.outgoing == []
    assert [bytes(x) for x in core.incoming] == [b"early"]
    core.connect(1, "path", 0.0)
    core.flush(0.0)
    (ack, path), = core.outgoing
    assert path == "path" and header(ack)[5] == 1


@pytest.mark.parametrize(
    "setting",
    [
        {"receive_window": 0},
        {"max_out_of_order": 0},
        {"keepalive": 0},
        {"min_rto": 0},
        {"max_mtu": 1000},
        {"seq": -1},
        {"ack": 2**32},
    ],
)
def test_settings_out_of_range_are_refused(setting: dict[str, int]) -> None:
    with pytest.raises(InvalidSetting, match=next(iter(setting))):
        StreamCore(1, **setting)  # type: ignore[arg-type]


def test_stream_id_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidSetting, match="4294967296"):
        StreamCore(2**32)


def test_unwrap_picks_the_nearest_sequence_number() -> None:
    assert p.unwrap(5, 2**32 - 3) == 2**32 + 5
    assert p.unwrap(2**32 - 3, 2**32 + 5) == 2**32 - 3
    assert p.unwrap(7, 7) == 7


def test_a_deferred_ack_is_carried_by_data_written_before_the_next_flush() -> None:
    core = StreamCore(2)
    core.connect(1, None, 0.0)
    core.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"ping")), 0.0)
    assert core.flush(0.0, defer_ack=True) is True
    assert core.outgoing == []
    core.write(b"pong")
    assert core.flush(0.0) is False
    (reply, _path), = core.outgoing
    assert header(reply)[0] == p.DATA and header(reply)[5] == 1


def test_a_deferred_ack_is_sent_by_the_next_flush_when_nothing_was_written() -> None:
    core = StreamCore(2)
    core.connect(1, None, 0.0)
    core.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"ping")), 0.0)
    assert core.flush(0.0, defer_ack=True) is True
    core.flush(0.0)
    (ack, _path), = core.outgoing
    assert header(ack)[0] == p.STATE and header(ack)[5] == 1


def test_an_ack_with_sack_blocks_is_never_deferred() -> None:
    core = StreamCore(2)
    core.connect(1, None, 0.0)
    core.receive(memoryview(p.encode(p.DATA, 2, 1000, 1, 0, b"ahead")), 0.0)
    assert core.flush(0.0, defer_ack=True) is False
    (ack, _path), = core.outgoing
    assert header(ack)[0] == p.SACK


def test_a_probe_after_an_ack_of_a_probe_still_recovers_lost_acks_before_the_rto() -> None:
    """A tail-loss probe is allowed again after any delivery, not only after an RTT sample.

    The first write's packet is lost and recovered by a probe, whose ack gives no RTT
    sample (it acks a retransmission). Then every ack of the second write is lost: a
    second probe must still go, well before the 1 s RTO.
    """
    net = Sim(delay=0.002)
    phase = {"drop_data": False, "drop_acks": 0}

    def drop(direction: str, datagram: bytes) -> bool:
        type_ = header(datagram)[0]
        if direction == "a->b" and type_ & p.DATA and phase["drop_data"]:
            phase["drop_data"] = False
            return True
        if direction == "b->a" and phase["drop_acks"]:
            phase["drop_acks"] -= 1
            return True
        return False

    net.drop = drop
    net.a.write(b"rtt ")  # a first round trip: the stream has an RTT sample
    net.flush(net.a)
    net.run_until(lambda: not net.a._inflight, limit=5)
    phase["drop_data"] = True
    net.a.write(b"first")
    net.flush(net.a)
    net.run_until(lambda: bytes(net.received["b"]) == b"rtt first", limit=5)
    assert net.a.stats.retransmits == 1 and net.a.stats.timeouts == 0  # the probe did it
    net.run_until(lambda: not net.a._inflight, limit=5)
    start = net.now
    phase["drop_acks"] = 5  # the acks of the next five packets: all of them
    net.a.write(payload_of(5 * 1152, 20))
    net.flush(net.a)
    net.run_until(lambda: not net.a._inflight, limit=start + 5)
    assert net.now - start < 0.5
    assert net.a.stats.timeouts == 0


def test_when_all_is_sacked_but_the_ack_never_comes_the_sender_asks_with_heartbeats_then_gives_up() -> None:
    core = StreamCore(1)
    core.connect(2, None, 0.0)
    core.write(b"a" * 3000)
    core.flush(0.0)
    core.outgoing.clear()
    core.receive(memoryview(p.encode(p.SACK, 1, 1 << 20, 0, 0, p.encode_sacks([(0, 3)]))), 0.01)
    core.flush(0.01)
    core.outgoing.clear()
    asked = 0
    while not core.closed:
        timer = core.get_timer()
        assert timer is not None and timer < 60
        core.handle_timer(timer)
        asked += sum(1 for d, _ in core.outgoing if header(d)[0] == p.HEARTBEAT)
        assert not any(header(d)[0] & p.DATA for d, _ in core.outgoing)  # its payload is gone
        core.outgoing.clear()
    assert asked >= 6
    assert isinstance(core.error, StreamTimeout)


def test_a_lost_last_ack_of_our_end_closes_gracefully_when_the_remote_is_gone() -> None:
    """libudx closes as soon as both sides ended (no TIME_WAIT): if its ack of our END is
    lost, nobody will resend it. Everything was delivered, so we close without an error."""
    net = Sim(delay=0.002)
    net.b.write(b"all of b")
    net.b.end()
    net.flush(net.b)
    net.run_until(lambda: Ended() in net.events["a"])
    net.drop = lambda direction, _d: direction == "b->a"  # b's last ack is lost, b is gone after
    net.a.end()
    net.flush(net.a)
    net.run_until(lambda: net.a.closed, limit=30)
    assert net.a.error is None
    assert net.now < 8.0  # rto + 2 rto + 2 rto, not 13 rto
    assert bytes(net.received["a"]) == b"all of b"


def test_an_unacked_end_that_carries_data_still_times_out() -> None:
    net = Sim(delay=0.002)
    net.b.end()
    net.flush(net.b)
    net.run_until(lambda: Ended() in net.events["a"])
    net.drop = lambda direction, _d: True
    net.a.write(b"last words")
    net.a.end()
    net.flush(net.a)
    net.run_until(lambda: net.a.closed, limit=30)
    assert isinstance(net.a.error, StreamTimeout)


def test_data_the_peer_sends_past_its_own_end_is_never_delivered() -> None:
    receiver = StreamCore(2)
    receiver.connect(1, None, 0.0)
    receiver.receive(memoryview(p.encode(p.END, 2, 1000, 1, 0)), 0.0)
    receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, 2, 0, b"AFTER-END")), 0.0)
    receiver.receive(memoryview(p.encode(p.DATA, 2, 1000, 0, 0, b"first")), 0.0)
    assert [bytes(x) for x in receiver.incoming] == [b"first"]
    assert receiver.events == [Ended()]


def test_an_end_waiting_for_a_closed_window_is_probed_too() -> None:
    core = StreamCore(1)
    core.connect(2, None, 0.0)
    core.receive(memoryview(p.encode(p.STATE, 1, 0, 0, 0)), 0.0)  # the peer's window is 0
    core.end()
    core.flush(0.0)
    assert [header(d)[0] for d, _ in core.outgoing] == [p.HEARTBEAT]
    assert core.get_timer() is not None  # and again after rto: never stuck
