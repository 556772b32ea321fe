"""The ``hypercore/alpha`` channel, as much of it as a peer that stores no blocks needs.

It opens with a capability that proves knowledge of the core's key, says
(sync) that it has nothing and wants data so the remote keeps the channel
open, answers every request with noData, and carries extension messages with
hypercore's name compression (an empty name repeats the previous one).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from ..errors import CapabilityError, DecodeError
from .crypto import capability, discovery_key
from .encoding import Buffer, decode_fixed32, decode_string, decode_uint, encode_string, encode_uint
from .protomux import Channel, Mux

PROTOCOL = "hypercore/alpha"
_EXTENSION_TYPE = b"\x09"
_REPEATED_NAME = b"\x09\x00"  # type 9, then the empty name: "the same as before"


class MessageType(IntEnum):
    """The channel's message types, in hypercore 11's order."""

    SYNC = 0
    REQUEST = 1
    CANCEL = 2
    DATA = 3
    NO_DATA = 4
    WANT = 5
    UNWANT = 6
    BITFIELD = 7
    RANGE = 8
    EXTENSION = 9


@dataclass(frozen=True, slots=True)
class Sync:
    """A sync message: what a peer has and whether it uploads and downloads."""

    fork: int = 0
    length: int = 0
    remote_length: int = 0
    can_upgrade: bool = False
    uploading: bool = False
    downloading: bool = True
    has_manifest: bool = False
    allow_push: bool = False

    def encode(self) -> bytes:
        """The wire bytes of this sync."""
        flags = (
            (1 if self.can_upgrade else 0)
            | (2 if self.uploading else 0)
            | (4 if self.downloading else 0)
            | (8 if self.has_manifest else 0)
            | (16 if self.allow_push else 0)
        )
        return b"".join(
            (
                encode_uint(flags),
                encode_uint(self.fork),
                encode_uint(self.length),
                encode_uint(self.remote_length),
            )
        )

    @classmethod
    def decode(cls, data: Buffer) -> Sync:
        """Parse a sync message."""
        end = len(data)
        flags, pos = decode_uint(data, 0, end)
        fork, pos = decode_uint(data, pos, end)
        length, pos = decode_uint(data, pos, end)
        remote_length, pos = decode_uint(data, pos, end)
        return cls(
            fork,
            length,
            remote_length,
            bool(flags & 1),
            bool(flags & 2),
            bool(flags & 4),
            bool(flags & 8),
            bool(flags & 16),
        )


def encode_handshake(capability_: bytes, seeks: bool = True) -> bytes:
    """The channel's open handshake: flags (bit 0 = seeks) then the 32-byte capability."""
    if len(capability_) != 32:
        raise ValueError(f"capability must be 32 bytes, got {len(capability_)}")
    return encode_uint(1 if seeks else 0) + capability_


def decode_handshake(data: Buffer) -> tuple[bool, bytes]:
    """Parse an open handshake into (seeks, capability)."""
    flags, pos = decode_uint(data, 0)
    cap, _ = decode_fixed32(data, pos)
    return bool(flags & 1), cap


def decode_request_id(data: Buffer) -> int:
    """The id of a request message (flags, id, fork, ...): all a non-storing peer needs."""
    _flags, pos = decode_uint(data, 0)
    request_id, _ = decode_uint(data, pos)
    return request_id


DEFAULT_MAX_NAME_BYTES = 4096
"""Extension names longer than this are not decoded (peersockets' are at most 1036 bytes)."""

NOT_AVAILABLE = 1
"""noData's reason when the block is not here: what hypercore answers for a block it lacks."""


def encode_no_data(request_id: int, reason: int = NOT_AVAILABLE) -> bytes:
    """noData: the answer to a request this peer cannot serve (reason 0 means none given)."""
    if reason:
        return encode_uint(request_id) + b"\x01" + encode_uint(reason)
    return encode_uint(request_id) + b"\x00"


def encode_extension(name: str, message: Buffer) -> list[Buffer]:
    """An extension message as parts: string name, then the raw message."""
    return [encode_string(name), message]


