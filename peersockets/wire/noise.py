"""Noise XX and IK over Ed25519 (Noise_*_Ed25519_ChaChaPoly_BLAKE2b), as noise-handshake does them.

XX is secret-stream's own handshake; IK is the one hyperdht runs through the
DHT before a connection exists (HYPERDHT.md 3.4). DH is not X25519: the local
Ed25519 seed is hashed and clamped into a scalar that multiplies the remote
Ed25519 public key (noise-curve-ed).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import HandshakeError
from .crypto import KeyPair

PROTOCOL_NAME = b"Noise_XX_Ed25519_ChaChaPoly_BLAKE2b"
IK_PROTOCOL_NAME = b"Noise_IK_Ed25519_ChaChaPoly_BLAKE2b"
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


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a finished Noise handshake leaves: the transport keys, the hash, who the remote is.

    A secret-stream given one skips its own handshake (hyperdht's connections)."""

    initiator: bool
    tx: bytes
    rx: bytes
    handshake_hash: bytes
    remote_public_key: bytes


class SymmetricState:
    """Noise's symmetric state: the chaining key, the handshake hash and the current cipher."""

    def __init__(self, protocol_name: bytes, prologue: bytes) -> None:
        self.h = protocol_name.ljust(HASHLEN, b"\x00")
        self.ck = self.h
        self._key: ChaCha20Poly1305 | None = None
        self._nonce = 0
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key(self, shared: bytes) -> None:
        self.ck, temp = hkdf(self.ck, shared)
        self._key = ChaCha20Poly1305(temp[:32])
        self._nonce = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._key is None:
            out = plaintext
        else:
            out = self._key.encrypt(_NONCE.pack(self._nonce), plaintext, self.h)
            self._nonce += 1
        self.mix_hash(out)
        return out

    def decrypt_and_hash(self, ciphertext: bytes, step: int) -> bytes:
        if self._key is None:
            out = ciphertext
        else:
            try:
                out = self._key.decrypt(_NONCE.pack(self._nonce), ciphertext, self.h)
            except InvalidTag as exc:
                raise HandshakeError(f"handshake message {step} failed authentication") from exc
            self._nonce += 1
        self.mix_hash(ciphertext)
        return out

    def split(self, initiator: bool) -> tuple[bytes, bytes]:
        """(tx, rx) for this side: the initiator sends with the first key."""
        out1, out2 = hkdf(self.ck, b"")
        k1, k2 = out1[:32], out2[:32]
        return (k1, k2) if initiator else (k2, k1)


def _read_key(message: bytes, pos: int, step: int, what: str) -> bytes:
    if len(message) < pos + DHLEN:
        raise HandshakeError(f"handshake message {step} is {len(message)} bytes, too short for {what}")
    return bytes(message[pos : pos + DHLEN])


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
        self._state = SymmetricState(PROTOCOL_NAME, b"")  # the empty prologue

    @property
    def remote_public_key(self) -> bytes:
        """The authenticated static key of the remote (after completion)."""
        if self.remote_static is None:
            raise HandshakeError("the handshake has not revealed the remote static key yet")
        return self.remote_static

    def _my_turn(self) -> bool:
        return (self._step % 2 == 0) == self.initiator

    def write_message(self) -> bytes:
        """Produce the next handshake message of this side (empty payload)."""
        if self.complete or not self._my_turn():
            raise HandshakeError(f"not this side's turn to send (step {self._step + 1})")
        state = self._state
        step = self._step
        parts: list[bytes] = []
        if step == 0:  # -> e
            parts.append(self._write_ephemeral())
        elif step == 1:  # <- e, ee, s, es
            parts.append(self._write_ephemeral())
            state.mix_key(dh(self.ephemeral, self._remote_e()))
            parts.append(state.encrypt_and_hash(self.static.public_key))
            state.mix_key(dh(self.static, self._remote_e()))
        else:  # -> s, se
            parts.append(state.encrypt_and_hash(self.static.public_key))
            state.mix_key(dh(self.static, self._remote_e()))
        parts.append(state.encrypt_and_hash(b""))
        self._advance()
        return b"".join(parts)

    def read_message(self, message: bytes) -> None:
        """Consume the remote's next handshake message; the payload is ignored."""
        if self.complete or self._my_turn():
            raise HandshakeError(f"unexpected handshake message at step {self._step + 1}")
        state = self._state
        step = self._step
        pos = 0
        if step in (0, 1):  # e
            self.remote_ephemeral = _read_key(message, 0, step + 1, "a key")
            state.mix_hash(self.remote_ephemeral)
            pos = DHLEN
        if step == 1:  # ee, s, es (initiator side)
            state.mix_key(dh(self.ephemeral, self._remote_e()))
            pos = self._read_static(message, pos)
            state.mix_key(dh(self.ephemeral, self._remote_s()))
        elif step == 2:  # s, se (responder side)
            pos = self._read_static(message, pos)
            state.mix_key(dh(self.ephemeral, self._remote_s()))
        if step > 0 and len(message) - pos < TAGLEN:
            raise HandshakeError(f"handshake message {step + 1} has no payload tag")
        state.decrypt_and_hash(bytes(message[pos:]), step + 1)
        self._advance()

    def _write_ephemeral(self) -> bytes:
        self._state.mix_hash(self.ephemeral.public_key)
        return self.ephemeral.public_key

    def _read_static(self, message: bytes, pos: int) -> int:
        end = pos + DHLEN + TAGLEN
        if len(message) < end:
            raise HandshakeError(
                f"handshake message {self._step + 1} is {len(message)} bytes, too short"
            )
        self.remote_static = self._state.decrypt_and_hash(bytes(message[pos:end]), self._step + 1)
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
            self.tx, self.rx = self._state.split(self.initiator)
            self.handshake_hash = self._state.h
            self.complete = True


