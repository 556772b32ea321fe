"""dht-rpc's datagram codec: requests, responses, IPv4 addresses and node ids (HYPERDHT.md 1.2-1.5).

Byte-for-byte what dht-rpc 6.27.0 (``lib/io.js``, ``lib/peer.js``) writes and
accepts, so a Python node and a JavaScript node understand each other:

- a request starts ``03``, a response ``13``; then flags (a uint), the tid (u16),
  the ``to`` address, and the fields that the flag bits say are present, in a
  fixed order;
- an address is 4 bytes of IPv4 then the port as u16 little-endian;
- a node id is BLAKE2b-256 of that 6-byte address.

``decode`` refuses with DecodeError everything dht-rpc's decoder would drop
(wrong first byte, truncation, arrays above 0x100000 items, uints above
2**53 - 1) and, like it, ignores bytes after the last field. Port 0 is a valid
value in ``to`` and in closer nodes, as in JS. It does not know the datagram's
UDP source, so two checks dht-rpc makes are the caller's: drop datagrams from
source port 0, and check a claimed ``id`` with ``accepted_id``.

Sans-I/O: no sockets, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Final

from ..errors import DecodeError, InvalidSetting
from ..wire.crypto import blake2b_256
from ..wire.encoding import Buffer, decode_uint, encode_uint

__all__ = [
    "ADDRESS_SIZE",
    "FLAG_CLOSER_NODES",
    "FLAG_ERROR",
    "FLAG_ID",
    "FLAG_INTERNAL",
    "FLAG_TARGET",
    "FLAG_TOKEN",
    "FLAG_VALUE",
    "MAX_ARRAY",
    "MAX_SAFE_UINT",
    "REQUEST_ID",
    "RESPONSE_ID",
    "VERSION",
    "Address",
    "ErrorCode",
    "InternalCommand",
    "Request",
    "Response",
    "accepted_id",
    "decode",
    "decode_address",
    "delayed_ping_delay",
    "delayed_ping_value",
    "down_hint_address",
    "down_hint_value",
    "encode_address",
    "node_id",
    "ping_nat_port",
    "ping_nat_value",
]

Address = tuple[str, int]
"""An IPv4 peer: dotted host string and port."""

VERSION: Final = 0b11
REQUEST_ID: Final = (0b0000 << 4) | VERSION
"""First byte of a request: type 0 in the high nibble, version 3 in the low one."""
RESPONSE_ID: Final = (0b0001 << 4) | VERSION
"""First byte of a response: type 1, version 3."""

FLAG_ID: Final = 1
FLAG_TOKEN: Final = 2
FLAG_INTERNAL: Final = 4
"""Request: the command is a dht-rpc internal command (InternalCommand)."""
FLAG_CLOSER_NODES: Final = 4
"""Response: a closer-nodes array follows the token."""
FLAG_TARGET: Final = 8
FLAG_ERROR: Final = 8
FLAG_VALUE: Final = 16

MAX_ARRAY: Final = 0x100000
"""compact-encoding's array decoder refuses counts above this."""
MAX_SAFE_UINT: Final = 2**53 - 1
"""compact-encoding decodes a uint64 into a JavaScript number and refuses larger ones."""

ADDRESS_SIZE: Final = 6

_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_ADDRESS: Final = struct.Struct("<4BH")
_TID_ADDRESS: Final = struct.Struct("<H4BH")


class InternalCommand(IntEnum):
    """dht-rpc's own commands (``lib/commands.js``), sent with the internal flag."""

    PING = 0
    PING_NAT = 1
    FIND_NODE = 2
    DOWN_HINT = 3
    DELAYED_PING = 4


class ErrorCode(IntEnum):
    """The error codes dht-rpc itself puts in responses (``lib/errors.js``)."""

    OK = 0
    UNKNOWN_COMMAND = 1
    INVALID_TOKEN = 2


