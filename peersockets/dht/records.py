"""hyperdht's application data: commands, error codes, namespaces, record encodings, signatures.

What travels in the ``value`` field of hyperdht's storage commands (HYPERDHT.md
2.1-2.4), byte for byte as hyperdht 6.34.0's ``lib/messages.js`` writes it, and
the Ed25519 signatures over it as ``lib/persistent.js`` computes them. Sans-I/O:
bytes in, values out.

Decoders take the whole value, ignore trailing bytes (as compact-encoding's
``c.decode`` does) and raise :class:`~peersockets.errors.DecodeError`, naming
the offending value, wherever JavaScript's decoder would throw: truncation,
arrays of more than 0x100000 items, integers above 2**53 - 1. Constructors and
encoders raise :class:`~peersockets.errors.InvalidSetting` (a ValueError) for
values JavaScript could not encode either (wrong key or signature sizes, bad
addresses, integers out of range).

Addresses are ``(host, port)`` tuples of a dotted IPv4 string and a port, in
dht-rpc's 6-byte encoding (4 address bytes, port u16 little-endian, 1.3). The
6-byte helpers here are private copies of ``messages.encode_address`` /
``decode_address``, so that this module stands on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import nacl.bindings as sodium
from nacl.exceptions import BadSignatureError

from ..errors import DecodeError, InvalidSetting
from ..wire.crypto import KeyPair, blake2b_256, namespace
from ..wire.encoding import (
    Buffer,
    decode_buffer,
    decode_string,
    decode_uint,
    encode_buffer,
    encode_string,
    encode_uint,
)
from .messages import (
    ADDRESS_SIZE,
    MAX_ARRAY,
    MAX_SAFE_UINT,
    Address,
    decode_address,
    encode_address,
)

__all__ = [
    "NS_ANNOUNCE",
    "NS_MUTABLE_PUT",
    "NS_PEER_HANDSHAKE",
    "NS_PEER_HOLEPUNCH",
    "NS_PLUGIN",
    "NS_UNANNOUNCE",
    "Address",
    "Announce",
    "Command",
    "HyperdhtErrorCode",
    "LookupReply",
    "MutableGetResponse",
    "MutablePutRequest",
    "PeerRecord",
    "PluginRequest",
    "announce_signable",
    "decode_announce",
    "decode_lookup_reply",
    "decode_mutable_get_request",
    "decode_mutable_get_response",
    "decode_mutable_put_request",
    "decode_peer_record",
    "decode_plugin_request",
    "encode_announce",
    "encode_lookup_reply",
    "encode_mutable_get_request",
    "encode_mutable_get_response",
    "encode_mutable_put_request",
    "encode_mutable_signable",
    "encode_peer_record",
    "encode_plugin_request",
    "encode_raw_lookup_reply",
    "mutable_signable",
    "sign_announce",
    "sign_mutable",
    "sign_unannounce",
    "unannounce_signable",
    "verify_announce",
    "verify_mutable",
    "verify_unannounce",
]

_MAX_ARRAY: Final = MAX_ARRAY
_MAX_SAFE_UINT: Final = MAX_SAFE_UINT
_SIGNATURE_SIZE: Final = 64
_KEY_SIZE: Final = 32
_ADDRESS_SIZE: Final = ADDRESS_SIZE
_PEER_MIN_SIZE: Final = _KEY_SIZE + 1  # key and an empty address array


class Command(IntEnum):
    """hyperdht's commands (``lib/constants.js`` COMMANDS), sent with the internal flag clear."""

    PEER_HANDSHAKE = 0
    PEER_HOLEPUNCH = 1
    FIND_PEER = 2
    LOOKUP = 3
    ANNOUNCE = 4
    UNANNOUNCE = 5
    MUTABLE_PUT = 6
    MUTABLE_GET = 7
    IMMUTABLE_PUT = 8
    IMMUTABLE_GET = 9
    PLUGIN = 10


class HyperdhtErrorCode(IntEnum):
    """hyperdht's error codes (``lib/constants.js`` ERROR).

    0-3 travel inside Noise handshake payloads; 16 and 17 in the ``error`` field
    of a MUTABLE_PUT response, which they share with dht-rpc's own codes
    (``messages.ErrorCode``: 1 UNKNOWN_COMMAND, 2 INVALID_TOKEN).
    """

    NONE = 0
    ABORTED = 1
    VERSION_MISMATCH = 2
    TRY_LATER = 3
    SEQ_REUSED = 16
    SEQ_TOO_LOW = 17


