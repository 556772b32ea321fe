"""Known answers for peersockets.dht.records (and the store's acceptance of real signatures) from
tests/vectors/dht.json: the sections namespaces, hyperdht_values and signatures, written by
hyperdht 6.34.0's own encoders and Persistent.sign* (tests/interop/js/dht_vectors.mjs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
from peersockets.dht.store import RecordStore, Reply
from peersockets.wire.crypto import KeyPair, blake2b_256

VECTORS = json.loads((Path(__file__).parent / "vectors" / "dht.json").read_text())
NAMESPACES = VECTORS["namespaces"]
VALUES = VECTORS["hyperdht_values"]
SIGNATURES = VECTORS["signatures"]


def unhex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def peer_of(data: dict[str, Any]) -> PeerRecord:
    return PeerRecord(
        bytes.fromhex(data["publicKey"]),
        tuple((a["host"], a["port"]) for a in data["relayAddresses"]),
    )


def announce_of(data: dict[str, Any]) -> Announce:
    peer = None if data["peer"] is None else peer_of(data["peer"])
    return Announce(peer, unhex(data["refresh"]), unhex(data["signature"]), data["bump"])


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [str(i) for i in range(len(cases))]


# -- namespaces and constants ---------------------------------------------------------------------


def test_name_hash() -> None:
    assert NAMESPACES["name"] == "hyperswarm/dht"
    assert blake2b_256(b"hyperswarm/dht").hex() == NAMESPACES["name_hash"]


@pytest.mark.parametrize("entry", NAMESPACES["entries"], ids=lambda e: e["constant"])
def test_namespace(entry: dict[str, Any]) -> None:
    assert getattr(r, entry["constant"]).hex() == entry["value"]
    assert Command[entry["constant"].removeprefix("NS_")] == entry["index"]


def test_commands_and_error_codes() -> None:
    assert {c.name: c.value for c in Command} == NAMESPACES["commands"]
    assert {c.name: c.value for c in HyperdhtErrorCode} == NAMESPACES["errors"]["hyperdht"]


# -- value encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALUES["peer"], ids=lambda c: f"{c['relay_count']}_relays")
def test_peer_record(case: dict[str, Any]) -> None:
    peer = peer_of(case["input"])
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_peer_record(peer) == encoding
    assert r.decode_peer_record(encoding) == peer


@pytest.mark.parametrize(
    "case", VALUES["lookup_reply"], ids=lambda c: f"{c['record_count']}_{c['bump']}"
)
def test_lookup_reply(case: dict[str, Any]) -> None:
    reply = LookupReply(tuple(peer_of(p) for p in case["input"]["peers"]), case["input"]["bump"])
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_lookup_reply(reply) == encoding
    assert (
        r.encode_raw_lookup_reply([r.encode_peer_record(p) for p in reply.peers], reply.bump)
        == encoding
    )
    assert r.decode_lookup_reply(encoding) == reply


@pytest.mark.parametrize(
    "case", VALUES["lookup_reply_decode_only"], ids=ids(VALUES["lookup_reply_decode_only"])
)
def test_lookup_reply_decode_only(case: dict[str, Any]) -> None:
    decoded = case["decoded"]
    expected = LookupReply(tuple(peer_of(p) for p in decoded["peers"]), decoded["bump"])
    assert r.decode_lookup_reply(bytes.fromhex(case["encoding"])) == expected


@pytest.mark.parametrize("case", VALUES["announce"], ids=ids(VALUES["announce"]))
def test_announce(case: dict[str, Any]) -> None:
    announce = announce_of(case["input"])
    encoding = bytes.fromhex(case["encoding"])
    assert encoding[0] == case["flags"]
    assert r.encode_announce(announce) == encoding
    assert r.decode_announce(encoding) == announce


@pytest.mark.parametrize("case", VALUES["mutable_signable"], ids=ids(VALUES["mutable_signable"]))
def test_mutable_signable_encoding(case: dict[str, Any]) -> None:
    seq, value = case["input"]["seq"], bytes.fromhex(case["input"]["value"])
    assert r.encode_mutable_signable(seq, value) == bytes.fromhex(case["encoding"])


@pytest.mark.parametrize(
    "case", VALUES["mutable_put_request"], ids=ids(VALUES["mutable_put_request"])
)
def test_mutable_put_request(case: dict[str, Any]) -> None:
    data = case["input"]
    request = MutablePutRequest(
        bytes.fromhex(data["publicKey"]),
        data["seq"],
        bytes.fromhex(data["value"]),
        bytes.fromhex(data["signature"]),
    )
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_mutable_put_request(request) == encoding
    assert r.decode_mutable_put_request(encoding) == request
    assert r.verify_mutable(request.signature, request.seq, request.value, request.public_key)


@pytest.mark.parametrize(
    "case", VALUES["mutable_get_response"], ids=ids(VALUES["mutable_get_response"])
)
def test_mutable_get_response(case: dict[str, Any]) -> None:
    data = case["input"]
    response = MutableGetResponse(
        data["seq"], bytes.fromhex(data["value"]), bytes.fromhex(data["signature"])
    )
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_mutable_get_response(response) == encoding
    assert r.decode_mutable_get_response(encoding) == response


@pytest.mark.parametrize("case", VALUES["mutable_get_request"], ids=lambda c: str(c["seq"]))
def test_mutable_get_request(case: dict[str, Any]) -> None:
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_mutable_get_request(case["seq"]) == encoding
    assert r.decode_mutable_get_request(encoding) == case["seq"]


@pytest.mark.parametrize("case", VALUES["plugin_request"], ids=ids(VALUES["plugin_request"]))
def test_plugin_request(case: dict[str, Any]) -> None:
    data = case["input"]
    request = PluginRequest(data["plugin"], data["version"], data["command"], unhex(data["value"]))
    encoding = bytes.fromhex(case["encoding"])
    assert r.encode_plugin_request(request) == encoding
    assert r.decode_plugin_request(encoding) == request


# -- signatures -----------------------------------------------------------------------------------

KEYPAIRS = {
    k["public_key"]: KeyPair(bytes.fromhex(k["public_key"]), bytes.fromhex(k["secret_key"]))
    for k in SIGNATURES["keypairs"]
}


@pytest.mark.parametrize("entry", SIGNATURES["keypairs"], ids=lambda k: k["name"])
def test_key_pairs(entry: dict[str, Any]) -> None:
    key_pair = KeyPair.from_seed(bytes.fromhex(entry["seed"]))
    assert key_pair.public_key.hex() == entry["public_key"]
    assert key_pair.secret_key.hex() == entry["secret_key"]
    assert blake2b_256(key_pair.public_key).hex() == entry["public_key_hash"]


ANNOUNCES = SIGNATURES["announce"]


@pytest.mark.parametrize("case", ANNOUNCES, ids=ids(ANNOUNCES))
def test_announce_signature(case: dict[str, Any]) -> None:
    unannounce = case["kind"] == "unannounce"
    target, node_id, token = (
        bytes.fromhex(case[k]) for k in ("target", "storing_node_id", "token")
    )
    peer = peer_of(case["peer"])
    refresh = unhex(case["refresh"])
    assert r.encode_peer_record(peer).hex() == case["peer_encoding"]
    signable_of = r.unannounce_signable if unannounce else r.announce_signable
    signable = signable_of(target, node_id, token, r.encode_peer_record(peer), refresh)
    assert signable.hex() == case["signable"]
    assert signable[:32].hex() == case["namespace"]
    assert (
        signable[32:].hex() == case["hash"] == blake2b_256(bytes.fromhex(case["hash_input"])).hex()
    )

    sign = r.sign_unannounce if unannounce else r.sign_announce
    verify = r.verify_unannounce if unannounce else r.verify_announce
    signature = sign(KEYPAIRS[case["public_key"]], target, node_id, token, peer, refresh)
    assert signature.hex() == case["signature"]
    assert verify(signature, target, node_id, token, peer, refresh)
    assert not verify(signature, target, node_id, blake2b_256(token), peer, refresh)

    value = r.decode_announce(bytes.fromhex(case["announce_value"]))
    assert value == Announce(peer, refresh, signature, case["bump"])
    assert r.encode_announce(value).hex() == case["announce_value"]


@pytest.mark.parametrize("case", ANNOUNCES, ids=ids(ANNOUNCES))
def test_the_store_accepts_what_hyperdht_signed(case: dict[str, Any]) -> None:
    """As the generator checks hyperdht's Persistent: accepted with this token, refused with another."""
    target, node_id, token = (
        bytes.fromhex(case[k]) for k in ("target", "storing_node_id", "token")
    )
    value = r.decode_announce(bytes.fromhex(case["announce_value"]))
    source = ("127.0.0.1", 50201)
    ack = Reply(token=False, closer_nodes=False)
    store = RecordStore(0.0)
    if case["kind"] == "unannounce":
        assert store.unannounce(target, node_id, token, value, 0.0) == ack
        assert store.unannounce(target, node_id, blake2b_256(token), value, 0.0) is None
        return
    assert store.announce(target, node_id, token, source, value, 0.0, unix_ms=case["bump"]) == ack
    other = RecordStore(0.0)
    assert (
        other.announce(target, node_id, blake2b_256(token), source, value, 0.0, unix_ms=0) is None
    )
    peer = value.peer
    assert peer is not None
    if blake2b_256(peer.public_key) == target:
        found = store.find_peer(target, 0.0)
        assert found is not None and found.value == r.encode_peer_record(peer)
    else:
        reply = store.lookup(target, 0.0)
        assert reply is not None and reply.value is not None
        assert r.decode_lookup_reply(reply.value) == LookupReply((peer,), case["bump"])


