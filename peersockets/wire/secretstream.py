"""secret-stream: a Noise XX handshake, then libsodium secretstream frames, over any byte stream.

Given the result of a handshake made elsewhere (hyperdht's IK, run through the
DHT), it skips its own: the header frame goes first.

Sans-I/O: feed received bytes to ``receive_data`` and write out what
``data_to_send`` and ``encrypt`` return. Every frame on the raw stream is
``u24le length || body``.
"""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Any

import nacl.bindings as sodium
from nacl._sodium import ffi, lib

from ..errors import (
    DecryptionError,
    FrameTooLarge,
    HandshakeError,
    InvalidSetting,
    MessageTooLarge,
)
from .crypto import KeyPair, stream_id
from .noise import HandshakeResult, NoiseXX

ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
HEADERBYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
ID_HEADER_BYTES = 32 + HEADERBYTES
MAX_FRAME = 2**24 - 1
MAX_MESSAGE = MAX_FRAME - ABYTES  # 16,777,198 bytes of plaintext
MAX_HANDSHAKE_FRAME = 65535  # the largest Noise message: nothing bigger is sent before keys exist

# libsodium's calls and cffi's helpers, looked up once: a frame's crypto is on the hot path
_push = lib.crypto_secretstream_xchacha20poly1305_push
_pull = lib.crypto_secretstream_xchacha20poly1305_pull
_from_buffer = ffi.from_buffer
_NULL = ffi.NULL


class Phase(Enum):
    """Where the stream is: handshaking, waiting for the remote's header, or carrying data."""

    HANDSHAKE = 1
    HEADER = 2
    TRANSPORT = 3


_TRANSPORT = Phase.TRANSPORT


def frame(body: bytes) -> bytes:
    """Prefix a body with its u24 little-endian length."""
    return len(body).to_bytes(3, "little") + body


def check_max_frame_size(value: int) -> int:
    """``value`` if it is a frame size the wire can carry; ValueError otherwise."""
    if not 0 < value <= MAX_FRAME:
        raise InvalidSetting(f"max_frame_size must be in 1..{MAX_FRAME}, got {value!r}")
    return value


def _failed_authentication(length: int) -> str:
    return f"frame of {length} bytes failed authentication (tampered, replayed or reordered)"


