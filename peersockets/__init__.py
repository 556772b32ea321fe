"""peersockets: topic messages with the peers of a hyperdrive, over the real Hypercore wire.

A Python program joins a drive's swarm and exchanges messages on named topics
with the drive's other peers, JavaScript hyperdrive apps included: the same
Noise handshake, secret-stream, protomux channels and hypercore extension
messages, found on the Hyperswarm DHT by the drive key alone.

    import asyncio
    from peersockets import Peersockets, Swarm

    async def main(drive_key: str) -> None:
        async with Swarm() as swarm, Peersockets(swarm, drive_key) as ps:
            chat = ps.join("chat")
            await ps.wait_for_peers(1)               # found on the DHT
            await chat.broadcast(b"hello")
            async for message in chat:               # TopicMessage(peer_id, message, public_key)
                print(message.peer_id, message.message)

The pieces:

- ``Swarm``: this process's identity (an Ed25519 ``KeyPair``) and its
  connections: found on the Hyperswarm DHT (the default), by TCP address
  (``listen``/``connect``), or in memory (``peersockets.testing``).
- ``Peersockets(swarm, drive_key)``: one drive; ``join(topic)`` gives a
  ``Topic`` (``send``, ``broadcast``, ``async for``, ``on_message``),
  ``watch()`` gives ``PeerEvents`` (joins and leaves), ``peers`` the live ids.
- Keys: ``parse_drive_key`` reads every spelling (hex, z-base-32,
  ``hyper://``), ``new_drive_key()`` makes one, ``discovery_key`` derives the
  swarm topic.
- Errors come in three families under ``PeersocketsError``: ``ProtocolError``
  (the remote broke the protocol), ``RequestError`` (the call cannot be done)
  and ``NetworkError`` (the network failed; also an ``OSError``); the tree is
  in ``peersockets.errors``.
- Subpackages: ``peersockets.dht`` (the Hyperswarm DHT: lookups, records,
  connect by public key), ``peersockets.udx`` (reliable streams over UDP),
  ``peersockets.testing`` (in-memory networks, a local DHT, pytest fixtures).
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
    NotEnoughPeers,
    PeerNotFound,
    PeersocketsClosed,
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
from .keys import new_drive_key, parse_drive_key
from .swarm import Swarm
from .wire.crypto import KeyPair, discovery_key

__version__ = "0.1.0"
"""This package's version: the one place it is written (pyproject.toml reads it from here)."""

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
    "NotEnoughPeers",
    "PeerEvent",
    "PeerEvents",
    "PeerNotFound",
    "Peersockets",
    "PeersocketsClosed",
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
    "new_drive_key",
    "parse_drive_key",
]
