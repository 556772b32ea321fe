"""Known answers for UDX from packets udx-native 1.21.3 sent (tests/vectors/udx.json).

Regenerate with ``node tests/interop/js/udx_vectors.mjs > tests/vectors/udx.json``.
Each case is replayed: the captured datagrams of one side are fed to our
StreamCore playing the other side, which must answer with the bytes
udx-native answered (our core acks once per flush; flushing after each
datagram gives udx-native's one ack per packet), and our core doing what a
captured side did must send its bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peersockets.errors import StreamReset
from peersockets.udx import packet as p
from peersockets.udx.stream import Closed, Ended, StreamCore

VECTORS = json.loads((Path(__file__).parent / "vectors" / "udx.json").read_text(encoding="utf-8"))
A_ID, B_ID = VECTORS["ids"]["A"], VECTORS["ids"]["B"]
CASES = {case["name"]: case for case in VECTORS["cases"]}


def datagrams(case: str, direction: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
    return [
        d
        for d in CASES[case]["datagrams"]
        if (direction is None or d["dir"] == direction) and (role is None or d.get("role") == role)
    ]


def raw(datagram: dict[str, Any]) -> bytes:
    assert not datagram.get("truncated"), "a truncated capture cannot be replayed byte for byte"
    return bytes.fromhex(datagram["hex"])


_delivered: dict[int, list[bytes]] = {}


def receive(core: StreamCore, datagram: bytes) -> None:
    """Hand one datagram to ``core``; the application reads what it delivers at once."""
    core.receive(memoryview(datagram), 0.0)
    got = [bytes(x) for x in core.incoming]
    core.incoming.clear()
    core.consumed(sum(map(len, got)))
    _delivered.setdefault(id(core), []).extend(got)


def payloads(core: StreamCore) -> list[bytes]:
    return _delivered.pop(id(core), [])


def replay_into(core: StreamCore, captured: list[dict[str, Any]], sizes: bool = False) -> list[bytes]:
    """Feed datagrams to ``core``, flushing after each; what it sent, in order."""
    sent: list[bytes] = []
    for datagram in captured:
        if sizes:  # a truncated DATA capture: header as captured, payload of its length
            body = bytes.fromhex(datagram["hex"])[:20] + bytes(datagram["len"] - 20)
        else:
            body = raw(datagram)
        receive(core, body)
        core.flush(0.0)
        sent += [d for d, _ in core.outgoing]
        core.outgoing.clear()
    return sent


def side_b() -> StreamCore:
    core = StreamCore(B_ID)
    core.connect(A_ID, None, 0.0)
    return core


def side_a(**settings: Any) -> StreamCore:
    core = StreamCore(A_ID, **settings)
    core.connect(B_ID, None, 0.0)
    return core


def test_every_captured_header_decodes_to_its_recorded_fields() -> None:
    for case in VECTORS["cases"]:
        for datagram in case["datagrams"]:
            data = bytes.fromhex(datagram["hex"])
            magic, version, type_, offset, stream_id, rwnd, seq, ack = p.HEADER.unpack_from(data)
            assert (magic, version) == (0xFF, 0x01)
            assert p.is_udx(data) and p.stream_id_of(data) == datagram["id"]
            recorded = (datagram["type"], datagram["data_offset"], datagram["id"], datagram["rwnd"])
            assert (type_, offset, stream_id, rwnd) == recorded
            assert (seq, ack) == (datagram["seq"], datagram["ack"])
            if "sack" in datagram:
                assert [list(b) for b in p.decode_sacks(data[20:])] == datagram["sack"]
                assert p.encode_sacks([tuple(b) for b in datagram["sack"]]) == data[20:]


def test_open_data_end_both_sides_send_udx_natives_bytes() -> None:
    """UDX.md 6.1: A writes hello, B answers world and ends, A ends; both close."""
    a, b = side_a(), side_b()
    captured = datagrams("open_data_end")
    a.write(b"hello")
    a.flush(0.0)
    (hello, _), = a.outgoing
    a.outgoing.clear()
    assert hello == raw(captured[0])
    receive(b, hello)
    assert payloads(b) == [b"hello"]
    b.write(b"world")  # B writes inside its data handler: the reply goes before the ack
    b.end()
    b.flush(0.0)
    (world, _), = b.outgoing
    b.outgoing.clear()
    assert world == raw(captured[1])
    receive(a, world)
    assert payloads(a) == [b"world"] and a.events == [Ended()]
    a.end()
    a.flush(0.0)
    (end, _), = a.outgoing
    a.outgoing.clear()
    assert end == raw(captured[3])
    receive(b, end)
    b.flush(0.0)
    (last_ack, _), = b.outgoing
    assert last_ack == raw(captured[5])
    assert b.events == [Ended(), Closed(None)]
    receive(a, last_ack)
    assert a.events == [Ended(), Closed(None)]


def test_message_bytes_and_delivery() -> None:
    a, b = side_a(), side_b()
    captured = datagrams("message")
    a.send_message(b"ping", 0.0)
    b.send_message(b"pong", 0.0)
    a.send_message(b"", 0.0)
    assert [d for d, _ in a.outgoing] == [raw(captured[0]), raw(captured[2])]
    assert [d for d, _ in b.outgoing] == [raw(captured[1])]
    replay_into(b, datagrams("message", "A->B"))
    assert b.messages == [b"ping", b""]


def test_heartbeat_and_its_answer() -> None:
    captured = datagrams("heartbeat")
    a = side_a(keepalive=0.1)
    a.write(b"x")
    a.flush(0.0)
    assert a.outgoing[0][0] == raw(captured[0])
    a.outgoing.clear()
    b = side_b()
    assert replay_into(b, [captured[0]]) == [raw(captured[1])]
    a.receive(memoryview(raw(captured[1])), 0.001)
    a.flush(0.001)
    a.handle_timer(a.get_timer() or 0.0)
    (heartbeat, _), = a.outgoing
    assert heartbeat == raw(captured[2])
    assert replay_into(b, [captured[2]]) == [raw(captured[3])]


def test_destroy_bytes_and_reset() -> None:
    captured = datagrams("destroy")
    a = side_a()
    a.write(b"x")
    a.flush(0.0)
    a.outgoing.clear()
    receive(a, raw(captured[1]))
    a.destroy(0.0)
    (destroy, _), = a.outgoing
    assert destroy == raw(captured[2])
    b = side_b()
    sent = replay_into(b, [captured[0], captured[2]])
    assert sent == [raw(captured[1])]
    assert isinstance(b.error, StreamReset)


def test_sack_answers_to_a_first_flight_with_holes() -> None:
    flight = [d for d in datagrams("sack", "A->B", "first_flight") if not d.get("dropped")]
    expected = [raw(d) for d in datagrams("sack", "B->A", "first_flight_answer")]
    assert replay_into(side_b(), flight, sizes=True) == expected


def test_retransmissions_of_the_holes_fill_them() -> None:
    b = side_b()
    flight = [d for d in datagrams("sack", "A->B", "first_flight") if not d.get("dropped")]
    replay_into(b, flight, sizes=True)
    resent = datagrams("sack", "A->B", "retransmission")
    assert sorted(d["seq"] for d in resent) == CASES["sack"]["dropped_seqs"]
    sent = replay_into(b, resent, sizes=True)
    assert p.HEADER.unpack_from(sent[-1])[7] == 10  # everything up to seq 9 is in


def test_end_only_payload_is_acked_and_not_delivered() -> None:
    b = side_b()
    captured = datagrams("end_only_payload")
    assert replay_into(b, [captured[0]]) == [raw(captured[1])]
    assert payloads(b) == [] and b.events == [Ended()]


def test_data_offset_too_large_is_dropped_unacked_and_equal_to_the_body_is_empty_data() -> None:
    b = side_b()
    captured = datagrams("data_offset_too_large")
    assert replay_into(b, [captured[0]]) == []
    assert replay_into(b, [captured[1]]) == [raw(captured[2])]
    assert replay_into(b, [captured[3]]) == [raw(captured[4])]
    assert [x for x in payloads(b) if x] == [b"hello"]


def test_out_of_order_sack_then_cumulative_ack() -> None:
    b = side_b()
    captured = datagrams("out_of_order")
    assert replay_into(b, [captured[0]]) == [raw(captured[1])]
    assert replay_into(b, [captured[2]]) == [raw(captured[3])]
    assert payloads(b) == [b"a", b"b"]


def test_sequence_numbers_wrap_as_udx_native_wraps_them() -> None:
    captured = datagrams("sequence_wrap")
    start = captured[0]["seq"]
    a = side_a(seq=start)
    sent = []
    for index, letter in enumerate(b"abc"):
        a.write(bytes([letter]))
        a.flush(0.0)
        sent += [d for d, _ in a.outgoing]
        a.outgoing.clear()
        receive(a, raw(captured[2 * index + 1]))
    assert sent == [raw(captured[i]) for i in (0, 2, 4)]
    b = StreamCore(B_ID, ack=start)
    b.connect(A_ID, None, 0.0)
    assert replay_into(b, [captured[i] for i in (0, 2, 4)]) == [raw(captured[i]) for i in (1, 3, 5)]
    assert payloads(b) == [b"a", b"b", b"c"]


def test_our_probes_climb_udx_natives_ladder() -> None:
    """Probes pad a full packet 32 bytes past the last MTU, with zeros, up to a 1472-byte datagram."""
    a, b = side_a(), side_b()
    probes: list[int] = []
    largest = 0
    while a.mtu < 1500 and largest < 10_000_000:
        a.write(bytes(64 * 1024))
        a.flush(0.0)
        for datagram, _ in a.outgoing:
            offset = datagram[3]
            if offset:
                assert datagram[20 : 20 + offset] == bytes(offset)
                probes.append(len(datagram))
            largest = max(largest, len(datagram))
            receive(b, datagram)
        a.outgoing.clear()
        b.flush(0.0)
        for ack, _ in b.outgoing:
            receive(a, ack)
        b.outgoing.clear()
        payloads(b)
    assert probes == CASES["probe"]["probe_datagram_lengths"]
    assert largest == CASES["probe"]["max_datagram_len"]
