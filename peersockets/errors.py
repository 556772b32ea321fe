"""The exception hierarchy: every error peersockets raises derives from PeersocketsError."""

from __future__ import annotations


class PeersocketsError(Exception):
    """Base class of every error raised by peersockets."""


class ProtocolError(PeersocketsError):
    """The remote peer broke the wire protocol; only that one connection is ended."""


class DecodeError(ProtocolError):
    """Bytes from the network could not be decoded (truncated or malformed)."""


class HandshakeError(ProtocolError):
    """The Noise handshake or the secret-stream header exchange failed."""


class DecryptionError(ProtocolError):
    """An encrypted frame failed authentication: tampered, replayed or out of order."""


class FrameTooLarge(ProtocolError):
    """A frame's length prefix exceeds the configured maximum frame size."""


class ChannelError(ProtocolError):
    """A protomux control message was invalid (bad channel id, unknown reject, ...)."""


class CapabilityError(ProtocolError):
    """The remote's replication capability does not prove knowledge of the drive key."""


class HandshakeTimeout(ProtocolError, TimeoutError):
    """The remote did not complete the handshake in time."""


class PeerNotReading(ProtocolError):
    """The remote stopped reading while our unsent bytes passed max_write_buffer."""


class TooManyConnections(ProtocolError):
    """The Swarm already holds max_connections connections; a new one was refused."""


class ConnectionClosed(PeersocketsError):
    """The connection is closed; nothing more can be sent on it."""


class PeerNotFound(PeersocketsError):
    """No live peer has this peer id (never known, or already departed)."""


class MessageTooLarge(PeersocketsError):
    """A message does not fit in one frame of the wire."""


class TopicClosed(PeersocketsError):
    """The Topic was closed; it can neither send nor receive."""