_NAMESPACES: Final = namespace("hyperswarm/dht", Command.PLUGIN + 1)
NS_PEER_HANDSHAKE: Final = _NAMESPACES[Command.PEER_HANDSHAKE]
NS_PEER_HOLEPUNCH: Final = _NAMESPACES[Command.PEER_HOLEPUNCH]
NS_ANNOUNCE: Final = _NAMESPACES[Command.ANNOUNCE]
NS_UNANNOUNCE: Final = _NAMESPACES[Command.UNANNOUNCE]
NS_MUTABLE_PUT: Final = _NAMESPACES[Command.MUTABLE_PUT]
NS_PLUGIN: Final = _NAMESPACES[Command.PLUGIN]


# -- value types ---------------------------------------------------------------------------------


def _check_size(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise InvalidSetting(f"{name} must be {size} bytes, got {len(value)}")


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A server's public key and the DHT nodes it can be reached through (its relays)."""

    public_key: bytes
    """The server's 32-byte public key (what ``DHT.connect`` takes)."""
    relay_addresses: tuple[Address, ...] = ()
    """(host, port) of DHT nodes that relay a handshake to the server."""

    def __post_init__(self) -> None:
        _check_size("public_key", self.public_key, _KEY_SIZE)
        if not isinstance(self.relay_addresses, tuple):
            object.__setattr__(self, "relay_addresses", tuple(self.relay_addresses))


@dataclass(frozen=True, slots=True)
class LookupReply:
    """A LOOKUP reply: peer records announced on the topic, and the topic's bump (0 if none)."""

    peers: tuple[PeerRecord, ...] = ()
    bump: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.peers, tuple):
            object.__setattr__(self, "peers", tuple(self.peers))


@dataclass(frozen=True, slots=True)
class Announce:
    """The ANNOUNCE / UNANNOUNCE request value.

    ``refresh`` is a 32-byte hash-chain link (2.5), ``signature`` the 64-byte
    Ed25519 signature (:func:`sign_announce`), ``bump`` a Unix time in
    milliseconds or 0. Absent fields are None (0 for bump), as JS decodes them.
    """

    peer: PeerRecord | None = None
    refresh: bytes | None = None
    signature: bytes | None = None
    bump: int = 0

    def __post_init__(self) -> None:
        if self.refresh is not None:
            _check_size("refresh", self.refresh, _KEY_SIZE)
        if self.signature is not None:
            _check_size("signature", self.signature, _SIGNATURE_SIZE)


@dataclass(frozen=True, slots=True)
class MutablePutRequest:
    """The MUTABLE_PUT request value: ``value`` at ``seq``, signed by ``public_key``."""

    public_key: bytes
    seq: int
    value: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_size("public_key", self.public_key, _KEY_SIZE)
        _check_size("signature", self.signature, _SIGNATURE_SIZE)


@dataclass(frozen=True, slots=True)
class MutableGetResponse:
    """The MUTABLE_GET reply value (and what a node stores for a mutable target)."""

    seq: int
    value: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_size("signature", self.signature, _SIGNATURE_SIZE)


@dataclass(frozen=True, slots=True)
class PluginRequest:
    """The PLUGIN request value: which plugin, its version, a command and an optional value."""

    plugin: str
    version: int
    command: int
    value: bytes | None = None


# -- primitives ----------------------------------------------------------------------------------


def _read_uint(buf: Buffer, pos: int, end: int, what: str) -> tuple[int, int]:
    """A compact uint that JavaScript can hold: above 2**53 - 1 its decoder throws."""
    value, pos = decode_uint(buf, pos, end)
    if value > _MAX_SAFE_UINT:
        raise DecodeError(f"{what} {value} is above 2**53 - 1 at offset {pos}")
    return value, pos


def _write_uint(value: int, what: str) -> bytes:
    if not 0 <= value <= _MAX_SAFE_UINT:
        raise InvalidSetting(f"{what} must be in 0..2**53-1, got {value}")
    return encode_uint(value)