MUTABLES = SIGNATURES["mutable"]


@pytest.mark.parametrize("case", MUTABLES, ids=ids(MUTABLES))
def test_mutable_signature(case: dict[str, Any]) -> None:
    seq, value = case["seq"], bytes.fromhex(case["value"])
    public_key = bytes.fromhex(case["public_key"])
    assert r.encode_mutable_signable(seq, value).hex() == case["mutable_signable_encoding"]
    assert r.mutable_signable(seq, value).hex() == case["signable"]
    assert r.mutable_signable(seq, value)[32:].hex() == case["hash"]
    signature = r.sign_mutable(KEYPAIRS[case["public_key"]], seq, value)
    assert signature.hex() == case["signature"]
    assert r.verify_mutable(signature, seq, value, public_key)
    assert not r.verify_mutable(signature, seq + 1, value, public_key)
    request = MutablePutRequest(public_key, seq, value, signature)
    assert r.encode_mutable_put_request(request).hex() == case["put_request"]
    response = MutableGetResponse(seq, value, signature)
    assert r.encode_mutable_get_response(response).hex() == case["get_response"]
    # and a storing node keeps it and gives back hyperdht's get response
    store = RecordStore(0.0)
    target = bytes.fromhex(case["target"])
    assert store.mutable_put(target, b"t" * 32, request, 0.0) == Reply()
    assert store.mutable_get(target, seq, 0.0) == Reply(bytes.fromhex(case["get_response"]))
