"""peersockets: topic messages with the peers of a hyperdrive, over the real Hypercore wire."""

from .api import InvalidTopic, PeerEvent, PeerEvents, Peersockets, Topic, TopicMessage
from .errors import (
    ConnectionClosed,
    MessageTooLarge,
    PeerNotFound,
    PeersocketsError,
    ProtocolError,
    TopicClosed,
)
from .keys import InvalidKey, parse_drive_key
from .swarm import Swarm, SwarmClosed
from .wire.crypto import KeyPair, discovery_key

__version__ = "0.1.0"

__all__ = [
    "ConnectionClosed",
    "InvalidKey",
    "InvalidTopic",
    "KeyPair",
    "MessageTooLarge",
    "PeerEvent",
    "PeerEvents",
    "PeerNotFound",
    "Peersockets",
    "PeersocketsError",
    "ProtocolError",
    "Swarm",
    "SwarmClosed",
    "Topic",
    "TopicClosed",
    "TopicMessage",
    "__version__",
    "discovery_key",
    "parse_drive_key",
]