def _read_fixed(buf: Buffer, pos: int, end: int, size: int, what: str) -> tuple[bytes, int]:
    stop = pos + size
    if stop > end:
        raise DecodeError(f"{what} needs {size} bytes at offset {pos}, {end - pos} left")
    return bytes(buf[pos:stop]), stop


def _read_array_count(
    buf: Buffer, pos: int, end: int, item_size: int, what: str
) -> tuple[int, int]:
    """An array's count, refused (as JS does) above 0x100000, and early if it cannot fit."""
    count, pos = decode_uint(buf, pos, end)
    if count > _MAX_ARRAY:
        raise DecodeError(f"{what} count {count} is above {_MAX_ARRAY}")
    if pos + count * item_size > end:
        raise DecodeError(f"{what} count {count} overruns the value at offset {pos}")
    return count, pos


def _read_peer(buf: Buffer, pos: int, end: int) -> tuple[PeerRecord, int]:
    public_key, pos = _read_fixed(buf, pos, end, _KEY_SIZE, "peer public key")
    count, pos = _read_array_count(buf, pos, end, _ADDRESS_SIZE, "relay address")
    addresses = []
    for _ in range(count):  # the count was checked to fit before ``end``
        addresses.append(decode_address(buf, pos))
        pos += _ADDRESS_SIZE
    return PeerRecord(public_key, tuple(addresses)), pos


# -- peer record and lookup reply ----------------------------------------------------------------


def encode_peer_record(peer: PeerRecord) -> bytes:
    """``fixed32 publicKey, array(ipv4 address) relayAddresses`` (FIND_PEER reply, inside announce)."""
    return (
        peer.public_key
        + encode_uint(len(peer.relay_addresses))
        + b"".join(encode_address(host, port) for host, port in peer.relay_addresses)
    )


def decode_peer_record(data: Buffer) -> PeerRecord:
    """Decode a peer record; trailing bytes are ignored."""
    return _read_peer(data, 0, len(data))[0]


def encode_lookup_reply(reply: LookupReply) -> bytes:
    """``array(peer record), uint bump``: the bump is always written, ``00`` when none."""
    return encode_raw_lookup_reply([encode_peer_record(p) for p in reply.peers], reply.bump)


def encode_raw_lookup_reply(records: Sequence[bytes], bump: int) -> bytes:
    """A lookup reply from already-encoded peer records (what a storing node keeps)."""
    return encode_uint(len(records)) + b"".join(records) + _write_uint(bump, "bump")


def decode_lookup_reply(data: Buffer) -> LookupReply:
    """Decode a LOOKUP reply; a missing bump reads as 0, as in JS."""
    pos, end = 0, len(data)
    count, pos = _read_array_count(data, pos, end, _PEER_MIN_SIZE, "lookup peer")
    peers = []
    for _ in range(count):
        peer, pos = _read_peer(data, pos, end)
        peers.append(peer)
    bump = 0
    if pos < end:
        bump, pos = _read_uint(data, pos, end, "lookup bump")
    return LookupReply(tuple(peers), bump)


# -- announce ------------------------------------------------------------------------------------

_ANNOUNCE_PEER: Final = 1
_ANNOUNCE_REFRESH: Final = 2
_ANNOUNCE_SIGNATURE: Final = 4
_ANNOUNCE_BUMP: Final = 8


def encode_announce(announce: Announce) -> bytes:
    """``uint flags`` (1 peer, 2 refresh, 4 signature, 8 bump), then the fields present.

    As in JS, a bump of 0 is left out (flag 8 clear).
    """
    flags = (
        (_ANNOUNCE_PEER if announce.peer is not None else 0)
        | (_ANNOUNCE_REFRESH if announce.refresh is not None else 0)
        | (_ANNOUNCE_SIGNATURE if announce.signature is not None else 0)
        | (_ANNOUNCE_BUMP if announce.bump else 0)
    )
    parts = [encode_uint(flags)]
    if announce.peer is not None:
        parts.append(encode_peer_record(announce.peer))
    if announce.refresh is not None:
        parts.append(announce.refresh)
    if announce.signature is not None:
        parts.append(announce.signature)
    if announce.bump:
        parts.append(_write_uint(announce.bump, "bump"))
    return b"".join(parts)


