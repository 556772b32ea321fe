"""Hypercore's cryptographic primitives: Ed25519 key pairs, namespaces, discovery keys, capabilities."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import nacl.bindings as sodium


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key pair; ``secret_key`` is libsodium's 64 bytes: seed || public key."""

    public_key: bytes
    """32 bytes: the identity peers see and authenticate."""
    secret_key: bytes
    """64 bytes (seed || public key); keep it private."""

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError(f"public_key must be 32 bytes, got {len(self.public_key)}")
        if len(self.secret_key) != 64:
            raise ValueError(f"secret_key must be 64 bytes, got {len(self.secret_key)}")

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """The key pair libsodium's crypto_sign_seed_keypair derives from a 32-byte seed."""
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        public_key, secret_key = sodium.crypto_sign_seed_keypair(seed)
        return cls(public_key, secret_key)

    @classmethod
    def generate(cls) -> KeyPair:
        """A new random key pair."""
        return cls.from_seed(os.urandom(32))

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key.hex()})"


def blake2b_256(message: bytes, key: bytes = b"") -> bytes:
    """BLAKE2b with a 32-byte digest (libsodium's crypto_generichash)."""
    return hashlib.blake2b(message, digest_size=32, key=key).digest()


def namespace(name: str, count: int) -> list[bytes]:
    """hypercore-crypto's namespace(name, count): BLAKE2b-256(BLAKE2b-256(name) || byte i)."""
    root = blake2b_256(name.encode("utf-8"))
    return [blake2b_256(root + bytes((i,))) for i in range(count)]


SECRET_STREAM_INITIATOR, SECRET_STREAM_RESPONDER, SECRET_STREAM_SEND = namespace(
    "hyperswarm/secret-stream", 3
)
_HYPERCORE_NS = namespace("hypercore", 3)
REPLICATE_INITIATOR = _HYPERCORE_NS[1]
REPLICATE_RESPONDER = _HYPERCORE_NS[2]


def discovery_key(key: bytes) -> bytes:
    """The public, non-secret name of a core: BLAKE2b-256(b"hypercore", key=key)."""
    return blake2b_256(b"hypercore", key=key)


def capability(initiator: bool, key: bytes, handshake_hash: bytes) -> bytes:
    """The replication capability a peer of this role sends for a core: proof it knows ``key``."""
    ns = REPLICATE_INITIATOR if initiator else REPLICATE_RESPONDER
    return blake2b_256(ns + key, key=handshake_hash)


def stream_id(handshake_hash: bytes, initiator: bool) -> bytes:
    """The 32-byte id a secret-stream of this role sends after the handshake."""
    ns = SECRET_STREAM_INITIATOR if initiator else SECRET_STREAM_RESPONDER
    return blake2b_256(ns, key=handshake_hash)
