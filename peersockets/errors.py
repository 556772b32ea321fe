"""Every exception peersockets raises, one family per cause, all under PeersocketsError.

    PeersocketsError
    ├── ProtocolError          the remote broke the protocol; that connection ends
    │   ├── DecodeError, HandshakeError, DecryptionError, FrameTooLarge,
    │   │   ChannelError, CapabilityError, PeerNotReading
    │   └── PeerTimeout        (also a TimeoutError) the remote did not do its part in time
    │       └── HandshakeTimeout, PairTimeout, ReadTimeout, FrameTimeout
    ├── RequestError           the caller asked for something that cannot be done
    │   ├── PeerNotFound, MessageTooLarge, TopicClosed, SwarmClosed, ChannelClosed,
    │   │   SocketClosed, PeersocketsClosed, StreamIdInUse (also a ValueError)
    │   ├── NotEnoughPeers   (also a TimeoutError) wait_for_peers timed out
    │   ├── InvalidKey, InvalidTopic, InvalidSetting   (also ValueErrors)
    │   └── TooManyConnections, ReceiveBudgetExceeded   our own limits, not the
    │                                                   remote's fault
    └── NetworkError           the network failed (also an OSError)
        ├── ConnectError, ListenError   refused, unreachable, name not resolved,
        │                               port out of range, timed out, address in use
        ├── ConnectionClosed   the connection ended; nothing more can be sent on it
        │   └── StreamReset (ECONNRESET), StreamTimeout (also a TimeoutError)   UDX streams
        └── DHTError           a DHT request or query failed
            ├── DHTTimeout     (also a TimeoutError) a DHT request went unanswered
            └── PeerConnectError   connecting to a public key over the DHT failed
                └── DHTPeerNotFound, HandshakeRefused, HolepunchFailed,
                    PeerConnectTimeout (also a TimeoutError)

Every message names the value that was wrong.
"""

from __future__ import annotations

import errno


class PeersocketsError(Exception):
    """Base class of every error raised by peersockets."""


# -- the remote broke the protocol ------------------------------------------------------------


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
    """A protomux control message from the remote was invalid (bad channel id, unknown reject)."""


class CapabilityError(ProtocolError):
    """The remote's replication capability does not prove knowledge of the drive key."""


class PeerTimeout(ProtocolError, TimeoutError):
    """The remote did not do its part within one of the connection's deadlines."""


class HandshakeTimeout(PeerTimeout):
    """The remote did not complete the handshake within handshake_timeout."""


class PairTimeout(PeerTimeout):
    """No protomux channel was open on the connection for pair_timeout (an unused stranger)."""


class ReadTimeout(PeerTimeout):
    """Nothing arrived from the remote for read_timeout while we were reading (a dead peer)."""


class FrameTimeout(PeerTimeout):
    """A frame the remote started did not complete within frame_timeout while we were reading."""


class PeerNotReading(ProtocolError):
    """The remote stopped reading while our unsent bytes passed max_write_buffer."""


# -- the caller asked for something that cannot be done ----------------------------------------


class RequestError(PeersocketsError):
    """The caller asked for something that cannot be done; nothing on the network changed."""


class PeerNotFound(RequestError):
    """No live peer has this peer id (never known, or already departed)."""


class MessageTooLarge(RequestError):
    """A message does not fit in one frame of the wire."""


class TopicClosed(RequestError):
    """The Topic was closed; it can neither send nor receive."""


class SwarmClosed(RequestError):
    """The Swarm is closed; it cannot listen, connect or join."""


class PeersocketsClosed(RequestError):
    """The Peersockets is closed: it cannot join topics, watch or wait for peers."""


class NotEnoughPeers(RequestError, TimeoutError):
    """Peersockets.wait_for_peers timed out before enough peers had joined the drive."""


class ChannelClosed(RequestError):
    """A protomux channel (or its whole stream) is closed: it cannot send or be opened on."""


class InvalidKey(RequestError, ValueError):
    """A drive key that is not 32 bytes in any accepted spelling."""


class InvalidTopic(RequestError, ValueError):
    """A topic name that is empty or too long."""


class StreamIdInUse(RequestError, ValueError):
    """A UDX stream id already taken by a live stream of the same UDX instance."""


class SocketClosed(RequestError):
    """The UDX socket is closed; it cannot send or make streams."""


class InvalidSetting(RequestError, ValueError):
    """A setting out of its range, refused when the object is made (not at first use)."""


def check_at_least(name: str, value: float, minimum: float) -> None:
    """Refuse setting ``name`` with InvalidSetting unless ``value >= minimum``."""
    if not value >= minimum:
        raise InvalidSetting(f"{name} must be >= {minimum:g}, got {value!r}")


class ReceiveBudgetExceeded(RequestError):
    """All connections together held twice max_receive_buffer unhandled; one that wanted
    more was ended. Our own limit, like TooManyConnections."""


class TooManyConnections(RequestError):
    """The Swarm already holds max_connections connections; a new one was refused.

    Our own limit, not the remote's fault: the refused connection records it as its error.
    """


# -- the network failed --------------------------------------------------------------------------


class NetworkError(PeersocketsError, OSError):
    """The network failed; ``errno`` is the operating system's code where there is one."""


class ConnectError(NetworkError):
    """A connection could not be made: refused, unreachable, name not resolved, timed out."""


class ListenError(NetworkError):
    """A listener could not be opened: address in use, not available, port out of range."""


class ConnectionClosed(NetworkError):
    """The connection is closed; nothing more can be sent on it."""


class StreamReset(ConnectionClosed):
    """The remote aborted the UDX stream (a DESTROY packet); ``errno`` is ECONNRESET."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ECONNRESET, message)


class StreamTimeout(ConnectionClosed, TimeoutError):
    """A UDX stream's data went unacknowledged through every retransmission; ``errno`` is ETIMEDOUT."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ETIMEDOUT, message)


class DHTError(NetworkError):
    """A DHT operation failed: no node answered, too few nodes responded, the node closed."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EHOSTUNREACH, message)


class DHTTimeout(DHTError, TimeoutError):
    """A DHT request went unanswered through all its sends."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, errno.ETIMEDOUT, message)


class PeerConnectError(DHTError):
    """Connecting to a public key over the DHT failed; ``code`` is hyperdht's name for why."""

    code = "PEER_CONNECTION_FAILED"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class DHTPeerNotFound(PeerConnectError):
    """No DHT node holds an announcement of the key: nobody listens on it (PEER_NOT_FOUND)."""

    code = "PEER_NOT_FOUND"


class HandshakeRefused(PeerConnectError):
    """The peer was found but no handshake completed: it refused, is incompatible, or its
    relays did not answer (PEER_CONNECTION_FAILED, SERVER_ERROR, SERVER_INCOMPATIBLE)."""


class HolepunchFailed(PeerConnectError):
    """The handshake completed but no path between the peers opened (CANNOT_HOLEPUNCH,
    HOLEPUNCH_ABORTED, HOLEPUNCH_PROBE_TIMEOUT, HOLEPUNCH_DOUBLE_RANDOMIZED_NATS, ...)."""

    code = "HOLEPUNCH_ABORTED"


class PeerConnectTimeout(PeerConnectError, TimeoutError):
    """Connecting to a public key took longer than the timeout given."""

    code = "CONNECT_TIMEOUT"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        self.errno = errno.ETIMEDOUT
