"""Keys: the KeyPair of a swarm, and drive keys in every spelling users paste."""

from __future__ import annotations

import re

from .errors import InvalidKey
from .wire.crypto import KeyPair, discovery_key

__all__ = [
    "InvalidKey",
    "KeyPair",
    "discovery_key",
    "new_drive_key",
    "parse_drive_key",
    "z32_decode",
    "z32_encode",
]

Z32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_Z32_INDEX = {c: i for i, c in enumerate(Z32_ALPHABET)}
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


def z32_encode(data: bytes) -> str:
    """z-base-32, as hypercore-id-encoding writes keys (52 characters for 32 bytes)."""
    bits = int.from_bytes(data, "big") << (-len(data) * 8 % 5)
    length = (len(data) * 8 + 4) // 5
    return "".join(Z32_ALPHABET[(bits >> (5 * (length - 1 - i))) & 31] for i in range(length))


def z32_decode(text: str) -> bytes:
    """Decode z-base-32 to bytes (trailing pad bits dropped)."""
    value = 0
    for char in text:
        index = _Z32_INDEX.get(char)
        if index is None:
            raise InvalidKey(f"{char!r} is not a z-base-32 character in {text!r}")
        value = (value << 5) | index
    nbytes = len(text) * 5 // 8
    return (value >> (len(text) * 5 - nbytes * 8)).to_bytes(nbytes, "big")


def new_drive_key() -> bytes:
    """A new random drive key: 32 bytes, an Ed25519 public key as hyperdrive's own keys are.

    Peers that only exchange messages need nothing but this key to meet; print
    it with ``.hex()`` or ``z32_encode`` to share it. (A JavaScript app that
    wants to *write* the drive makes its key itself, with its secret key.)
    """
    return KeyPair.generate().public_key


def parse_drive_key(value: bytes | bytearray | memoryview | str) -> bytes:
    """Accept 32 bytes, 64 hex characters, 52 z-base-32 characters, or a hyper:// URL."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        key = bytes(value)
        if len(key) != 32:
            raise InvalidKey(f"a drive key is 32 bytes, got {len(key)}: {key.hex()}")
        return key
    if not isinstance(value, str):
        raise TypeError(f"a drive key is bytes or str, got {type(value).__name__}")
    text = value.strip()
    if text.lower().startswith("hyper://"):
        text = text[len("hyper://") :].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    if len(text) == 52:
        key = z32_decode(text.lower())
        if len(key) == 32:
            return key
    raise InvalidKey(
        f"not a drive key: {value!r} (expected 64 hex characters, 52 z-base-32 characters,"
        " or hyper://KEY)"
    )