# -- addresses and node ids -----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _host_bytes(host: str) -> bytes:
    """The 4 network-order bytes of a dotted IPv4 host (cached: a node talks to few hosts)."""
    parts = host.split(".")
    if len(parts) == 4 and all(0 < len(p) <= 3 and p.isascii() and p.isdigit() for p in parts):
        numbers = [int(p) for p in parts]
        if max(numbers) <= 255:
            return bytes(numbers)
    raise InvalidSetting(f"host must be a dotted IPv4 address, got {host!r}")


def _check_port(port: int) -> None:
    if not (isinstance(port, int) and 0 <= port <= 0xFFFF):
        raise InvalidSetting(f"port must be an int in 0..65535, got {port!r}")


def encode_address(host: str, port: int) -> bytes:
    """The 6-byte dht-rpc address: IPv4 in network order, then the port as u16 little-endian."""
    _check_port(port)
    return _host_bytes(host) + _U16.pack(port)


def decode_address(buf: Buffer, pos: int = 0) -> Address:
    """The address encoded in the 6 bytes of ``buf`` at ``pos`` (later bytes are ignored)."""
    if pos < 0 or len(buf) - pos < ADDRESS_SIZE:
        raise DecodeError(f"an address needs 6 bytes, got {max(0, len(buf) - pos)} at offset {pos}")
    a, b, c, d, port = _ADDRESS.unpack_from(buf, pos)
    return f"{a}.{b}.{c}.{d}", port


def node_id(address: Address) -> bytes:
    """dht-rpc's id of the node at ``address``: BLAKE2b-256 of its 6-byte encoding."""
    return blake2b_256(encode_address(address[0], address[1]))


def accepted_id(claimed: bytes | None, source: Address) -> bytes | None:
    """The id a message from UDP ``source`` counts as having: the claimed one only if it is
    H(source), else None (dht-rpc drops a mismatching id silently, HYPERDHT.md 1.2). A source
    that is not IPv4 (dht-rpc has no ids for those) never has an accepted id."""
    if claimed is None:
        return None
    try:
        expected = node_id(source)
    except InvalidSetting:
        return None
    return expected if claimed == expected else None


# -- messages ------------------------------------------------------------------------------------


def _encode_head(kind: int, flags: int, tid: int, to: Address, id_: bytes | None, token: bytes | None) -> bytearray:
    """The fields every request and response starts with, in dht-rpc's order."""
    out = bytearray((kind, flags))
    out += _U16.pack(tid)
    out += encode_address(*to)
    if id_ is not None:
        out += id_
    if token is not None:
        out += token
    return out


def _check_fixed32(name: str, value: bytes | None) -> None:
    if value is not None and len(value) != 32:
        raise InvalidSetting(f"{name} must be 32 bytes, got {len(value)}: {bytes(value).hex()}")


