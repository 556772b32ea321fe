"""hyperdht's connect messages: PEER_HANDSHAKE and PEER_HOLEPUNCH values, the Noise payload,
the encrypted holepunch payload (HYPERDHT.md 3.3-3.5, 3.9).

Byte for byte what hyperdht 6.34.0's ``lib/messages.js`` writes; decoders refuse
(DecodeError) what its decoders throw on, and ignore trailing bytes as it does.
Also here: the IK handshake as hyperdht runs it (prologue NS_PEER_HANDSHAKE)
and the secretbox that carries holepunch payloads. Sans-I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

import nacl.bindings as sodium
import nacl.exceptions

from ..errors import DecodeError, InvalidSetting
from ..wire.crypto import KeyPair, blake2b_256
from ..wire.encoding import Buffer, decode_uint, encode_uint
from ..wire.noise import HandshakeResult, NoiseIK
from .messages import (
    ADDRESS_SIZE,
    MAX_ARRAY,
    MAX_SAFE_UINT,
    Address,
    decode_address,
    encode_address,
)
from .records import NS_PEER_HANDSHAKE, NS_PEER_HOLEPUNCH

__all__ = [
    "Firewall",
    "HandshakeMessage",
    "HolepunchInfo",
    "HolepunchMessage",
    "HolepunchPayload",
    "Mode",
    "NoisePayload",
    "PayloadError",
    "RelayInfo",
    "RelayThrough",
    "SecurePayload",
    "UdxInfo",
    "holepunch_secret",
    "ik_initiator",
    "ik_responder",
]

MAX_NOISE: Final = 65535
"""The largest Noise message (noise-handshake refuses more)."""
NONCE_SIZE: Final = 24
MAC_SIZE: Final = 16
TOKEN_SIZE: Final = 32


class Mode(IntEnum):
    """Where a relayed PEER_HANDSHAKE / PEER_HOLEPUNCH is on its way (router.js)."""

    FROM_CLIENT = 0
    FROM_SERVER = 1
    FROM_RELAY = 2
    FROM_SECOND_RELAY = 3
    REPLY = 4


class Firewall(IntEnum):
    """A peer's NAT as it reports it (constants.js FIREWALL)."""

    UNKNOWN = 0
    OPEN = 1
    CONSISTENT = 2
    RANDOM = 3


class PayloadError(IntEnum):
    """The error field of Noise and holepunch payloads (constants.js ERROR)."""

    NONE = 0
    ABORTED = 1
    VERSION_MISMATCH = 2
    TRY_LATER = 3


# -- a cursor over a value -------------------------------------------------------------------