class SecretStream:
    """One end of a secret-stream: the initiator is the side that dialled."""

    def __init__(
        self,
        initiator: bool,
        key_pair: KeyPair,
        *,
        ephemeral: KeyPair | None = None,
        max_frame_size: int = MAX_FRAME,
        handshake: HandshakeResult | None = None,
    ) -> None:
        if handshake is not None and handshake.initiator != initiator:
            raise HandshakeError(
                f"a handshake made as {'initiator' if handshake.initiator else 'responder'}"
                f" cannot start the {'initiator' if initiator else 'responder'} of a stream"
            )
        self.initiator = initiator
        self.key_pair = key_pair
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self.frame_limit = self.max_frame_size
        """The largest unfinished frame that may be kept waiting for its rest, after the
        handshake (the owner keeps it lower until the remote has earned more: a
        connection with no channel open); see check_unfinished()."""
        self._unfinished_length = 0  # the length prefix of the frame kept unfinished
        self.unfinished = 0
        """Bytes received of a frame not yet complete (held until the rest arrives)."""
        self.phase = Phase.HANDSHAKE
        self.handshake_complete = False
        """The Noise handshake is done: keys are known and encrypt() works. The remote's
        stream header may still be on its way (phase HEADER, then TRANSPORT)."""
        self.handshake_hash = b""
        self.remote_public_key = b""
        self._noise: NoiseXX | None = None if handshake else NoiseXX(initiator, key_pair, ephemeral)
        self._outgoing = bytearray()
        self._incoming = bytearray()
        self._push_state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._pull_state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._push = self._push_state.statebuf
        self._pull = self._pull_state.statebuf
        self._tag = ffi.new("unsigned char *")
        self._rx = b""
        if handshake is not None:
            self._start(handshake.handshake_hash, handshake.remote_public_key, handshake.tx, handshake.rx)
        elif initiator:
            self._outgoing += frame(self._noise_state().write_message())

    def data_to_send(self) -> bytes:
        """Handshake and header bytes queued for the raw stream (then cleared)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytearray:
        """One framed, encrypted message (``u24 length || ciphertext``); empty is a keepalive."""
        size = len(plaintext)
        if size > MAX_MESSAGE or not self.handshake_complete:
            if not self.handshake_complete:
                raise HandshakeError("cannot send before the handshake is complete")
            raise MessageTooLarge(
                f"message of {size} bytes exceeds the frame limit of {MAX_MESSAGE}"
            )
        length = size + ABYTES
        out = bytearray(length + 3)
        if length < 0x100:  # the u24 prefix of a small frame is one byte and two zeros
            out[0] = length
        else:
            out[:3] = length.to_bytes(3, "little")
        source = plaintext if type(plaintext) is bytes else _from_buffer(plaintext)
        rc = _push(self._push, _from_buffer(out) + 3, _NULL, source, size, _NULL, 0, 0)
        if rc != 0:  # pragma: no cover - libsodium only fails on impossible lengths
            raise MessageTooLarge(f"libsodium refused to encrypt {size} bytes")
        return out

    def check_unfinished(self) -> None:
        """Raise FrameTooLarge if the frame kept unfinished is larger than frame_limit.

        Separate from receive_data, so that the owner can first handle the messages
        that came with it (a channel open may raise the limit).
        """
        if self._incoming and self._unfinished_length > self.frame_limit:
            raise FrameTooLarge(
                f"frame length prefix {self._unfinished_length} exceeds the limit of"
                f" {self.frame_limit} bytes while no channel is open"
            )

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Consume raw bytes; return the decrypted messages they complete.

        Empty messages are returned too: they are keepalives to protomux, which
        ignores them, but a raw secret-stream user may send them on purpose.

        Raises a ProtocolError subclass when the remote misbehaves; the stream
        is then unusable and the connection must be closed.
        """
        buffer = self._incoming
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data
            size = len(data)
            if size > 3 and self.phase is _TRANSPORT:  # the common read: exactly one frame
                length = data[0] | (data[1] << 8) | (data[2] << 16)
                if length + 3 == size and ABYTES <= length <= self.max_frame_size:
                    # with nothing buffered, unfinished and _unfinished_length are 0 already
                    plaintext = bytearray(length - ABYTES)
                    if _pull(
                        self._pull, _from_buffer(plaintext), _NULL, self._tag,
                        _from_buffer(data) + 3, length, _NULL, 0,
                    ):
                        raise DecryptionError(_failed_authentication(length))
                    return [plaintext]
        messages: list[bytearray] = []
        pos = 0
        size = len(source)
        transport = self.phase is Phase.TRANSPORT
        limit = self.max_frame_size if transport else min(self.max_frame_size, MAX_HANDSHAKE_FRAME)
        self._unfinished_length = 0
        # one C view of the read for every frame in it; released before the buffer is resized
        base = _from_buffer(source) if transport else None
        try:
            while size - pos >= 3:
                length = source[pos] | (source[pos + 1] << 8) | (source[pos + 2] << 16)
                if length > limit:
                    raise FrameTooLarge(
                        f"frame length prefix {length} exceeds the limit of {limit} bytes"
                        + ("" if transport else " before the handshake is done")
                    )
                end = pos + 3 + length
                if end > size:
                    self._unfinished_length = length
                    break
                pos += 3
                if base is not None:
                    messages.append(self._decrypt(base, pos, length))
                else:
                    self._setup_frame(bytes(source[pos:end]))
                    transport = self.phase is Phase.TRANSPORT
                    if transport:
                        limit = self.max_frame_size
                        base = _from_buffer(source)
                pos = end
        finally:
            base = None
        if source is buffer:
            if pos:
                del buffer[:pos]
        elif pos < size:
            with memoryview(data) as tail:
                buffer += tail[pos:]
        self.unfinished = len(buffer)
        return messages

    def _decrypt(self, base: Any, start: int, length: int) -> bytearray:
        """Decrypt the ``length`` bytes at ``start`` of the C view ``base`` of a read."""
        size = length - ABYTES
        if size < 0:
            raise DecryptionError(f"encrypted frame of {length} bytes is shorter than {ABYTES}")
        plaintext = bytearray(size)
        rc = _pull(
            self._pull, _from_buffer(plaintext), _NULL, self._tag, base + start, length, _NULL, 0
        )
        if rc != 0:
            raise DecryptionError(_failed_authentication(length))
        return plaintext

    def _noise_state(self) -> NoiseXX:
        if self._noise is None:
            raise HandshakeError("the handshake is already complete")
        return self._noise

    def _setup_frame(self, body: bytes) -> None:
        if self.phase is Phase.HANDSHAKE:
            noise = self._noise_state()
            noise.read_message(body)
            if not noise.complete:
                self._outgoing += frame(noise.write_message())
            if noise.complete:
                self._finish_handshake(noise)
            return
        if len(body) != ID_HEADER_BYTES:
            raise HandshakeError(f"stream header must be {ID_HEADER_BYTES} bytes, got {len(body)}")
        expected = stream_id(self.handshake_hash, not self.initiator)
        if not hmac.compare_digest(body[:32], expected):
            raise HandshakeError(
                f"stream id {body[:32].hex()} does not match the handshake (expected {expected.hex()})"
            )
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(
            self._pull_state, body[32:], self._rx
        )
        self.phase = Phase.TRANSPORT

    def _finish_handshake(self, noise: NoiseXX) -> None:
        self._start(noise.handshake_hash, noise.remote_public_key, noise.tx, noise.rx)
        self._noise = None

    def _start(self, handshake_hash: bytes, remote_public_key: bytes, tx: bytes, rx: bytes) -> None:
        """Keys are known: queue our stream header and wait for the remote's."""
        self.handshake_hash = handshake_hash
        self.remote_public_key = remote_public_key
        self._rx = rx
        header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._push_state, tx)
        self._outgoing += frame(stream_id(self.handshake_hash, self.initiator) + header)
        self.phase = Phase.HEADER
        self.handshake_complete = True
