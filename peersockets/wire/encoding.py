"""compact-encoding: the byte formats every Hypercore message is built from.

Decoders take a buffer and an offset and return ``(value, new_offset)``; they
raise DecodeError on truncated or malformed input and never read past ``end``.
"""

from __future__ import annotations

import struct

from ..errors import DecodeError

Buffer = bytes | bytearray | memoryview

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_UINT = 2**64 - 1


def encode_uint(value: int) -> bytes:
    """Encode an unsigned integer as 1, 3, 5 or 9 bytes."""
    if value <= 0xFC:
        if value < 0:
            raise ValueError(f"uint must be >= 0, got {value}")
        return bytes((value,))
    if value <= 0xFFFF:
        return b"\xfd" + _U16.pack(value)
    if value <= 0xFFFFFFFF:
        return b"\xfe" + _U32.pack(value)
    if value > MAX_UINT:
        raise ValueError(f"uint must be < 2**64, got {value}")
    return b"\xff" + _U64.pack(value)


def uint_length(value: int) -> int:
    """Number of bytes encode_uint(value) produces."""
    if value <= 0xFC:
        return 1
    if value <= 0xFFFF:
        return 3
    if value <= 0xFFFFFFFF:
        return 5
    return 9


def decode_uint(buf: Buffer, pos: int, end: int | None = None) -> tuple[int, int]:
    """Decode an unsigned integer at ``pos``."""
    if end is None:
        end = len(buf)
    if pos >= end:
        raise DecodeError(f"truncated uint at offset {pos}")
    first = buf[pos]
    if first <= 0xFC:
        return first, pos + 1
    if first == 0xFD:
        if pos + 3 > end:
            raise DecodeError(f"truncated uint16 at offset {pos}")
        return _U16.unpack_from(buf, pos + 1)[0], pos + 3
    if first == 0xFE:
        if pos + 5 > end:
            raise DecodeError(f"truncated uint32 at offset {pos}")
        return _U32.unpack_from(buf, pos + 1)[0], pos + 5
    if pos + 9 > end:
        raise DecodeError(f"truncated uint64 at offset {pos}")
    return _U64.unpack_from(buf, pos + 1)[0], pos + 9


def encode_buffer(value: Buffer) -> bytes:
    """Length-prefixed bytes."""
    return encode_uint(len(value)) + bytes(value)


def decode_buffer(buf: Buffer, pos: int, end: int | None = None) -> tuple[bytes, int]:
    """Decode length-prefixed bytes."""
    if end is None:
        end = len(buf)
    length, pos = decode_uint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise DecodeError(f"buffer of {length} bytes overruns the message at offset {pos}")
    return bytes(buf[pos:stop]), stop


def encode_optional_buffer(value: Buffer | None) -> bytes:
    """Like encode_buffer, with None (and empty) encoded as a zero length."""
    if value is None:
        return b"\x00"
    return encode_buffer(value)


def decode_optional_buffer(
    buf: Buffer, pos: int, end: int | None = None
) -> tuple[bytes | None, int]:
    """Like decode_buffer; a zero length decodes as None."""
    value, pos = decode_buffer(buf, pos, end)
    return (value or None), pos


def encode_string(value: str) -> bytes:
    """UTF-8 bytes, length-prefixed."""
    return encode_buffer(value.encode("utf-8"))


def decode_string(buf: Buffer, pos: int, end: int | None = None) -> tuple[str, int]:
    """Decode a length-prefixed UTF-8 string; invalid bytes become U+FFFD, as in JavaScript.

    compact-encoding decodes with Node's UTF-8 decoder, which never fails, so a name a
    JavaScript peer would accept (and match or ignore) must not end our connection.
    """
    raw, pos = decode_buffer(buf, pos, end)
    return raw.decode("utf-8", "replace"), pos


def decode_fixed32(buf: Buffer, pos: int, end: int | None = None) -> tuple[bytes, int]:
    """Decode 32 raw bytes."""
    if end is None:
        end = len(buf)
    if pos + 32 > end:
        raise DecodeError(f"truncated fixed32 at offset {pos}: {end - pos} bytes left")
    return bytes(buf[pos : pos + 32]), pos + 32


def encode_bool(value: bool) -> bytes:
    """One byte, 00 or 01."""
    return b"\x01" if value else b"\x00"


def decode_bool(buf: Buffer, pos: int, end: int | None = None) -> tuple[bool, int]:
    """Decode one byte as a bool (any non-zero byte is true, as in JavaScript)."""
    if end is None:
        end = len(buf)
    if pos >= end:
        raise DecodeError(f"truncated bool at offset {pos}")
    return buf[pos] != 0, pos + 1


def encode_uint32array(values: list[int]) -> bytes:
    """A count, then each value as a little-endian u32."""
    return encode_uint(len(values)) + b"".join(_U32.pack(v) for v in values)


def decode_uint32array(buf: Buffer, pos: int, end: int | None = None) -> tuple[list[int], int]:
    """Decode a count-prefixed array of little-endian u32."""
    if end is None:
        end = len(buf)
    count, pos = decode_uint(buf, pos, end)
    stop = pos + 4 * count
    if stop > end:
        raise DecodeError(f"uint32array of {count} items overruns the message at offset {pos}")
    return [_U32.unpack_from(buf, pos + 4 * i)[0] for i in range(count)], stop