def decode_extension(data: memoryview | bytes, previous_name: str) -> tuple[str, bytes]:
    """Parse an extension message; an empty name means ``previous_name``."""
    name, pos = decode_string(data, 0)
    return (name or previous_name), bytes(data[pos:])


class HypercoreListener(Protocol):
    """What the owner of a hypercore channel hears."""

    def peer_opened(self, channel: HypercoreChannel) -> None:
        """The channel is open both ways with a valid capability."""

    def peer_extension(self, channel: HypercoreChannel, name: str, message: bytes) -> None:
        """An extension message arrived (names already decompressed)."""

    def peer_closed(self, channel: HypercoreChannel, by_remote: bool) -> None:
        """The channel closed, was rejected, or its stream ended."""


class HypercoreChannel:
    """A ``hypercore/alpha`` channel for one core key on one mux (a ChannelHandler)."""

    def __init__(
        self,
        mux: Mux,
        key: bytes,
        handshake_hash: bytes,
        initiator: bool,
        listener: HypercoreListener,
        max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
    ) -> None:
        if len(key) != 32:
            raise ValueError(f"core key must be 32 bytes, got {len(key)}")
        self.key = key
        self.discovery_key = discovery_key(key)
        self.listener = listener
        self._expected_capability = capability(not initiator, key, handshake_hash)
        self.max_name_bytes = max_name_bytes
        """Extension names longer than this are skipped undecoded (nobody listens to them)."""
        self._last_sent = ""
        self._last_received: str | None = ""  # None: the last name was skipped
        self._headers: dict[str, bytes] = {}
        handshake = encode_handshake(capability(initiator, key, handshake_hash))
        self.mux_channel: Channel = mux.open(PROTOCOL, self.discovery_key, handshake, self)

    @property
    def opened(self) -> bool:
        """Whether the channel is open both ways."""
        return self.mux_channel.opened

    @property
    def closed(self) -> bool:
        """Whether the channel is closed (by either side, rejected, or its stream ended)."""
        return self.mux_channel.closed

    def send_extension(self, name: str, message: Buffer) -> None:
        """Send an extension message, compressing a repeated name to ""."""
        if name == self._last_sent:
            header = _REPEATED_NAME
        else:
            cached = self._headers.get(name)
            if cached is None:
                cached = _EXTENSION_TYPE + encode_string(name)
                if len(self._headers) < 64:
                    self._headers[name] = cached
            header = cached
            self._last_sent = name
        channel = self.mux_channel
        channel.mux.send_encoded(channel, header, message)

    def close(self) -> None:
        """Close the channel (the remote sees peer-remove)."""
        self.mux_channel.mux.close(self.mux_channel)

    # -- ChannelHandler ---------------------------------------------------------------

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        try:
            _seeks, remote_capability = decode_handshake(handshake)
        except DecodeError as exc:
            raise CapabilityError(f"malformed hypercore handshake: {handshake.hex()}") from exc
        if not hmac.compare_digest(remote_capability, self._expected_capability):
            raise CapabilityError(
                f"remote sent an invalid replication capability {remote_capability.hex()}"
                f" for discovery key {self.discovery_key.hex()}"
            )
        channel.mux.send(channel, MessageType.SYNC, Sync().encode())
        self.listener.peer_opened(self)

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        if message_type == 9:  # MessageType.EXTENSION, the hot path
            if payload and payload[0] == 0:
                if self._last_received is not None:
                    self.listener.peer_extension(self, self._last_received, bytes(payload[1:]))
                return
            length, _ = decode_uint(payload, 0)
            if length > self.max_name_bytes:
                self._last_received = None  # skipped, and so are its repeats
                return
            name, message = decode_extension(payload, self._last_received or "")
            self._last_received = name
            self.listener.peer_extension(self, name, message)
        elif message_type == MessageType.REQUEST:
            request_id = decode_request_id(payload)
            channel.mux.send(
                channel, MessageType.NO_DATA, encode_no_data(request_id, NOT_AVAILABLE)
            )

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        self.listener.peer_closed(self, by_remote)