def _check_uint(name: str, value: int, maximum: int = MAX_SAFE_UINT) -> None:
    if not (isinstance(value, int) and 0 <= value <= maximum):
        raise InvalidSetting(f"{name} must be an int in 0..{maximum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Request:
    """A dht-rpc request. ``to`` is where the sender sends it (the receiver's address as the
    sender knows it); ``id`` is sent only by a persistent node from its server socket;
    ``internal`` marks dht-rpc's own commands, else ``command`` is the application's."""

    tid: int
    to: Address
    command: int
    internal: bool = False
    id: bytes | None = None
    token: bytes | None = None
    target: bytes | None = None
    value: bytes | None = None

    def encode(self) -> bytes:
        """The datagram; a present but empty ``value`` is sent (flag set, length 0), as JS does."""
        _check_uint("tid", self.tid, 0xFFFF)
        _check_uint("command", self.command)
        _check_fixed32("id", self.id)
        _check_fixed32("token", self.token)
        _check_fixed32("target", self.target)
        flags = (
            (FLAG_ID if self.id is not None else 0)
            | (FLAG_TOKEN if self.token is not None else 0)
            | (FLAG_INTERNAL if self.internal else 0)
            | (FLAG_TARGET if self.target is not None else 0)
            | (FLAG_VALUE if self.value is not None else 0)
        )
        out = _encode_head(REQUEST_ID, flags, self.tid, self.to, self.id, self.token)
        out += encode_uint(self.command)
        if self.target is not None:
            out += self.target
        if self.value is not None:
            out += encode_uint(len(self.value))
            out += self.value
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Response:
    """A dht-rpc response. ``tid`` echoes the request's; ``to`` is the requester's address as
    the responder saw it (its UDP source; for PING_NAT, with the port the request asked for,
    where the reply goes); ``error`` 0 is success (ErrorCode for dht-rpc's own)."""

    tid: int
    to: Address
    id: bytes | None = None
    token: bytes | None = None
    closer_nodes: tuple[Address, ...] = ()
    error: int = 0
    value: bytes | None = None

    def encode(self) -> bytes:
        """The datagram; closer nodes and error are sent only when non-empty / non-zero, as JS does."""
        _check_uint("tid", self.tid, 0xFFFF)
        _check_uint("error", self.error)
        _check_fixed32("id", self.id)
        _check_fixed32("token", self.token)
        nodes = self.closer_nodes
        if len(nodes) > MAX_ARRAY:
            raise InvalidSetting(f"closer_nodes must have at most {MAX_ARRAY} items, got {len(nodes)}")
        flags = (
            (FLAG_ID if self.id is not None else 0)
            | (FLAG_TOKEN if self.token is not None else 0)
            | (FLAG_CLOSER_NODES if nodes else 0)
            | (FLAG_ERROR if self.error else 0)
            | (FLAG_VALUE if self.value is not None else 0)
        )
        out = _encode_head(RESPONSE_ID, flags, self.tid, self.to, self.id, self.token)
        if nodes:
            out += encode_uint(len(nodes))
            for host, port in nodes:
                out += encode_address(host, port)
        if self.error:
            out += encode_uint(self.error)
        if self.value is not None:
            out += encode_uint(len(self.value))
            out += self.value
        return bytes(out)


def _uint(buf: Buffer, pos: int, end: int, name: str) -> tuple[int, int]:
    """A compact uint that fits a JavaScript number (one byte inline, the rest via encoding)."""
    if pos < end:
        first = buf[pos]
        if first <= 0xFC:
            return first, pos + 1
    try:
        value, pos = decode_uint(buf, pos, end)
    except DecodeError as exc:
        raise DecodeError(f"truncated {name}: {exc}") from None
    if value > MAX_SAFE_UINT:
        raise DecodeError(f"{name} {value} is above 2**53 - 1 (JavaScript refuses it)")
    return value, pos


def _fixed32(buf: Buffer, pos: int, end: int, name: str) -> tuple[bytes, int]:
    stop = pos + 32
    if stop > end:
        raise DecodeError(f"truncated {name}: 32 bytes needed at offset {pos}, {end - pos} left")
    return bytes(buf[pos:stop]), stop


def _head(buf: Buffer, end: int) -> tuple[int, int, Address, int]:
    """flags, tid, to, and the offset after them (shared by requests and responses)."""
    flags, pos = _uint(buf, 1, end, "flags")
    if pos + 8 > end:
        raise DecodeError(f"truncated header: tid and address need 8 bytes at offset {pos}, {end - pos} left")
    tid, a, b, c, d, port = _TID_ADDRESS.unpack_from(buf, pos)
    return flags, tid, (f"{a}.{b}.{c}.{d}", port), pos + 8


def _value(buf: Buffer, pos: int, end: int) -> bytes:
    length, pos = _uint(buf, pos, end, "value length")
    if pos + length > end:
        raise DecodeError(f"value of {length} bytes overruns the datagram at offset {pos} ({end - pos} left)")
    return bytes(buf[pos : pos + length])


def _decode_request(buf: Buffer, end: int) -> Request:
    flags, tid, to, pos = _head(buf, end)
    id_ = token = target = value = None
    if flags & FLAG_ID:
        id_, pos = _fixed32(buf, pos, end, "id")
    if flags & FLAG_TOKEN:
        token, pos = _fixed32(buf, pos, end, "token")
    command, pos = _uint(buf, pos, end, "command")
    if flags & FLAG_TARGET:
        target, pos = _fixed32(buf, pos, end, "target")
    if flags & FLAG_VALUE:
        value = _value(buf, pos, end)
    return Request(tid, to, command, (flags & FLAG_INTERNAL) != 0, id_, token, target, value)


def _decode_response(buf: Buffer, end: int) -> Response:
    flags, tid, to, pos = _head(buf, end)
    id_ = token = value = None
    nodes: tuple[Address, ...] = ()
    error = 0
    if flags & FLAG_ID:
        id_, pos = _fixed32(buf, pos, end, "id")
    if flags & FLAG_TOKEN:
        token, pos = _fixed32(buf, pos, end, "token")
    if flags & FLAG_CLOSER_NODES:
        count, pos = _uint(buf, pos, end, "closer node count")
        if count > MAX_ARRAY:
            raise DecodeError(f"closer node count {count} is above {MAX_ARRAY:#x}")
        stop = pos + ADDRESS_SIZE * count
        if stop > end:
            raise DecodeError(
                f"{count} closer nodes need {ADDRESS_SIZE * count} bytes at offset {pos}, {end - pos} left"
            )
        unpack = _ADDRESS.unpack_from
        listed = []
        for offset in range(pos, stop, ADDRESS_SIZE):
            a, b, c, d, port = unpack(buf, offset)
            listed.append((f"{a}.{b}.{c}.{d}", port))
        nodes = tuple(listed)
        pos = stop
    if flags & FLAG_ERROR:
        error, pos = _uint(buf, pos, end, "error")
    if flags & FLAG_VALUE:
        value = _value(buf, pos, end)
    return Response(tid, to, id_, token, nodes, error, value)


def decode(datagram: Buffer) -> Request | Response:
    """The request or response in ``datagram``; DecodeError for anything dht-rpc would drop.

    Bytes after the last field are ignored, as compact-encoding does."""
    end = len(datagram)
    if end < 2:
        raise DecodeError(f"a dht-rpc message has at least 2 bytes, got {bytes(datagram).hex() or 'none'}")
    first = datagram[0]
    if first == REQUEST_ID:
        return _decode_request(datagram, end)
    if first == RESPONSE_ID:
        return _decode_response(datagram, end)
    raise DecodeError(f"first byte {first:#04x} is neither a request (0x03) nor a response (0x13)")


# -- values of the internal commands (HYPERDHT.md 1.5) -------------------------------------------


def ping_nat_value(port: int) -> bytes:
    """PING_NAT's value: the port (u16 LE) the reply should be sent to."""
    _check_port(port)
    return _U16.pack(port)


def ping_nat_port(value: bytes | None) -> int | None:
    """The reply port a PING_NAT asks for, or None when dht-rpc ignores the request
    (value shorter than 2 bytes, or port 0)."""
    if value is None or len(value) < 2:
        return None
    port: int = _U16.unpack_from(value)[0]
    return port or None


def delayed_ping_value(delay_ms: int) -> bytes:
    """DELAYED_PING's value: the delay in milliseconds as u32 LE."""
    _check_uint("delay_ms", delay_ms, 0xFFFFFFFF)
    return _U32.pack(delay_ms)


def delayed_ping_delay(value: bytes | None) -> int | None:
    """The delay a DELAYED_PING asks for, or None when its value is shorter than 4 bytes.
    (The receiver also ignores delays above its maximum, 10 000 ms by default.)"""
    if value is None or len(value) < 4:
        return None
    delay: int = _U32.unpack_from(value)[0]
    return delay


def down_hint_value(address: Address) -> bytes:
    """DOWN_HINT's value: the 6-byte address of the node found dead."""
    return encode_address(address[0], address[1])


def down_hint_address(value: bytes | None) -> Address | None:
    """The address a DOWN_HINT names (its first 6 bytes), or None when dht-rpc ignores it."""
    if value is None or len(value) < ADDRESS_SIZE:
        return None
    return decode_address(value)
