"""Noise XX over Ed25519 (Noise_XX_Ed25519_ChaChaPoly_BLAKE2b), as noise-handshake does it.

DH is not X25519: the local Ed25519 seed is hashed and clamped into a scalar
that multiplies the remote Ed25519 public key (noise-curve-ed).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import nacl.bindings as sodium
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import HandshakeError
from .crypto import KeyPair

PROTOCOL_NAME = b"Noise_XX_Ed25519_ChaChaPoly_BLAKE2b"
HASHLEN = 64
DHLEN = 32
TAGLEN = 16
_NONCE = struct.Struct("<4xQ")


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASHLEN).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise HKDF with HMAC-BLAKE2b: two 64-byte outputs."""
    prk = _hmac(chaining_key, input_key_material)
    out1 = _hmac(prk, b"\x01")
    out2 = _hmac(prk, out1 + b"\x02")
    return out1, out2


def ed25519_scalar(key_pair: KeyPair) -> bytes:
    """The clamped scalar of an Ed25519 secret key (first half of SHA-512 of the seed)."""
    digest = bytearray(hashlib.sha512(key_pair.secret_key[:32]).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return bytes(digest)


def dh(key_pair: KeyPair, remote_public_key: bytes) -> bytes:
    """noise-curve-ed's DH: scalar(local) times the remote Ed25519 point."""
    try:
        result: bytes = sodium.crypto_scalarmult_ed25519_noclamp(
            ed25519_scalar(key_pair), remote_public_key
        )
    except (nacl.exceptions.RuntimeError, nacl.exceptions.TypeError, ValueError) as exc:
        raise HandshakeError(
            f"DH with remote key {remote_public_key.hex()} failed (invalid or small-order point)"
        ) from exc
    return result


class NoiseXX:
    """One side of a Noise XX handshake; feed it messages in turn until ``complete``."""

    def __init__(self, initiator: bool, static: KeyPair, ephemeral: KeyPair | None = None) -> None:
        self.initiator = initiator
        self.static = static
        self.ephemeral = ephemeral if ephemeral is not None else KeyPair.generate()
        self.remote_ephemeral: bytes | None = None
        self.remote_static: bytes | None = None
        self.complete = False
        self.tx = b""
        self.rx = b""
        self.handshake_hash = b""
        self._step = 0
        self._h = PROTOCOL_NAME.ljust(HASHLEN, b"\x00")
        self._ck = self._h
        self._key: ChaCha20Poly1305 | None = None
        self._nonce = 0
        self._mix_hash(b"")  # the empty prologue

    @property
    def remote_public_key(self) -> bytes:
        """The authenticated static key of the remote (after completion)."""
        if self.remote_static is None:
            raise HandshakeError("the handshake has not revealed the remote static key yet")
        return self.remote_static

    def _mix_hash(self, data: bytes) -> None:
        self._h = _hash(self._h + data)

    def _mix_key(self, shared: bytes) -> None:
        self._ck, temp = hkdf(self._ck, shared)
        self._key = ChaCha20Poly1305(temp[:32])
        self._nonce = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._key is None:
            out = plaintext
        else:
            out = self._key.encrypt(_NONCE.pack(self._nonce), plaintext, self._h)
            self._nonce += 1
        self._mix_hash(out)
        return out

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._key is None:
            out = ciphertext
        else:
            try:
                out = self._key.decrypt(_NONCE.pack(self._nonce), ciphertext, self._h)
            except InvalidTag as exc:
                raise HandshakeError(
                    f"handshake message {self._step + 1} failed authentication"
                ) from exc
            self._nonce += 1
        self._mix_hash(ciphertext)
        return out

    def _my_turn(self) -> bool:
        return (self._step % 2 == 0) == self.initiator

    def write_message(self) -> bytes:
        """Produce the next handshake message of this side (empty payload)."""
        if self.complete or not self._my_turn():
            raise HandshakeError(f"not this side's turn to send (step {self._step + 1})")
        step = self._step
        parts: list[bytes] = []
        if step == 0:  # -> e
            parts.append(self._write_ephemeral())
        elif step == 1:  # <- e, ee, s, es
            parts.append(self._write_ephemeral())
            self._mix_key(dh(self.ephemeral, self._remote_e()))
            parts.append(self._encrypt_and_hash(self.static.public_key))
            self._mix_key(dh(self.static, self._remote_e()))
        else:  # -> s, se
            parts.append(self._encrypt_and_hash(self.static.public_key))
            self._mix_key(dh(self.static, self._remote_e()))
        parts.append(self._encrypt_and_hash(b""))
        self._advance()
        return b"".join(parts)

    def read_message(self, message: bytes) -> None:
        """Consume the remote's next handshake message; the payload is ignored."""
        if self.complete or self._my_turn():
            raise HandshakeError(f"unexpected handshake message at step {self._step + 1}")
        step = self._step
        pos = 0
        if step in (0, 1):  # e
            if len(message) < DHLEN:
                raise HandshakeError(
                    f"handshake message {step + 1} is {len(message)} bytes, too short for a key"
                )
            self.remote_ephemeral = bytes(message[:DHLEN])
            self._mix_hash(self.remote_ephemeral)
            pos = DHLEN
        if step == 1:  # ee, s, es (initiator side)
            self._mix_key(dh(self.ephemeral, self._remote_e()))
            pos = self._read_static(message, pos)
            self._mix_key(dh(self.ephemeral, self._remote_s()))
        elif step == 2:  # s, se (responder side)
            pos = self._read_static(message, pos)
            self._mix_key(dh(self.ephemeral, self._remote_s()))
        if step > 0 and len(message) - pos < TAGLEN:
            raise HandshakeError(f"handshake message {step + 1} has no payload tag")
        self._decrypt_and_hash(bytes(message[pos:]))
        self._advance()

    def _write_ephemeral(self) -> bytes:
        self._mix_hash(self.ephemeral.public_key)
        return self.ephemeral.public_key

    def _read_static(self, message: bytes, pos: int) -> int:
        end = pos + DHLEN + TAGLEN
        if len(message) < end:
            raise HandshakeError(
                f"handshake message {self._step + 1} is {len(message)} bytes, too short"
            )
        self.remote_static = self._decrypt_and_hash(bytes(message[pos:end]))
        return end

    def _remote_e(self) -> bytes:
        assert self.remote_ephemeral is not None
        return self.remote_ephemeral

    def _remote_s(self) -> bytes:
        assert self.remote_static is not None
        return self.remote_static

    def _advance(self) -> None:
        self._step += 1
        if self._step == 3:
            out1, out2 = hkdf(self._ck, b"")
            k1, k2 = out1[:32], out2[:32]
            self.tx, self.rx = (k1, k2) if self.initiator else (k2, k1)
            self.handshake_hash = self._h
            self.complete = True
