"""Known answers for dht-rpc's codec from the real JavaScript encoders (tests/vectors/dht.json).

Regenerate with ``node tests/interop/js/dht_vectors.mjs > tests/vectors/dht.json``.
Sections checked here: ``addresses`` (peer.js ipv4 and id), ``rpc_messages``
(every datagram dht-rpc 6.27.0 sent on its in-memory network, the request and
reply flag matrices, and what it drops) and ``tokens`` (IO.token and the
rotation in IO._drain).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peersockets.dht.messages import (
    Request,
    Response,
    accepted_id,
    decode,
    decode_address,
    encode_address,
    node_id,
)
from peersockets.dht.tokens import Tokens
from peersockets.errors import DecodeError
from peersockets.wire.encoding import encode_uint

VECTORS = json.loads((Path(__file__).parent / "vectors" / "dht.json").read_text(encoding="utf-8"))
ADDRESSES = VECTORS["addresses"]
RPC = VECTORS["rpc_messages"]
TOKENS = VECTORS["tokens"]


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _optional(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def expected_message(decoded: dict[str, Any]) -> Request | Response:
    """The message the JavaScript decoder saw, as our dataclass."""
    to = (decoded["to"]["host"], decoded["to"]["port"])
    if decoded["type"] == "request":
        return Request(
            decoded["tid"],
            to,
            decoded["command"],
            decoded["internal"],
            _optional(decoded["id"]),
            _optional(decoded["token"]),
            _optional(decoded["target"]),
            _optional(decoded["value"]),
        )
    nodes = decoded["closer_nodes"] or []
    return Response(
        decoded["tid"],
        to,
        _optional(decoded["id"]),
        _optional(decoded["token"]),
        tuple((n["host"], n["port"]) for n in nodes),
        decoded["error"],
        _optional(decoded["value"]),
    )


def all_datagrams() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"request {d['name']}", d) for d in RPC["requests"]]
    found += [(f"request flags {d['flags']:#04x}", d) for d in RPC["request_flag_matrix"]]
    found += [(f"reply flags {d['flags']:#04x}", d) for d in RPC["response_flag_matrix"]]
    for exchange in RPC["exchanges"]:
        found += [(f"{exchange['name']} #{i}", d) for i, d in enumerate(exchange["datagrams"])]
    return found


DATAGRAMS = all_datagrams()


@pytest.mark.parametrize("entry", ADDRESSES["entries"], ids=lambda e: f"{e['host']}:{e['port']}")
def test_addresses_and_ids(entry: dict[str, Any]) -> None:
    encoding = bytes.fromhex(entry["encoding"])
    assert encode_address(entry["host"], entry["port"]) == encoding
    assert decode_address(encoding) == (entry["host"], entry["port"])
    assert node_id((entry["host"], entry["port"])).hex() == entry["id"]


@pytest.mark.parametrize("entry", ADDRESSES["arrays"], ids=lambda e: str(len(e["addresses"])))
def test_address_arrays_as_closer_nodes(entry: dict[str, Any]) -> None:
    nodes = tuple((a["host"], a["port"]) for a in entry["addresses"])
    assert encode_uint(len(nodes)) + b"".join(encode_address(*n) for n in nodes) == bytes.fromhex(entry["encoding"])
    if nodes:  # inside a reply, the array is the closer-nodes field
        reply = Response(1, ("127.0.0.1", 1), closer_nodes=nodes)
        assert reply.encode()[10:] == bytes.fromhex(entry["encoding"])
        assert decode(reply.encode()) == reply


@pytest.mark.parametrize(("name", "datagram"), DATAGRAMS, ids=[name for name, _ in DATAGRAMS])
def test_every_javascript_datagram_decodes_and_reencodes(name: str, datagram: dict[str, Any]) -> None:
    raw = bytes.fromhex(datagram["hex"])
    expected = expected_message(datagram["decoded"])
    assert decode(raw) == expected
    assert expected.encode() == raw
    if "id_valid" in datagram["decoded"] and datagram["decoded"]["id"] is not None:
        accepted = accepted_id(expected.id, _address(datagram["from_addr"]))
        assert (accepted is not None) == datagram["decoded"]["id_valid"]


def test_the_flag_matrices_cover_every_combination() -> None:
    assert sorted(d["flags"] for d in RPC["request_flag_matrix"]) == list(range(32))
    assert sorted(d["flags"] for d in RPC["response_flag_matrix"]) == list(range(32))
    for datagram in RPC["request_flag_matrix"] + RPC["response_flag_matrix"]:
        assert bytes.fromhex(datagram["hex"])[1] == datagram["flags"]


@pytest.mark.parametrize("dropped", RPC["dropped"], ids=lambda d: d["what"])
def test_what_dht_rpc_drops_we_drop(dropped: dict[str, Any]) -> None:
    """Our decode refuses it, or (source port 0) it is a message the caller must drop by source."""
    raw = bytes.fromhex(dropped["hex"])
    if dropped["source_port"] == 0:
        decode(raw)  # well formed: dropped for its source, which decode never sees
        return
    with pytest.raises(DecodeError):
        decode(raw)


def test_tokens_under_each_secret() -> None:
    secret0, secret1 = (bytes.fromhex(s) for s in TOKENS["secrets"])
    source = iter([secret0, secret1])
    tokens = Tokens(lambda n: next(source))
    for entry in TOKENS["entries"]:
        assert entry["host"].encode().hex() == entry["host_bytes"]
        assert tokens.token(entry["host"]).hex() == entry["token_secret1"]
        assert tokens.valid(entry["host"], bytes.fromhex(entry["token_secret0"]))
        assert tokens.valid(entry["host"], bytes.fromhex(entry["token_secret1"]))


def test_token_rotation() -> None:
    rotation = TOKENS["rotation"]
    source = iter([bytes.fromhex(s) for s in TOKENS["secrets"]])
    tokens = Tokens(lambda n: next(source))
    rotations = [tokens.tick() for _ in range(rotation["drains"])]
    assert rotations.count(True) == rotation["drains"] // 10
    assert [s.hex() for s in tokens.secrets] == rotation["secrets_after"]
    for entry in rotation["entries_after"]:
        assert tokens.token(entry["host"]).hex() == entry["token_secret1"]
        assert tokens.valid(entry["host"], bytes.fromhex(entry["token_secret0"]))