class NoiseIK:
    """One side of a Noise IK handshake with payloads: two messages, the initiator knows
    the responder's static key beforehand (hyperdht's connect handshake).

    Initiator: ``write_message(payload)`` then ``read_message(reply)``; responder:
    ``read_message(message)`` (the remote's key is then ``remote_static``) then
    ``write_message(payload)``. ``result()`` once both are done.
    """

    def __init__(
        self,
        initiator: bool,
        static: KeyPair,
        prologue: bytes,
        remote_static: bytes | None = None,
        *,
        ephemeral: KeyPair | None = None,
    ) -> None:
        if initiator and (remote_static is None or len(remote_static) != DHLEN):
            raise HandshakeError("an IK initiator needs the responder's 32-byte static key")
        self.initiator = initiator
        self.static = static
        self.ephemeral = ephemeral if ephemeral is not None else KeyPair.generate()
        self.remote_static = remote_static
        self.remote_ephemeral: bytes | None = None
        self.complete = False
        self._step = 0
        self._state = SymmetricState(IK_PROTOCOL_NAME, prologue)
        # the pre-message: the responder's static key
        self._state.mix_hash(remote_static if initiator else static.public_key)  # type: ignore[arg-type]

    def write_message(self, payload: bytes) -> bytes:
        """This side's message (1 for the initiator, 2 for the responder) carrying ``payload``."""
        if self.complete or (self._step == 0) != self.initiator:
            raise HandshakeError(f"not this side's turn to send (step {self._step + 1})")
        state = self._state
        state.mix_hash(self.ephemeral.public_key)
        parts = [self.ephemeral.public_key]
        if self.initiator:  # -> e, es, s, ss
            state.mix_key(dh(self.ephemeral, self._remote_s()))
            parts.append(state.encrypt_and_hash(self.static.public_key))
            state.mix_key(dh(self.static, self._remote_s()))
        else:  # <- e, ee, se
            state.mix_key(dh(self.ephemeral, self._remote_e()))
            state.mix_key(dh(self.ephemeral, self._remote_s()))
        parts.append(state.encrypt_and_hash(bytes(payload)))
        self._advance()
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Consume the remote's message; returns its decrypted payload. A message that fails
        leaves the state as it was, so a forged one does not spoil a later genuine one."""
        if self.complete or (self._step == 0) == self.initiator:
            raise HandshakeError(f"unexpected handshake message at step {self._step + 1}")
        state = self._state
        saved = (state.h, state.ck, state._key, state._nonce, self.remote_ephemeral, self.remote_static)
        try:
            return self._read(message)
        except HandshakeError:
            state.h, state.ck, state._key, state._nonce, self.remote_ephemeral, self.remote_static = saved
            raise

    def _read(self, message: bytes) -> bytes:
        step = self._step + 1
        state = self._state
        self.remote_ephemeral = _read_key(message, 0, step, "a key")
        state.mix_hash(self.remote_ephemeral)
        pos = DHLEN
        if not self.initiator:  # e, es, s, ss
            state.mix_key(dh(self.static, self.remote_ephemeral))
            end = pos + DHLEN + TAGLEN
            if len(message) < end:
                raise HandshakeError(f"handshake message {step} is {len(message)} bytes, too short")
            self.remote_static = state.decrypt_and_hash(bytes(message[pos:end]), step)
            state.mix_key(dh(self.static, self.remote_static))
            pos = end
        else:  # e, ee, se
            state.mix_key(dh(self.ephemeral, self.remote_ephemeral))
            state.mix_key(dh(self.static, self.remote_ephemeral))
        if len(message) - pos < TAGLEN:
            raise HandshakeError(f"handshake message {step} has no payload tag")
        payload = state.decrypt_and_hash(bytes(message[pos:]), step)
        self._advance()
        return payload

    def result(self) -> HandshakeResult:
        """The keys and hash, once both messages are done."""
        if not self.complete:
            raise HandshakeError("the IK handshake is not complete")
        tx, rx = self._state.split(self.initiator)
        return HandshakeResult(self.initiator, tx, rx, self._state.h, self._remote_s())

    @property
    def handshake_hash(self) -> bytes:
        """The running handshake hash (final once complete)."""
        return self._state.h

    def _remote_e(self) -> bytes:
        if self.remote_ephemeral is None:
            raise HandshakeError("the remote's ephemeral key is not known yet")
        return self.remote_ephemeral

    def _remote_s(self) -> bytes:
        if self.remote_static is None:
            raise HandshakeError("the remote's static key is not known yet")
        return self.remote_static

    def _advance(self) -> None:
        self._step += 1
        self.complete = self._step == 2