def decode_announce(data: Buffer) -> Announce:
    """Decode an ANNOUNCE / UNANNOUNCE value; unknown flag bits and trailing bytes are ignored."""
    pos, end = 0, len(data)
    flags, pos = _read_uint(data, pos, end, "announce flags")
    peer = refresh = signature = None
    bump = 0
    if flags & _ANNOUNCE_PEER:
        peer, pos = _read_peer(data, pos, end)
    if flags & _ANNOUNCE_REFRESH:
        refresh, pos = _read_fixed(data, pos, end, _KEY_SIZE, "announce refresh")
    if flags & _ANNOUNCE_SIGNATURE:
        signature, pos = _read_fixed(data, pos, end, _SIGNATURE_SIZE, "announce signature")
    if flags & _ANNOUNCE_BUMP:
        bump, pos = _read_uint(data, pos, end, "announce bump")
    return Announce(peer, refresh, signature, bump)


# -- mutable and plugin values -------------------------------------------------------------------


def encode_mutable_signable(seq: int, value: Buffer) -> bytes:
    """``uint seq, buffer value``: the bytes whose hash a mutable put's signature covers."""
    return _write_uint(seq, "seq") + encode_buffer(value)


def encode_mutable_put_request(request: MutablePutRequest) -> bytes:
    """``fixed32 publicKey, uint seq, buffer value, fixed64 signature``."""
    return (
        request.public_key + encode_mutable_signable(request.seq, request.value) + request.signature
    )


def decode_mutable_put_request(data: Buffer) -> MutablePutRequest:
    """Decode a MUTABLE_PUT request value."""
    pos, end = 0, len(data)
    public_key, pos = _read_fixed(data, pos, end, _KEY_SIZE, "mutable public key")
    seq, pos = _read_uint(data, pos, end, "mutable seq")
    value, pos = decode_buffer(data, pos, end)
    signature, pos = _read_fixed(data, pos, end, _SIGNATURE_SIZE, "mutable signature")
    return MutablePutRequest(public_key, seq, value, signature)


def encode_mutable_get_response(response: MutableGetResponse) -> bytes:
    """``uint seq, buffer value, fixed64 signature``."""
    return encode_mutable_signable(response.seq, response.value) + response.signature


def decode_mutable_get_response(data: Buffer) -> MutableGetResponse:
    """Decode a MUTABLE_GET reply value."""
    pos, end = 0, len(data)
    seq, pos = _read_uint(data, pos, end, "mutable seq")
    value, pos = decode_buffer(data, pos, end)
    signature, pos = _read_fixed(data, pos, end, _SIGNATURE_SIZE, "mutable signature")
    return MutableGetResponse(seq, value, signature)


def encode_mutable_get_request(seq: int) -> bytes:
    """The MUTABLE_GET request value: the lowest ``seq`` the asker wants, as a uint."""
    return _write_uint(seq, "seq")


def decode_mutable_get_request(data: Buffer) -> int:
    """Decode a MUTABLE_GET request value (a uint seq)."""
    return _read_uint(data, 0, len(data), "mutable get seq")[0]


def encode_plugin_request(request: PluginRequest) -> bytes:
    """``string plugin, uint version, uint command, uint flags (1 = value), buffer value``."""
    parts = [
        encode_string(request.plugin),
        _write_uint(request.version, "plugin version"),
        _write_uint(request.command, "plugin command"),
        b"\x01" if request.value is not None else b"\x00",
    ]
    if request.value is not None:
        parts.append(encode_buffer(request.value))
    return b"".join(parts)


def decode_plugin_request(data: Buffer) -> PluginRequest:
    """Decode a PLUGIN request value; a name that is not UTF-8 decodes with U+FFFD, as in JS."""
    pos, end = 0, len(data)
    plugin, pos = decode_string(data, pos, end)
    version, pos = _read_uint(data, pos, end, "plugin version")
    command, pos = _read_uint(data, pos, end, "plugin command")
    flags, pos = _read_uint(data, pos, end, "plugin flags")
    value = None
    if flags & 1:
        value, pos = decode_buffer(data, pos, end)
    return PluginRequest(plugin, version, command, value)


# -- signatures ----------------------------------------------------------------------------------


