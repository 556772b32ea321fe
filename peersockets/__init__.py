"""peersockets: topic messages with the peers of a hyperdrive, over the real Hypercore wire."""

from .errors import (
    MessageTooLarge,
    PeerNotFound,
    PeersocketsError,
    ProtocolError,
    TopicClosed,
)
from .wire.crypto import KeyPair

__version__ = "0.1.0"

__all__ = [
    "KeyPair",
    "MessageTooLarge",
    "PeerNotFound",
    "PeersocketsError",
    "ProtocolError",
    "TopicClosed",
    "__version__",
]
