"""peersockets: topic messages with the peers of a hyperdrive, over the real Hypercore wire.

A ``Swarm`` is this process's identity and its connections (TCP, in-memory);
``Peersockets(swarm, drive_key)`` binds it to one drive, whose peers exchange
messages on named topics (``join(topic)`` -> ``Topic``) and whose joins and
leaves ``watch()`` reports. Errors come in three families under
``PeersocketsError``: ``ProtocolError`` (the remote broke the protocol),
``RequestError`` (the call cannot be done) and ``NetworkError`` (the network
failed; also an ``OSError``).
"""

from .api import PeerEvent, PeerEvents, Peersockets, Topic, TopicMessage
from .errors import (
    ConnectError,
    ConnectionClosed,
    InvalidKey,
    InvalidSetting,
    InvalidTopic,
    ListenError,
    MessageTooLarge,
    NetworkError,
    PeerNotFound,
    PeersocketsError,
    ProtocolError,
    RequestError,
    SocketClosed,
    StreamIdInUse,
    StreamReset,
    StreamTimeout,
    SwarmClosed,
    TooManyConnections,
    TopicClosed,
)
from .keys import parse_drive_key
from .swarm import Swarm
from .wire.crypto import KeyPair, discovery_key

__version__ = "0.1.0"

__all__ = [
    "ConnectError",
    "ConnectionClosed",
    "InvalidKey",
    "InvalidSetting",
    "InvalidTopic",
    "KeyPair",
    "ListenError",
    "MessageTooLarge",
    "NetworkError",
    "PeerEvent",
    "PeerEvents",
    "PeerNotFound",
    "Peersockets",
    "PeersocketsError",
    "ProtocolError",
    "RequestError",
    "SocketClosed",
    "StreamIdInUse",
    "StreamReset",
    "StreamTimeout",
    "Swarm",
    "SwarmClosed",
    "TooManyConnections",
    "Topic",
    "TopicClosed",
    "TopicMessage",
    "__version__",
    "discovery_key",
    "parse_drive_key",
]
