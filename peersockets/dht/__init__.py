"""The Hyperswarm DHT (dht/HYPERDHT.md), wire-compatible with hyperdht 6 / dht-rpc 6.

    from peersockets.dht import DHT
    async with DHT(bootstrap=["127.0.0.1:49737"]) as dht:       # the public DHT by default
        async for peer in dht.lookup(topic): ...                # PeerRecord(public_key, relay_addresses)
        await dht.announce(topic, key_pair)                     # kept fresh until unannounce() or close()
        key = await dht.immutable_put(b"value"); await dht.immutable_get(key)
        await dht.mutable_put(key_pair, b"value", seq=1); await dht.mutable_get(key_pair.public_key)

Layers, bottom up: ``messages`` (dht-rpc's codec), ``rpc`` (tids, retries,
congestion), ``query`` (iterative queries), ``routing`` (the Kademlia table),
``tokens``, ``nat`` (the NAT sampler) and ``records``/``store`` (hyperdht's
values, signatures and what a storing node keeps) are sans-I/O; ``node`` (a
dht-rpc node on UDX sockets) and ``dht`` (the API above) run on asyncio.
"""

from ..errors import (
    DHTError,
    DHTPeerNotFound,
    DHTTimeout,
    HandshakeRefused,
    HolepunchFailed,
    PeerConnectError,
    PeerConnectTimeout,
)
from .dht import DEFAULT_BOOTSTRAP, DHT, MutableValue
from .records import PeerRecord
from .server import DHTServer

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DHT",
    "DHTError",
    "DHTPeerNotFound",
    "DHTServer",
    "DHTTimeout",
    "HandshakeRefused",
    "HolepunchFailed",
    "MutableValue",
    "PeerConnectError",
    "PeerConnectTimeout",
    "PeerRecord",
]