class _Reader:
    def __init__(self, buf: Buffer, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.what = what

    def uint(self, name: str) -> int:
        try:
            value, self.pos = decode_uint(self.buf, self.pos, self.end)
        except DecodeError as exc:
            raise DecodeError(f"{self.what}: truncated {name}: {exc}") from None
        if value > MAX_SAFE_UINT:
            raise DecodeError(f"{self.what}: {name} {value} is above 2**53 - 1")
        return value

    def fixed(self, size: int, name: str) -> bytes:
        stop = self.pos + size
        if stop > self.end:
            raise DecodeError(
                f"{self.what}: {name} needs {size} bytes at offset {self.pos}, {self.end - self.pos} left"
            )
        out = bytes(self.buf[self.pos : stop])
        self.pos = stop
        return out

    def buffer(self, name: str) -> bytes:
        return self.fixed(self.uint(f"{name} length"), name)

    def address(self, name: str) -> Address:
        return decode_address(self.fixed(ADDRESS_SIZE, name))

    def count(self, item_size: int, name: str) -> int:
        count = self.uint(f"{name} count")
        if count > MAX_ARRAY or self.pos + count * item_size > self.end:
            raise DecodeError(
                f"{self.what}: {name} count {count} overruns the value at offset {self.pos}"
            )
        return count

    def addresses(self, name: str) -> tuple[Address, ...]:
        return tuple(self.address(name) for _ in range(self.count(ADDRESS_SIZE, name)))


def _uint(value: int, name: str) -> bytes:
    if not 0 <= value <= MAX_SAFE_UINT:
        raise InvalidSetting(f"{name} must be in 0..2**53-1, got {value!r}")
    return encode_uint(value)


def _addresses(addresses: tuple[Address, ...]) -> bytes:
    return encode_uint(len(addresses)) + b"".join(encode_address(*a) for a in addresses)


def _fixed32(value: bytes, name: str) -> bytes:
    if len(value) != 32:
        raise InvalidSetting(f"{name} must be 32 bytes, got {len(value)}")
    return bytes(value)


# -- PEER_HANDSHAKE and PEER_HOLEPUNCH request values -----------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """The value of a PEER_HANDSHAKE request or reply: ``flags, mode, noise, [peerAddress], [relayAddress]``."""

    mode: int
    noise: bytes
    peer_address: Address | None = None
    relay_address: Address | None = None

    def encode(self) -> bytes:
        flags = (1 if self.peer_address else 0) | (2 if self.relay_address else 0)
        out = bytes((flags,)) + _uint(self.mode, "mode") + encode_uint(len(self.noise)) + self.noise
        if self.peer_address:
            out += encode_address(*self.peer_address)
        if self.relay_address:
            out += encode_address(*self.relay_address)
        return out

    @classmethod
    def decode(cls, value: Buffer) -> HandshakeMessage:
        reader = _Reader(value, "handshake")
        flags = reader.uint("flags")
        mode = reader.uint("mode")
        noise = reader.buffer("noise")
        peer = reader.address("peerAddress") if flags & 1 else None
        relay = reader.address("relayAddress") if flags & 2 else None
        return cls(mode, noise, peer, relay)


@dataclass(frozen=True, slots=True)
class HolepunchMessage:
    """The value of a PEER_HOLEPUNCH request or reply: ``flags, mode, id, payload, [peerAddress]``."""

    mode: int
    id: int
    payload: bytes
    peer_address: Address | None = None

    def encode(self) -> bytes:
        out = (
            bytes((1 if self.peer_address else 0,))
            + _uint(self.mode, "mode")
            + _uint(self.id, "id")
        )
        out += encode_uint(len(self.payload)) + self.payload
        if self.peer_address:
            out += encode_address(*self.peer_address)
        return out

    @classmethod
    def decode(cls, value: Buffer) -> HolepunchMessage:
        reader = _Reader(value, "holepunch")
        flags = reader.uint("flags")
        mode = reader.uint("mode")
        id_ = reader.uint("id")
        payload = reader.buffer("payload")
        peer = reader.address("peerAddress") if flags & 1 else None
        return cls(mode, id_, payload, peer)


# -- the Noise payload ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """A node a server announced to, and the server's address as that node saw it."""

    relay_address: Address
    peer_address: Address


@dataclass(frozen=True, slots=True)
class HolepunchInfo:
    """A server's holepunch slot id and its announce relays."""

    id: int
    relays: tuple[RelayInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class UdxInfo:
    """The UDX stream a side created for the connection."""

    id: int
    reusable_socket: bool = False
    seq: int = 0
    version: int = 1


@dataclass(frozen=True, slots=True)
class RelayThrough:
    """A blind relay to pair through: its public key and the pairing token."""

    public_key: bytes
    token: bytes
    version: int = 1


@dataclass(frozen=True, slots=True)
class NoisePayload:
    """The plaintext inside both IK messages (HYPERDHT.md 3.5). A version other than 1 decodes
    to that version and nothing else, as in hyperdht."""

    version: int = 1
    error: int = PayloadError.NONE
    firewall: int = Firewall.UNKNOWN
    holepunch: HolepunchInfo | None = None
    addresses4: tuple[Address, ...] = ()
    addresses6: tuple[tuple[bytes, int], ...] = ()
    udx: UdxInfo | None = None
    secret_stream: int | None = None
    """The secret-stream version (1), or None when absent."""
    relay_through: RelayThrough | None = None
    relay_addresses: tuple[Address, ...] | None = None

    def encode(self) -> bytes:
        flags = (
            (1 if self.holepunch else 0)
            | (2 if self.addresses4 else 0)
            | (4 if self.addresses6 else 0)
            | (8 if self.udx else 0)
            | (16 if self.secret_stream is not None else 0)
            | (32 if self.relay_through else 0)
            | (64 if self.relay_addresses is not None else 0)
        )
        out = bytearray(b"\x01")  # hyperdht always writes version 1
        out += bytes((flags,)) + _uint(self.error, "error") + _uint(self.firewall, "firewall")
        if self.holepunch:
            out += _uint(self.holepunch.id, "holepunch id") + encode_uint(
                len(self.holepunch.relays)
            )
            for relay in self.holepunch.relays:
                out += encode_address(*relay.relay_address) + encode_address(*relay.peer_address)
        if self.addresses4:
            out += _addresses(self.addresses4)
        if self.addresses6:
            out += encode_uint(len(self.addresses6))
            for host, port in self.addresses6:
                if len(host) != 16:
                    raise InvalidSetting(f"an IPv6 host is 16 bytes, got {len(host)}")
                out += host + port.to_bytes(2, "little")
        if self.udx:
            out += b"\x01" + (b"\x01" if self.udx.reusable_socket else b"\x00")
            out += _uint(self.udx.id, "udx id") + _uint(self.udx.seq, "udx seq")
        if self.secret_stream is not None:
            out += b"\x01"
        if self.relay_through:
            out += b"\x01\x00" + _fixed32(self.relay_through.public_key, "relayThrough public key")
            out += _fixed32(self.relay_through.token, "relayThrough token")
        if self.relay_addresses is not None:
            out += _addresses(self.relay_addresses)
        return bytes(out)

    @classmethod
    def decode(cls, value: Buffer) -> NoisePayload:
        reader = _Reader(value, "noise payload")
        version = reader.uint("version")
        if version != 1:
            return cls(version=version)
        flags = reader.uint("flags")
        error = reader.uint("error")
        firewall = reader.uint("firewall")
        holepunch = udx = relay_through = None
        addresses4: tuple[Address, ...] = ()
        addresses6: list[tuple[bytes, int]] = []
        secret_stream = None
        relay_addresses = None
        if flags & 1:
            slot = reader.uint("holepunch id")
            relays = tuple(
                RelayInfo(reader.address("relayAddress"), reader.address("peerAddress"))
                for _ in range(reader.count(2 * ADDRESS_SIZE, "relays"))
            )
            holepunch = HolepunchInfo(slot, relays)
        if flags & 2:
            addresses4 = reader.addresses("addresses4")
        if flags & 4:
            for _ in range(reader.count(18, "addresses6")):
                host = reader.fixed(16, "IPv6 host")
                addresses6.append((host, int.from_bytes(reader.fixed(2, "IPv6 port"), "little")))
        if flags & 8:
            udx_version = reader.uint("udx version")
            features = reader.uint("udx features")
            udx = UdxInfo(
                reader.uint("udx id"), bool(features & 1), reader.uint("udx seq"), udx_version
            )
        if flags & 16:
            secret_stream = reader.uint("secretStream version")
        if flags & 32:
            relay_version = reader.uint("relayThrough version")
            reader.uint("relayThrough flags")
            relay_through = RelayThrough(
                reader.fixed(32, "relayThrough public key"),
                reader.fixed(32, "relayThrough token"),
                relay_version,
            )
        if flags & 64:
            relay_addresses = reader.addresses("relayAddresses")
        return cls(
            version,
            error,
            firewall,
            holepunch,
            addresses4,
            tuple(addresses6),
            udx,
            secret_stream,
            relay_through,
            relay_addresses,
        )


# -- the holepunch payload ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolepunchPayload:
    """What two peers tell each other in PEER_HOLEPUNCH rounds (encrypted with SecurePayload)."""

    error: int = PayloadError.NONE
    firewall: int = Firewall.UNKNOWN
    round: int = 0
    connected: bool = False
    punching: bool = False
    addresses: tuple[Address, ...] | None = None
    remote_address: Address | None = None
    token: bytes | None = None
    remote_token: bytes | None = None

    def encode(self) -> bytes:
        flags = (
            (1 if self.connected else 0)
            | (2 if self.punching else 0)
            | (4 if self.addresses is not None else 0)
            | (8 if self.remote_address else 0)
            | (16 if self.token else 0)
            | (32 if self.remote_token else 0)
        )
        out = bytes((flags,)) + _uint(self.error, "error") + _uint(self.firewall, "firewall")
        out += _uint(self.round, "round")
        if self.addresses is not None:
            out += _addresses(self.addresses)
        if self.remote_address:
            out += encode_address(*self.remote_address)
        if self.token:
            out += _fixed32(self.token, "token")
        if self.remote_token:
            out += _fixed32(self.remote_token, "remoteToken")
        return out

    @classmethod
    def decode(cls, value: Buffer) -> HolepunchPayload:
        reader = _Reader(value, "holepunch payload")
        flags = reader.uint("flags")
        error = reader.uint("error")
        firewall = reader.uint("firewall")
        round_ = reader.uint("round")
        addresses = reader.addresses("addresses") if flags & 4 else None
        remote = reader.address("remoteAddress") if flags & 8 else None
        token = reader.fixed(32, "token") if flags & 16 else None
        remote_token = reader.fixed(32, "remoteToken") if flags & 32 else None
        return cls(
            error,
            firewall,
            round_,
            bool(flags & 1),
            bool(flags & 2),
            addresses,
            remote,
            token,
            remote_token,
        )


@dataclass(slots=True)
class SecurePayload:
    """Holepunch payloads sealed with the holepunch secret (XSalsa20-Poly1305, a random nonce
    first), and the tokens that prove a peer received what was sent to an address."""

    secret: bytes
    local_secret: bytes = field(default_factory=lambda: os.urandom(32))

    def encrypt(self, payload: HolepunchPayload) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + sodium.crypto_secretbox(payload.encode(), nonce, self.secret)

    def decrypt(self, sealed: Buffer) -> HolepunchPayload | None:
        """The payload, or None if it is too short, forged or does not decode (hyperdht ignores it)."""
        if len(sealed) <= NONCE_SIZE + MAC_SIZE:
            return None
        data = bytes(sealed)
        try:
            plain = sodium.crypto_secretbox_open(data[NONCE_SIZE:], data[:NONCE_SIZE], self.secret)
            return HolepunchPayload.decode(plain)
        except (nacl.exceptions.CryptoError, DecodeError):
            return None

    def token(self, address: Address) -> bytes:
        """BLAKE2b-256 of the dotted host, keyed with our local secret."""
        return blake2b_256(address[0].encode(), key=self.local_secret)


# -- the IK handshake as hyperdht runs it -----------------------------------------------------


def ik_initiator(
    key_pair: KeyPair, remote_public_key: bytes, ephemeral: KeyPair | None = None
) -> NoiseIK:
    """The client's side of hyperdht's IK handshake."""
    return NoiseIK(True, key_pair, NS_PEER_HANDSHAKE, remote_public_key, ephemeral=ephemeral)


def ik_responder(key_pair: KeyPair, ephemeral: KeyPair | None = None) -> NoiseIK:
    """The server's side of hyperdht's IK handshake."""
    return NoiseIK(False, key_pair, NS_PEER_HANDSHAKE, ephemeral=ephemeral)


def holepunch_secret(result: HandshakeResult) -> bytes:
    """The key of holepunch payloads: BLAKE2b-256(NS_PEER_HOLEPUNCH) keyed with the handshake hash."""
    return blake2b_256(NS_PEER_HOLEPUNCH, key=result.handshake_hash)
