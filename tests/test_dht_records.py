"""hyperdht's record encodings and signatures (peersockets.dht.records, HYPERDHT.md 2.1-2.4)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peersockets.dht import records as r
from peersockets.dht.records import (
    Announce,
    Command,
    HyperdhtErrorCode,
    LookupReply,
    MutableGetResponse,
    MutablePutRequest,
    PeerRecord,
    PluginRequest,
)
from peersockets.errors import DecodeError, InvalidSetting
from peersockets.wire.crypto import KeyPair, blake2b_256
from peersockets.wire.encoding import uint_length

ROUND_TRIP = settings(max_examples=150, deadline=None)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAX_SAFE = 2**53 - 1

# -- strategies -----------------------------------------------------------------------------------

hosts = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
addresses = st.tuples(hosts, st.integers(0, 0xFFFF))
keys32 = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
uints = st.one_of(st.integers(0, 0x1FF), st.integers(0, 0xFFFFFFFF), st.integers(0, MAX_SAFE))
peers = st.builds(PeerRecord, keys32, st.lists(addresses, max_size=5).map(tuple))
lookup_replies = st.builds(LookupReply, st.lists(peers, max_size=4).map(tuple), uints)
announces = st.builds(
    Announce, st.none() | peers, st.none() | keys32, st.none() | signatures, uints
)
mutable_puts = st.builds(MutablePutRequest, keys32, uints, st.binary(max_size=200), signatures)
mutable_gets = st.builds(MutableGetResponse, uints, st.binary(max_size=200), signatures)
plugins = st.builds(
    PluginRequest, st.text(max_size=20), uints, uints, st.none() | st.binary(max_size=50)
)

CODECS = [
    (peers, r.encode_peer_record, r.decode_peer_record),
    (lookup_replies, r.encode_lookup_reply, r.decode_lookup_reply),
    (announces, r.encode_announce, r.decode_announce),
    (mutable_puts, r.encode_mutable_put_request, r.decode_mutable_put_request),
    (mutable_gets, r.encode_mutable_get_response, r.decode_mutable_get_response),
    (uints, r.encode_mutable_get_request, r.decode_mutable_get_request),
    (plugins, r.encode_plugin_request, r.decode_plugin_request),
]
DECODERS = [decode for _, _, decode in CODECS]
CODEC_IDS = ["peer", "lookup", "announce", "mutable_put", "mutable_get", "get_seq", "plugin"]


# -- constants ------------------------------------------------------------------------------------


def test_commands_are_hyperdhts() -> None:
    assert [(c.name, c.value) for c in Command] == [
        ("PEER_HANDSHAKE", 0),
        ("PEER_HOLEPUNCH", 1),
        ("FIND_PEER", 2),
        ("LOOKUP", 3),
        ("ANNOUNCE", 4),
        ("UNANNOUNCE", 5),
        ("MUTABLE_PUT", 6),
        ("MUTABLE_GET", 7),
        ("IMMUTABLE_PUT", 8),
        ("IMMUTABLE_GET", 9),
        ("PLUGIN", 10),
    ]


def test_error_codes_are_hyperdhts() -> None:
    assert {c.name: c.value for c in HyperdhtErrorCode} == {
        "NONE": 0,
        "ABORTED": 1,
        "VERSION_MISMATCH": 2,
        "TRY_LATER": 3,
        "SEQ_REUSED": 16,
        "SEQ_TOO_LOW": 17,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NS_PEER_HANDSHAKE", "14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a"),
        ("NS_PEER_HOLEPUNCH", "f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b"),
        ("NS_ANNOUNCE", "36386adddf9f6fd60db83a6f42fc159d1146aa8644037664230aaa1f0179d497"),
        ("NS_UNANNOUNCE", "ded293cd93fb395e756ecf5fff426529e72c36eacc22e5ed944d9099a2561e32"),
        ("NS_MUTABLE_PUT", "668e823edd5ce7f5338d68bf1161f4a3c28ce437ee2ab49efd30d99366039b1e"),
        ("NS_PLUGIN", "6b8a2a8623f28c6c02a1e22abe515ce31cafd9af61d4b69970639aa7eb96a8d5"),
    ],
)
def test_namespaces_match_the_spec(name: str, expected: str) -> None:
    assert getattr(r, name).hex() == expected


def test_namespace_root_matches_the_spec() -> None:
    root = blake2b_256(b"hyperswarm/dht")
    assert root.hex() == "d70d90f7efc42f93e1ad5837e682a6010cf551013c2d2d043f40d8fbe07dcb90"
    assert blake2b_256(root + bytes([Command.ANNOUNCE])) == r.NS_ANNOUNCE


# -- known bytes ----------------------------------------------------------------------------------

SERVER_PK = bytes.fromhex("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
RELAYS = (("127.0.0.1", 49738), ("127.0.0.1", 49740), ("127.0.0.1", 49739))
# HYPERDHT.md 7.2: an ANNOUNCE captured from hyperdht 6.34.0, sent to boot2 (127.0.0.1:49739).
CAPTURED_TOKEN = bytes.fromhex("b5be99d485330da7660f0717e614e98fed51a7d8d54c5414a6bc23fcb647ae3c")
CAPTURED_TOPIC = bytes.fromhex("0c565b13937737370d895b68cf0277574231d89a232b3f5671e692f640c58321")
CAPTURED_ANNOUNCE = bytes.fromhex(
    "058a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c037f0000014ac27f0000014c"
    "c27f0000014bc206ed6f23c5c933725cefa13aa170b349030518654684d42cbf2d48a056b742922073d4c5dbc4"
    "4a2fd761583f53594c28386bc648c1a7718b8018dd68e4557d0d"
)
BOOT2_ID = blake2b_256(bytes.fromhex("7f0000014bc2"))
# HYPERDHT.md 7.3: the value of a LOOKUP reply.
CAPTURED_LOOKUP = bytes.fromhex(
    "018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c037f0000014ac27f0000014c"
    "c27f0000014bc200"
)


def test_captured_announce_decodes_and_verifies() -> None:
    announce = r.decode_announce(CAPTURED_ANNOUNCE)
    assert announce.peer == PeerRecord(SERVER_PK, RELAYS)
    assert announce.refresh is None and announce.bump == 0
    assert announce.signature is not None
    assert r.encode_announce(announce) == CAPTURED_ANNOUNCE
    assert r.verify_announce(
        announce.signature, CAPTURED_TOPIC, BOOT2_ID, CAPTURED_TOKEN, announce.peer
    )
    # signed for boot2 only: another node's id, another token, the other namespace all fail
    other_id = blake2b_256(bytes.fromhex("7f0000014ac2"))
    assert not r.verify_announce(
        announce.signature, CAPTURED_TOPIC, other_id, CAPTURED_TOKEN, announce.peer
    )
    assert not r.verify_unannounce(
        announce.signature, CAPTURED_TOPIC, BOOT2_ID, CAPTURED_TOKEN, announce.peer
    )


def test_captured_lookup_reply() -> None:
    reply = r.decode_lookup_reply(CAPTURED_LOOKUP)
    assert reply == LookupReply((PeerRecord(SERVER_PK, RELAYS),), 0)
    assert r.encode_lookup_reply(reply) == CAPTURED_LOOKUP
    raw = r.encode_peer_record(reply.peers[0])
    assert r.encode_raw_lookup_reply([raw], 0) == CAPTURED_LOOKUP


def test_layouts_by_hand() -> None:
    key = bytes(range(32))
    peer = PeerRecord(key, (("1.2.3.4", 0x0102),))
    assert r.encode_peer_record(peer) == key + b"\x01" + bytes([1, 2, 3, 4, 0x02, 0x01])
    sig, refresh = b"s" * 64, b"f" * 32
    assert r.encode_announce(Announce()) == b"\x00"
    assert r.encode_announce(Announce(bump=0)) == b"\x00"  # a zero bump is left out
    assert r.encode_announce(Announce(peer, refresh, sig, 300)) == (
        b"\x0f" + r.encode_peer_record(peer) + refresh + sig + b"\xfd\x2c\x01"
    )
    assert r.encode_announce(Announce(signature=sig)) == b"\x04" + sig
    assert r.encode_lookup_reply(LookupReply()) == b"\x00\x00"
    assert r.encode_mutable_get_request(0xFD) == b"\xfd\xfd\x00"
    put = MutablePutRequest(key, 1, b"hi", sig)
    assert r.encode_mutable_put_request(put) == key + b"\x01\x02hi" + sig
    assert r.encode_mutable_get_response(MutableGetResponse(1, b"hi", sig)) == b"\x01\x02hi" + sig
    assert r.encode_mutable_signable(1, b"hi") == b"\x01\x02hi"
    assert r.encode_plugin_request(PluginRequest("p", 1, 2)) == b"\x01p\x01\x02\x00"
    assert r.encode_plugin_request(PluginRequest("p", 1, 2, b"")) == b"\x01p\x01\x02\x01\x00"


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "encode", "decode"), CODECS, ids=CODEC_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_round_trip(values, encode, decode, data) -> None:  # type: ignore[no-untyped-def]
    value = data.draw(values)
    encoded = encode(value)
    assert decode(encoded) == value
    assert decode(encoded + data.draw(st.binary(max_size=8))) == value  # trailing bytes ignored


@pytest.mark.parametrize(("values", "encode", "decode"), CODECS, ids=CODEC_IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_truncation_is_a_decode_error(values, encode, decode, data) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(data.draw(values))
    for cut in range(len(encoded)):
        prefix = encoded[:cut]
        try:
            decode(prefix)
        except DecodeError:
            continue
        # only a lookup reply cut exactly before its bump still decodes: JS reads bump 0 then
        assert decode is r.decode_lookup_reply
        assert cut == len(encoded) - uint_length(decode(encoded).bump)
        assert decode(prefix).bump == 0


def test_missing_bump_reads_as_zero() -> None:
    assert r.decode_lookup_reply(b"\x00") == LookupReply((), 0)
    assert r.decode_lookup_reply(CAPTURED_LOOKUP[:-1]) == r.decode_lookup_reply(CAPTURED_LOOKUP)


def test_memoryview_and_bytearray_inputs() -> None:
    view = memoryview(b"xx" + CAPTURED_ANNOUNCE)[2:]
    assert r.decode_announce(view) == r.decode_announce(bytearray(CAPTURED_ANNOUNCE))


# -- malformed input -------------------------------------------------------------------------------


@pytest.mark.parametrize("decode", DECODERS, ids=CODEC_IDS)
@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_bytes_decode_or_raise_decode_error(decode, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(DecodeError):
        decode(data)


@pytest.mark.parametrize(("values", "encode", "decode"), CODECS, ids=CODEC_IDS)
@FUZZ
@given(data=st.data())
def test_mutated_values_decode_or_raise_decode_error(values, encode, decode, data) -> None:  # type: ignore[no-untyped-def]
    encoded = bytearray(encode(data.draw(values)))
    for _ in range(data.draw(st.integers(1, 4))):
        if encoded:
            encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(encoded))


@pytest.mark.parametrize(
    ("decode", "data", "names"),
    [
        (r.decode_peer_record, b"k" * 31, "peer public key"),
        (r.decode_peer_record, b"k" * 32 + b"\x02" + b"a" * 6, "relay address count 2"),
        (r.decode_peer_record, b"k" * 32 + b"\xfe\x01\x00\x10\x00", "above 1048576"),
        (r.decode_lookup_reply, b"\xfe\x01\x00\x10\x00", "above 1048576"),
        (r.decode_lookup_reply, b"\x01" + b"k" * 32, "lookup peer count 1 overruns"),
        (r.decode_lookup_reply, b"\x00\xff" + b"\xff" * 8, "lookup bump"),
        (r.decode_announce, b"", "truncated uint"),
        (r.decode_announce, b"\x02" + b"r" * 31, "announce refresh"),
        (r.decode_announce, b"\x04" + b"s" * 63, "announce signature"),
        (r.decode_announce, b"\x08", "truncated uint"),
        (r.decode_announce, b"\x08\xff\x00\x00\x00\x00\x00\x00\x20\x00", "announce bump"),
        (r.decode_announce, b"\xff" + b"\xff" * 8, "announce flags"),
        (r.decode_mutable_put_request, b"k" * 32 + b"\x01\x05abc", "overruns"),
        (r.decode_mutable_put_request, b"k" * 32 + b"\x01\x00" + b"s" * 63, "mutable signature"),
        (r.decode_mutable_get_response, b"\xff" + b"\x00" * 7 + b"\x01", "mutable seq"),
        (r.decode_mutable_get_request, b"", "truncated uint"),
        (r.decode_mutable_get_request, b"\xff\x00\x00\x00\x00\x00\x00\x20\x00", "9007199254740992"),
        (r.decode_plugin_request, b"\x01p\x01\x02\x01\x05", "overruns"),
    ],
)
def test_malformed_values_name_the_problem(decode, data: bytes, names: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError, match=names):
        decode(data)


def test_largest_safe_integer_decodes() -> None:
    assert r.decode_mutable_get_request(b"\xff\xff\xff\xff\xff\xff\xff\x1f\x00") == MAX_SAFE


def test_unknown_announce_flag_bits_are_ignored() -> None:
    assert r.decode_announce(b"\xf0") == Announce()
    assert r.decode_announce(b"\xfd\x00\x01") == Announce()  # a 3-byte flags uint, as JS reads it


def test_plugin_name_that_is_not_utf8_decodes_with_replacement() -> None:
    assert r.decode_plugin_request(b"\x01\xff\x01\x02\x00").plugin == "\ufffd"


# -- encoder input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: PeerRecord(b"k" * 31),
        lambda: Announce(refresh=b"r" * 31),
        lambda: Announce(signature=b"s" * 65),
        lambda: MutablePutRequest(b"k" * 32, 0, b"", b"s" * 63),
        lambda: MutablePutRequest(b"k" * 33, 0, b"", b"s" * 64),
        lambda: MutableGetResponse(0, b"", b"s"),
        lambda: r.encode_peer_record(PeerRecord(b"k" * 32, (("256.0.0.1", 1),))),
        lambda: r.encode_peer_record(PeerRecord(b"k" * 32, (("1.2.3", 1),))),
        lambda: r.encode_peer_record(PeerRecord(b"k" * 32, (("::1", 1),))),
        lambda: r.encode_peer_record(PeerRecord(b"k" * 32, (("1.2.3.4", 65536),))),
        lambda: r.encode_peer_record(PeerRecord(b"k" * 32, (("1.2.3.4", -1),))),
        lambda: r.encode_announce(Announce(bump=-1)),
        lambda: r.encode_announce(Announce(bump=2**53)),
        lambda: r.encode_lookup_reply(LookupReply((), -5)),
        lambda: r.encode_mutable_get_request(2**64),
        lambda: r.encode_mutable_signable(-1, b""),
    ],
)
def test_impossible_values_are_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSetting):
        make()


def test_lists_become_tuples() -> None:
    peer = PeerRecord(b"k" * 32, [("1.2.3.4", 5)])  # type: ignore[arg-type]
    assert peer.relay_addresses == (("1.2.3.4", 5),)
    assert hash(peer) == hash(PeerRecord(b"k" * 32, (("1.2.3.4", 5),)))
    assert LookupReply([peer]).peers == (peer,)  # type: ignore[arg-type]


# -- signatures ------------------------------------------------------------------------------------

KEYS = KeyPair.from_seed(b"\x01" * 32)
OTHER_KEYS = KeyPair.from_seed(b"\x02" * 32)
TARGET, NODE_ID, TOKEN, REFRESH = (bytes([i]) * 32 for i in (0xA1, 0xA2, 0xA3, 0xA4))
PEER = PeerRecord(KEYS.public_key, (("10.0.0.1", 1000),))


def test_announce_signable_layout() -> None:
    record = r.encode_peer_record(PEER)
    digest = blake2b_256(TARGET + NODE_ID + TOKEN + record + REFRESH)
    assert r.announce_signable(TARGET, NODE_ID, TOKEN, record, REFRESH) == r.NS_ANNOUNCE + digest
    assert r.unannounce_signable(TARGET, NODE_ID, TOKEN, record) == r.NS_UNANNOUNCE + blake2b_256(
        TARGET + NODE_ID + TOKEN + record
    )
    assert r.mutable_signable(5, b"v") == r.NS_MUTABLE_PUT + blake2b_256(b"\x05\x01v")


@pytest.mark.parametrize("refresh", [None, REFRESH])
@pytest.mark.parametrize(
    ("sign", "verify", "other_verify"),
    [
        (r.sign_announce, r.verify_announce, r.verify_unannounce),
        (r.sign_unannounce, r.verify_unannounce, r.verify_announce),
    ],
    ids=["announce", "unannounce"],
)
def test_announce_signatures(sign, verify, other_verify, refresh: bytes | None) -> None:  # type: ignore[no-untyped-def]
    signature = sign(KEYS, TARGET, NODE_ID, TOKEN, PEER, refresh)
    assert len(signature) == 64
    assert verify(signature, TARGET, NODE_ID, TOKEN, PEER, refresh)
    wrong = b"\x00" * 32
    assert not verify(signature, wrong, NODE_ID, TOKEN, PEER, refresh)  # another target
    assert not verify(signature, TARGET, wrong, TOKEN, PEER, refresh)  # another storing node
    assert not verify(signature, TARGET, NODE_ID, wrong, PEER, refresh)  # another token
    other_refresh = None if refresh else REFRESH
    assert not verify(signature, TARGET, NODE_ID, TOKEN, PEER, other_refresh)
    relays = PeerRecord(KEYS.public_key, (("10.0.0.2", 1000),))
    assert not verify(signature, TARGET, NODE_ID, TOKEN, relays, refresh)  # another record
    signer = PeerRecord(OTHER_KEYS.public_key, PEER.relay_addresses)
    assert not verify(signature, TARGET, NODE_ID, TOKEN, signer, refresh)  # another key
    assert not other_verify(signature, TARGET, NODE_ID, TOKEN, PEER, refresh)  # other namespace
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify(flipped, TARGET, NODE_ID, TOKEN, PEER, refresh)


def test_mutable_signatures() -> None:
    signature = r.sign_mutable(KEYS, 7, b"value")
    assert r.verify_mutable(signature, 7, b"value", KEYS.public_key)
    assert not r.verify_mutable(signature, 8, b"value", KEYS.public_key)
    assert not r.verify_mutable(signature, 7, b"valuf", KEYS.public_key)
    assert not r.verify_mutable(signature, 7, b"value", OTHER_KEYS.public_key)
    assert not r.verify_mutable(signature[:63], 7, b"value", KEYS.public_key)
    assert not r.verify_mutable(b"\x00" * 64, 7, b"value", b"\x00" * 32)  # a small-order key


def test_signatures_are_ed25519_over_the_signable() -> None:
    from nacl.signing import VerifyKey

    signature = r.sign_announce(KEYS, TARGET, NODE_ID, TOKEN, PEER)
    signable = r.announce_signable(TARGET, NODE_ID, TOKEN, r.encode_peer_record(PEER))
    VerifyKey(KEYS.public_key).verify(signable, signature)


@settings(max_examples=30, deadline=None)
@given(peer_key=st.binary(min_size=32, max_size=32), relays=st.lists(addresses, max_size=4))
def test_signature_round_trip_through_the_wire(
    peer_key: bytes, relays: list[tuple[str, int]]
) -> None:
    keys = KeyPair.from_seed(peer_key)
    peer = PeerRecord(keys.public_key, tuple(relays))
    signature = r.sign_announce(keys, TARGET, NODE_ID, TOKEN, peer, REFRESH)
    decoded = r.decode_announce(r.encode_announce(Announce(peer, REFRESH, signature, 9)))
    assert decoded.peer is not None and decoded.signature is not None
    assert r.verify_announce(
        decoded.signature, TARGET, NODE_ID, TOKEN, decoded.peer, decoded.refresh
    )
