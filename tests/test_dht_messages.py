"""peersockets.dht.messages: dht-rpc's datagrams, byte for byte (HYPERDHT.md 1.2-1.5, 7)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peersockets.dht import messages as m
from peersockets.dht.messages import (
    ErrorCode,
    InternalCommand,
    Request,
    Response,
    accepted_id,
    decode,
    decode_address,
    encode_address,
    node_id,
)
from peersockets.errors import DecodeError, InvalidSetting
from peersockets.wire.crypto import blake2b_256

ROUND_TRIP = settings(max_examples=200, deadline=None)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOOT1 = ("127.0.0.1", 49738)
BOOT1_ID = bytes.fromhex("ea50f55683100864aa622153cff29c6f99eea9e753f8e211d6b01e0a8af2ac6c")
BOOT2_ID = bytes.fromhex("26fe6ae9a1f45137757384c3a60c80571a6153a27c3c6d3dea8fe8f987b995ce")
TOPIC = bytes.fromhex("0c565b13937737370d895b68cf0277574231d89a232b3f5671e692f640c58321")
SERVER_TARGET = bytes.fromhex("c5e21ab1c9f6022d81c3b25e3436cb7f1df77f9652ae3e1310c28e621dd87b4c")
A, B, C = (bytes([x]) * 32 for x in (0xAA, 0xBB, 0xCC))


# -- addresses and ids ----------------------------------------------------------------------------


def test_the_spec_node_id_example() -> None:
    assert encode_address("127.0.0.1", 49738).hex() == "7f0000014ac2"
    assert node_id(BOOT1) == BOOT1_ID
    assert node_id(("127.0.0.1", 49739)) == BOOT2_ID


@pytest.mark.parametrize(
    ("host", "port", "hex_"),
    [
        ("127.0.0.1", 49738, "7f0000014ac2"),
        ("0.0.0.0", 0, "000000000000"),
        ("255.255.255.255", 65535, "ffffffffffff"),
        ("1.2.3.4", 0x0102, "010203040201"),
        ("10.0.0.1", 1, "0a0000010100"),
    ],
)
def test_address_layout(host: str, port: int, hex_: str) -> None:
    assert encode_address(host, port).hex() == hex_
    assert decode_address(bytes.fromhex(hex_)) == (host, port)


def test_decode_address_at_an_offset_ignores_what_follows() -> None:
    assert decode_address(b"\x99" + bytes.fromhex("7f0000014ac2") + b"junk", 1) == BOOT1


@pytest.mark.parametrize("data", [b"", b"\x7f\x00\x00\x01\x4a"])
def test_decode_address_refuses_fewer_than_6_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError, match=f"got {len(data)}"):
        decode_address(data)


@pytest.mark.parametrize(
    "host",
    ["localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "", " 1.2.3.4", "1.2.3.4 ",
     "+1.2.3.4", "1..3.4", "1.2.3.0004", "\u0661.2.3.4", "::1", "1_0.2.3.4"],
)
def test_encode_address_refuses_what_is_not_dotted_ipv4(host: str) -> None:
    with pytest.raises(InvalidSetting, match="dotted IPv4") as info:
        encode_address(host, 1)
    assert repr(host) in str(info.value)


@pytest.mark.parametrize("port", [-1, 65536, 1.5, "80"])
def test_encode_address_refuses_ports_out_of_range(port: object) -> None:
    with pytest.raises(InvalidSetting, match="port"):
        encode_address("1.2.3.4", port)  # type: ignore[arg-type]


def test_accepted_id_is_the_claimed_id_only_when_it_hashes_the_source() -> None:
    assert accepted_id(BOOT1_ID, BOOT1) == BOOT1_ID
    assert accepted_id(BOOT1_ID, ("127.0.0.1", 49739)) is None
    assert accepted_id(None, BOOT1) is None
    assert accepted_id(bytes(32), BOOT1) is None
    assert accepted_id(BOOT1_ID, ("::1", 49738)) is None
    assert accepted_id(BOOT1_ID, ("127.0.0.1", 0x10000)) is None


def test_enums_have_dht_rpc_values() -> None:
    assert [int(c) for c in InternalCommand] == [0, 1, 2, 3, 4]
    assert [c.name for c in InternalCommand] == ["PING", "PING_NAT", "FIND_NODE", "DOWN_HINT", "DELAYED_PING"]
    assert (ErrorCode.OK, ErrorCode.UNKNOWN_COMMAND, ErrorCode.INVALID_TOKEN) == (0, 1, 2)
    assert (m.REQUEST_ID, m.RESPONSE_ID) == (0x03, 0x13)


# -- the captured messages of HYPERDHT.md section 7 -----------------------------------------------

FIND_NODE = bytes.fromhex(
    "030de65c7f0000014ac226fe6ae9a1f45137757384c3a60c80571a6153a27c3c6d3dea8fe8f987b995ce02"
    "26fe6ae9a1f45137757384c3a60c80571a6153a27c3c6d3dea8fe8f987b995ce"
)
FIND_NODE_REPLY = bytes.fromhex(
    "1305e65c7f0000014bc2ea50f55683100864aa622153cff29c6f99eea9e753f8e211d6b01e0a8af2ac6c017f0000014bc2"
)
ANNOUNCE_VALUE = bytes.fromhex(
    "058a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c037f0000014ac27f0000014cc27f0000014bc2"
    "06ed6f23c5c933725cefa13aa170b349030518654684d42cbf2d48a056b742922073d4c5dbc44a2fd761583f53594c2838"
    "6bc648c1a7718b8018dd68e4557d0d"
)
ANNOUNCE = (
    bytes.fromhex(
        "031a71577f0000014bc2b5be99d485330da7660f0717e614e98fed51a7d8d54c5414a6bc23fcb647ae3c04"
    )
    + TOPIC
    + b"\x74"
    + ANNOUNCE_VALUE
)
LOOKUP_VALUE = bytes.fromhex(
    "018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c037f0000014ac27f0000014cc27f0000014bc200"
)
LOOKUP_REPLY = bytes.fromhex(
    "1317680f7f000001c5e1ea50f55683100864aa622153cff29c6f99eea9e753f8e211d6b01e0a8af2ac6c"
    "d74249efee4caa43bd9c7b40ca188f9b3db648ca820302d724b891484beb79c8027f0000014bc27f0000014cc235"
) + LOOKUP_VALUE
HOLEPUNCH_VALUE = bytes.fromhex(
    "010000321c6f54cecf481f73655aefa5bea605638e266384ceccdf64b687e831ba6d8afadbead38b59227fe1a6bc45b3"
    "2bda24780a067f000001fa95"
)

CAPTURED: list[tuple[str, bytes, Request | Response]] = [
    (
        "FIND_NODE, persistent",
        FIND_NODE,
        Request(23782, BOOT1, InternalCommand.FIND_NODE, True, id=BOOT2_ID, target=BOOT2_ID),
    ),
    (
        "FIND_NODE reply",
        FIND_NODE_REPLY,
        Response(23782, ("127.0.0.1", 49739), id=BOOT1_ID, closer_nodes=(("127.0.0.1", 49739),)),
    ),
    (
        "PING_NAT, ephemeral",
        bytes.fromhex("0314b48b7f00000149c201024dc2"),
        Request(0x8BB4, ("127.0.0.1", 49737), InternalCommand.PING_NAT, True, value=b"\x4d\xc2"),
    ),
    ("PING_NAT reply", bytes.fromhex("1300b48b7f0000014dc2"), Response(0x8BB4, ("127.0.0.1", 49741))),
    (
        "ANNOUNCE",
        ANNOUNCE,
        Request(
            22385,
            ("127.0.0.1", 49739),
            4,
            token=bytes.fromhex("b5be99d485330da7660f0717e614e98fed51a7d8d54c5414a6bc23fcb647ae3c"),
            target=TOPIC,
            value=ANNOUNCE_VALUE,
        ),
    ),
    (
        "ANNOUNCE reply",
        bytes.fromhex("130171577f000001fa95") + BOOT2_ID,
        Response(22385, ("127.0.0.1", 38394), id=BOOT2_ID),
    ),
    (
        "LOOKUP reply, persistent",
        LOOKUP_REPLY,
        Response(
            3944,
            ("127.0.0.1", 57797),
            id=BOOT1_ID,
            token=bytes.fromhex("d74249efee4caa43bd9c7b40ca188f9b3db648ca820302d724b891484beb79c8"),
            closer_nodes=(("127.0.0.1", 49739), ("127.0.0.1", 49740)),
            value=LOOKUP_VALUE,
        ),
    ),
    (
        "LOOKUP reply, ephemeral: UNKNOWN_COMMAND",
        bytes.fromhex("130c670f7f000001c5e1037f0000014bc27f0000014ac27f0000014cc201"),
        Response(
            0x0F67,
            ("127.0.0.1", 57797),
            closer_nodes=(("127.0.0.1", 49739), BOOT1, ("127.0.0.1", 49740)),
            error=ErrorCode.UNKNOWN_COMMAND,
        ),
    ),
    (
        "PEER_HOLEPUNCH",
        bytes.fromhex("0318740f7f0000014ac201") + SERVER_TARGET + b"\x3c" + HOLEPUNCH_VALUE,
        Request(0x0F74, BOOT1, 1, target=SERVER_TARGET, value=HOLEPUNCH_VALUE),
    ),
]


@pytest.mark.parametrize(("name", "datagram", "message"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_captured_messages_decode_and_encode_byte_for_byte(
    name: str, datagram: bytes, message: Request | Response
) -> None:
    assert decode(datagram) == message
    assert message.encode() == datagram


def test_captured_sizes_match_the_spec() -> None:
    assert (len(FIND_NODE), len(FIND_NODE_REPLY), len(ANNOUNCE), len(LOOKUP_REPLY)) == (75, 49, 192, 141)
    assert len(Request(1, BOOT1, InternalCommand.FIND_NODE, True, target=A).encode()) == 43
    assert Request(1, BOOT1, InternalCommand.FIND_NODE, True, target=A).encode()[1] == 0x0C


def test_captured_ids_are_accepted_from_their_sources() -> None:
    request = decode(FIND_NODE)
    assert accepted_id(request.id, ("127.0.0.1", 49739)) == BOOT2_ID
    reply = decode(FIND_NODE_REPLY)
    assert accepted_id(reply.id, BOOT1) == BOOT1_ID


# -- layouts: flag bits and field order -----------------------------------------------------------


def test_request_flag_bits_and_field_order() -> None:
    full = Request(0x0102, ("1.2.3.4", 0x0506), 7, True, A, B, C, b"v")
    assert full.encode() == (
        b"\x03\x1f\x02\x01\x01\x02\x03\x04\x06\x05" + A + B + b"\x07" + C + b"\x01v"
    )
    assert Request(1, BOOT1, 0).encode()[1] == 0
    assert Request(1, BOOT1, 0, id=A).encode()[1] == 1
    assert Request(1, BOOT1, 0, token=A).encode()[1] == 2
    assert Request(1, BOOT1, 0, internal=True).encode()[1] == 4
    assert Request(1, BOOT1, 0, target=A).encode()[1] == 8
    assert Request(1, BOOT1, 0, value=b"x").encode()[1] == 16


def test_response_flag_bits_and_field_order() -> None:
    full = Response(0x0102, ("1.2.3.4", 0x0506), A, B, (("9.9.9.9", 0x0807),), 0x0100, b"v")
    assert full.encode() == (
        b"\x13\x1f\x02\x01\x01\x02\x03\x04\x06\x05" + A + B
        + b"\x01\x09\x09\x09\x09\x07\x08" + b"\xfd\x00\x01" + b"\x01v"
    )
    assert Response(1, BOOT1).encode()[1] == 0
    assert Response(1, BOOT1, id=A).encode()[1] == 1
    assert Response(1, BOOT1, token=A).encode()[1] == 2
    assert Response(1, BOOT1, closer_nodes=(BOOT1,)).encode()[1] == 4
    assert Response(1, BOOT1, error=2).encode()[1] == 8
    assert Response(1, BOOT1, value=b"x").encode()[1] == 16


def test_an_empty_value_is_sent_and_comes_back_empty_not_absent() -> None:
    request = Request(9, BOOT1, InternalCommand.PING, True, value=b"")
    assert request.encode()[1] == 4 | 16 and request.encode()[-1] == 0
    assert decode(request.encode()) == request
    response = Response(9, BOOT1, value=b"")
    assert decode(response.encode()).value == b""
    assert decode(Response(9, BOOT1).encode()).value is None


def test_empty_closer_nodes_and_zero_error_are_not_sent_but_are_accepted() -> None:
    assert Response(5, BOOT1, closer_nodes=(), error=0).encode() == Response(5, BOOT1).encode()
    # flags closerNodes + error with a zero count and a zero error: what JS would decode too
    datagram = bytes.fromhex("130c0500") + encode_address(*BOOT1) + b"\x00\x00"
    assert decode(datagram) == Response(5, BOOT1)


def test_multi_byte_uints_decode() -> None:
    # flags spelt fd 0d 00 (13), command fe ...: legal compact-encoding, JS accepts them
    datagram = b"\x03\xfd\x0d\x00" + b"\x01\x00" + encode_address(*BOOT1) + A + b"\xfe\x00\x00\x01\x00" + B
    assert decode(datagram) == Request(1, BOOT1, 0x10000, True, id=A, target=B)
    big = Request(2, BOOT1, 2**53 - 1)
    assert big.encode()[10] == 0xFF and decode(big.encode()) == big


def test_unknown_flag_bits_are_ignored_like_js() -> None:
    datagram = bytearray(Request(3, BOOT1, 1, value=b"ab").encode())
    datagram[1] |= 0x20 | 0x40 | 0x80
    assert decode(bytes(datagram)) == Request(3, BOOT1, 1, value=b"ab")


def test_trailing_bytes_are_ignored() -> None:
    for _, datagram, message in CAPTURED:
        assert decode(datagram + b"\x00\xff trailing") == message


def test_decode_takes_bytearray_and_memoryview() -> None:
    assert decode(bytearray(FIND_NODE)) == decode(FIND_NODE)
    assert decode(memoryview(b"xx" + FIND_NODE_REPLY)[2:]) == decode(FIND_NODE_REPLY)
    assert isinstance(decode(memoryview(FIND_NODE)).id, bytes)


def test_messages_are_frozen() -> None:
    request = Request(1, BOOT1, 0)
    with pytest.raises(AttributeError):
        request.tid = 2  # type: ignore[misc]


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize("datagram", [b"", b"\x03", b"\x13"])
def test_short_datagrams_are_refused(datagram: bytes) -> None:
    with pytest.raises(DecodeError, match="at least 2 bytes"):
        decode(datagram)


@pytest.mark.parametrize("first", [0x00, 0x01, 0x02, 0x04, 0x12, 0x14, 0x23, 0x33, 0xFF])
def test_other_first_bytes_are_refused_naming_the_byte(first: int) -> None:
    with pytest.raises(DecodeError, match=f"{first:#04x}"):
        decode(bytes([first]) + FIND_NODE[1:])


FULL_REQUEST = Request(0xFFFF, ("1.2.3.4", 5), 300, True, A, B, C, b"value")
FULL_RESPONSE = Response(0xFFFF, ("1.2.3.4", 5), A, B, (BOOT1, ("5.6.7.8", 9)), 300, b"value")


@pytest.mark.parametrize("message", [FULL_REQUEST, FULL_RESPONSE], ids=["request", "response"])
def test_every_truncation_is_refused(message: Request | Response) -> None:
    datagram = message.encode()
    for length in range(len(datagram)):
        with pytest.raises(DecodeError):
            decode(datagram[:length])
    assert decode(datagram) == message


def test_closer_node_count_above_the_array_limit_is_refused_naming_it() -> None:
    head = bytes.fromhex("13040100") + encode_address(*BOOT1)
    with pytest.raises(DecodeError, match="1048577"):
        decode(head + b"\xfe\x01\x00\x10\x00" + bytes(64))
    with pytest.raises(DecodeError, match="1048576 closer nodes"):  # at the limit: merely truncated
        decode(head + b"\xfe\x00\x00\x10\x00" + bytes(64))


@pytest.mark.parametrize("field", ["flags", "command", "error", "value length", "closer node count"])
def test_uints_above_2_53_are_refused_like_js(field: str) -> None:
    too_big = b"\xff" + (2**53).to_bytes(8, "little")
    addr = encode_address(*BOOT1)
    datagrams = {
        "flags": b"\x03" + too_big + b"\x01\x00" + addr + b"\x00",
        "command": b"\x03\x00\x01\x00" + addr + too_big,
        "error": b"\x13\x08\x01\x00" + addr + too_big,
        "value length": b"\x13\x10\x01\x00" + addr + too_big,
        "closer node count": b"\x13\x04\x01\x00" + addr + too_big,
    }
    with pytest.raises(DecodeError, match=str(2**53)):
        decode(datagrams[field])


def test_value_overrunning_the_datagram_is_refused_naming_its_length() -> None:
    datagram = Request(1, BOOT1, 0, value=b"abc").encode()
    with pytest.raises(DecodeError, match="value of 3 bytes"):
        decode(datagram[:-1])


# -- properties -----------------------------------------------------------------------------------

hosts = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
addresses = st.tuples(hosts, st.integers(0, 0xFFFF))
fixed32 = st.none() | st.binary(min_size=32, max_size=32)
uints = st.integers(0, 0xFC) | st.integers(0, 2**53 - 1)
values = st.none() | st.binary(max_size=600)

requests = st.builds(
    Request, st.integers(0, 0xFFFF), addresses, uints, st.booleans(), fixed32, fixed32, fixed32, values
)
responses = st.builds(
    Response,
    st.integers(0, 0xFFFF),
    addresses,
    fixed32,
    fixed32,
    st.lists(addresses, max_size=25).map(tuple),
    uints,
    values,
)


@ROUND_TRIP
@given(message=requests | responses, trailing=st.binary(max_size=8))
def test_round_trip(message: Request | Response, trailing: bytes) -> None:
    datagram = message.encode()
    assert decode(datagram) == message
    assert decode(datagram + trailing) == message
    assert decode(memoryview(bytearray(datagram))) == message


@ROUND_TRIP
@given(address=addresses)
def test_address_round_trip(address: tuple[str, int]) -> None:
    encoded = encode_address(*address)
    assert len(encoded) == 6
    assert decode_address(encoded) == address
    assert node_id(address) == blake2b_256(encoded)


def _decodes_or_refuses(datagram: bytes) -> None:
    try:
        message = decode(datagram)
    except DecodeError:
        return
    assert decode(message.encode()) == message  # anything accepted is a well-formed message


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(datagram: bytes) -> None:
    _decodes_or_refuses(datagram)


@FUZZ
@given(st.sampled_from([b"\x03", b"\x13"]), st.binary(max_size=120))
def test_fuzz_random_bodies(first: bytes, body: bytes) -> None:
    _decodes_or_refuses(first + body)


@FUZZ
@given(
    message=requests | responses,
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10_000),
)
def test_fuzz_mutated_messages(message: Request | Response, edits: list[tuple[int, int]], cut: int) -> None:
    datagram = bytearray(message.encode())
    for position, byte in edits:
        datagram[position % len(datagram)] = byte
    _decodes_or_refuses(bytes(datagram))
    _decodes_or_refuses(bytes(datagram[: cut % (len(datagram) + 1)]))


# -- encoding refuses impossible fields -----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (Request(-1, BOOT1, 0), "tid"),
        (Request(65536, BOOT1, 0), "tid"),
        (Request(1, BOOT1, -1), "command"),
        (Request(1, BOOT1, 2**53), "command"),
        (Request(1, BOOT1, 0, id=b"short"), "id"),
        (Request(1, BOOT1, 0, token=bytes(33)), "token"),
        (Request(1, BOOT1, 0, target=bytes(31)), "target"),
        (Request(1, ("example.org", 1), 0), "host"),
        (Request(1, ("1.2.3.4", 70000), 0), "port"),
        (Response(70000, BOOT1), "tid"),
        (Response(1, BOOT1, error=-1), "error"),
        (Response(1, BOOT1, id=bytes(1)), "id"),
        (Response(1, BOOT1, closer_nodes=(("1.2.3.4", -5),)), "port"),
        (Response(1, BOOT1, closer_nodes=(("nope", 5),)), "host"),
    ],
)
def test_encode_refuses_impossible_fields_naming_them(message: Request | Response, named: str) -> None:
    with pytest.raises(InvalidSetting, match=named):
        message.encode()


# -- values of the internal commands --------------------------------------------------------------


def test_ping_nat_value() -> None:
    assert m.ping_nat_value(49741) == b"\x4d\xc2"
    assert m.ping_nat_port(b"\x4d\xc2") == 49741
    assert m.ping_nat_port(b"\x4d\xc2extra") == 49741
    assert m.ping_nat_port(b"\x00\x00") is None  # port 0: ignored
    assert m.ping_nat_port(b"\x4d") is None
    assert m.ping_nat_port(None) is None
    with pytest.raises(InvalidSetting):
        m.ping_nat_value(65536)


def test_delayed_ping_value() -> None:
    assert m.delayed_ping_value(10_000) == (10_000).to_bytes(4, "little")
    assert m.delayed_ping_delay(m.delayed_ping_value(10_000)) == 10_000
    assert m.delayed_ping_delay(b"\x01\x00\x00") is None
    assert m.delayed_ping_delay(None) is None
    with pytest.raises(InvalidSetting, match="delay_ms"):
        m.delayed_ping_value(-1)


def test_down_hint_value() -> None:
    assert m.down_hint_value(BOOT1) == bytes.fromhex("7f0000014ac2")
    assert m.down_hint_address(bytes.fromhex("7f0000014ac2ff")) == BOOT1
    assert m.down_hint_address(bytes(5)) is None
    assert m.down_hint_address(None) is None