def _announce_signable(
    ns: bytes,
    target: bytes,
    node_id: bytes,
    token: bytes,
    peer_record: Buffer,
    refresh: bytes | None,
) -> bytes:
    return ns + blake2b_256(b"".join((target, node_id, token, bytes(peer_record), refresh or b"")))


def announce_signable(
    target: bytes, node_id: bytes, token: bytes, peer_record: Buffer, refresh: bytes | None = None
) -> bytes:
    """The 64 bytes an ANNOUNCE signature covers: NS_ANNOUNCE || H(target || id || token || peer || refresh).

    ``node_id`` and ``token`` are the *storing* node's id and the token it gave
    the announcer, so every node needs its own signature; ``peer_record`` is the
    encoded peer record (:func:`encode_peer_record`); ``refresh`` adds nothing
    when None. As ``annSignable`` in hyperdht's ``lib/persistent.js``.
    """
    return _announce_signable(NS_ANNOUNCE, target, node_id, token, peer_record, refresh)


def unannounce_signable(
    target: bytes, node_id: bytes, token: bytes, peer_record: Buffer, refresh: bytes | None = None
) -> bytes:
    """As :func:`announce_signable`, under NS_UNANNOUNCE."""
    return _announce_signable(NS_UNANNOUNCE, target, node_id, token, peer_record, refresh)


def mutable_signable(seq: int, value: Buffer) -> bytes:
    """The 64 bytes a MUTABLE_PUT signature covers: NS_MUTABLE_PUT || H(uint seq || buffer value)."""
    return NS_MUTABLE_PUT + blake2b_256(encode_mutable_signable(seq, value))


def _sign(key_pair: KeyPair, message: bytes) -> bytes:
    return bytes(sodium.crypto_sign(message, key_pair.secret_key)[:_SIGNATURE_SIZE])


def _verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """libsodium's crypto_sign_verify_detached, as sodium-universal calls it."""
    if len(signature) != _SIGNATURE_SIZE or len(public_key) != _KEY_SIZE:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def sign_announce(
    key_pair: KeyPair,
    target: bytes,
    node_id: bytes,
    token: bytes,
    peer: PeerRecord,
    refresh: bytes | None = None,
) -> bytes:
    """The ANNOUNCE signature of ``peer`` on ``target`` for the node ``node_id`` that gave ``token``."""
    return _sign(key_pair, announce_signable(target, node_id, token, encode_peer_record(peer), refresh))


def verify_announce(
    signature: bytes,
    target: bytes,
    node_id: bytes,
    token: bytes,
    peer: PeerRecord,
    refresh: bytes | None = None,
) -> bool:
    """True if ``signature`` is ``peer.public_key``'s ANNOUNCE signature for these values."""
    signable = announce_signable(target, node_id, token, encode_peer_record(peer), refresh)
    return _verify(signature, signable, peer.public_key)


def sign_unannounce(
    key_pair: KeyPair,
    target: bytes,
    node_id: bytes,
    token: bytes,
    peer: PeerRecord,
    refresh: bytes | None = None,
) -> bytes:
    """The UNANNOUNCE signature: as :func:`sign_announce`, under NS_UNANNOUNCE."""
    return _sign(key_pair, unannounce_signable(target, node_id, token, encode_peer_record(peer), refresh))


def verify_unannounce(
    signature: bytes,
    target: bytes,
    node_id: bytes,
    token: bytes,
    peer: PeerRecord,
    refresh: bytes | None = None,
) -> bool:
    """True if ``signature`` is ``peer.public_key``'s UNANNOUNCE signature for these values."""
    signable = unannounce_signable(target, node_id, token, encode_peer_record(peer), refresh)
    return _verify(signature, signable, peer.public_key)


def sign_mutable(key_pair: KeyPair, seq: int, value: Buffer) -> bytes:
    """The MUTABLE_PUT signature of ``value`` at ``seq`` (hyperdht's ``signMutable``)."""
    return _sign(key_pair, mutable_signable(seq, value))


def verify_mutable(signature: bytes, seq: int, value: Buffer, public_key: bytes) -> bool:
    """True if ``signature`` is ``public_key``'s signature of ``value`` at ``seq``."""
    return _verify(signature, mutable_signable(seq, value), public_key)
