"""The UDX packet: a 20-byte little-endian header, SACK blocks, payload (dht/UDX.md 1).

Sequence numbers on the wire are 32 bits and wrap; the stream core works with
unwrapped integers and converts at the edge with ``unwrap``.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "DATA",
    "DESTROY",
    "END",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT",
    "MAGIC",
    "MAX_DATAGRAM",
    "MAX_SACK_BLOCKS",
    "MESSAGE",
    "SACK",
    "SEQ_MASK",
    "STATE",
    "VERSION",
    "decode_sacks",
    "encode",
    "encode_sacks",
    "is_udx",
    "stream_id_of",
    "unwrap",
]

MAGIC: Final = 0xFF
VERSION: Final = 0x01
HEADER_SIZE: Final = 20

STATE: Final = 0x00
DATA: Final = 0x01
END: Final = 0x02
SACK: Final = 0x04
MESSAGE: Final = 0x08
DESTROY: Final = 0x10
HEARTBEAT: Final = 0x20

MAX_SACK_BLOCKS: Final = 50
"""libudx sends at most 50 blocks, so a SACK packet is at most 420 bytes."""

MAX_DATAGRAM: Final = 2048
"""libudx reads every datagram into 2048 bytes and truncates longer ones (UDX.md 1.6)."""

SEQ_MASK: Final = 0xFFFFFFFF

HEADER: Final = struct.Struct("<BBBBIIII")
"""magic, version, type, data_offset, id (the receiver's), rwnd, seq, ack."""

_U32: Final = struct.Struct("<I")
_BLOCK: Final = struct.Struct("<II")


def encode(
    type_: int, stream_id: int, rwnd: int, seq: int, ack: int, body: bytes = b"", data_offset: int = 0
) -> bytes:
    """One packet: header then body (SACK blocks, padding and/or payload); seq and ack wrap."""
    header = HEADER.pack(MAGIC, VERSION, type_, data_offset, stream_id, rwnd, seq & SEQ_MASK, ack & SEQ_MASK)
    return header + body if body else header


def is_udx(datagram: bytes | bytearray | memoryview) -> bool:
    """True when the datagram could be a UDX packet: at least a header, starting ``FF 01``."""
    return len(datagram) >= HEADER_SIZE and datagram[0] == MAGIC and datagram[1] == VERSION


def stream_id_of(datagram: bytes | bytearray | memoryview) -> int:
    """The receiver's stream id of a datagram for which ``is_udx`` holds."""
    stream_id: int = _U32.unpack_from(datagram, 4)[0]
    return stream_id


def unwrap(wire: int, reference: int) -> int:
    """The unwrapped sequence number nearest to ``reference`` whose low 32 bits are ``wire``."""
    delta = (wire - reference) & SEQ_MASK
    if delta >= 0x80000000:
        delta -= 0x100000000
    return reference + delta


def encode_sacks(blocks: list[tuple[int, int]]) -> bytes:
    """SACK blocks, half-open ``[start, end)`` ranges, wrapped to 32 bits."""
    return b"".join(_BLOCK.pack(start & SEQ_MASK, end & SEQ_MASK) for start, end in blocks)


def decode_sacks(area: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """The ``[start, end)`` blocks (wire values) in a SACK block area; a trailing part block is ignored."""
    count = min(len(area) // 8, MAX_SACK_BLOCKS * 4)
    return [_BLOCK.unpack_from(area, 8 * i) for i in range(count)]
