"""The Hyperswarm DHT's public API: find peers of a topic, announce, store values (HYPERDHT.md 2).

``DHT`` runs a dht-rpc node (``node.py``) and speaks hyperdht's commands over
it: LOOKUP, ANNOUNCE and UNANNOUNCE (signed for each storing node),
FIND_PEER, IMMUTABLE_PUT/GET and MUTABLE_PUT/GET, each a query towards the
target followed, for writes, by a commit to the closest storing nodes with
the tokens they gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import nacl.bindings as sodium

from ..connection import Connection
from ..errors import DecodeError, DHTError, InvalidKey, InvalidSetting, PeerConnectTimeout
from ..udx import UDXSocket
from ..wire.crypto import KeyPair, blake2b_256
from . import records as r
from .connect import Connector
from .messages import Address, ErrorCode, Response
from .node import Incoming, RPCNode, SocketBinder
from .query import Reply
from .ratelimit import DEFAULT_RATE
from .router import DEFAULT_RELAY_RATE, Router
from .rpc import ATTEMPT_TIMEOUT
from .server import ConnectionHandler, ConnectionMaker, DHTServer, FirewallCheck, default_connection
from .store import RecordStore
from .store import Reply as StoreReply

__all__ = ["DEFAULT_BOOTSTRAP", "DEFAULT_CONNECT_TIMEOUT", "DHT", "MutableValue", "PeerRecord"]

log = logging.getLogger(__name__)

PeerRecord = r.PeerRecord

DEFAULT_BOOTSTRAP: Final = (
    "88.99.3.86@node1.hyperdht.org:49737",
    "142.93.90.113@node2.hyperdht.org:49737",
    "138.68.147.8@node3.hyperdht.org:49737",
)
"""The public Hyperswarm DHT's bootstrap nodes (hyperdht's lib/constants.js)."""

CommitMaker = Callable[[Reply], "asyncio.Future[tuple[Response, Address]] | None"]
"""Makes the commit request for one of the closest storing nodes (None: skip that node)."""

ADAPTIVE_AFTER: Final = 20 * 60.0
"""Seconds after start when a node with ``ephemeral=None`` tests for persistence (240 ticks)."""

REANNOUNCE: Final = 5 * 60.0
"""Seconds between refreshes of an announcement (records live 13-26 minutes on the nodes)."""

RELAY_CACHE_SIZE: Final = 512
"""Peers whose relays are remembered from the last connect (hyperdht's relayAddresses cache)."""

DEFAULT_CONNECT_TIMEOUT: Final = 30.0
"""Seconds ``connect`` may take before PeerConnectTimeout (finding, handshake, holepunch)."""


@dataclass(frozen=True, slots=True)
class MutableValue:
    """A mutable value found on the DHT: its sequence number, bytes and signature."""

    seq: int
    """The sequence number: a put with a higher one replaces this value."""
    value: bytes
    """The value's bytes."""
    signature: bytes
    """The Ed25519 signature of (seq, value) by the key the value is stored under."""


class DHT:
    """A node of the Hyperswarm DHT; an async context manager.

    ``bootstrap``: "host:port" strings or (host, port) tuples (the public DHT by
    default; ``[]`` starts a new network). ``host``/``port``: the UDP socket.
    ``ephemeral``: True for a client node that never stores anything; False for
    a persistent node whose bound address is its public address (a bootstrap
    node, a local network); None (the default, as hyperswarm) starts ephemeral
    and, ``adaptive_after`` seconds later (20 minutes), becomes persistent if
    its public address is consistent and reachable (dht-rpc's firewall check).
    ``attempt_timeout``: seconds each send of a request waits (dht-rpc's 1 s; a
    request is sent 4 times, a query's 6). ``request_rate``: requests a second
    each source (host, port) may make after a burst of twice that; the rest get
    no answer (8192 sources are remembered, the least recent forgotten first).
    ``relay_rate``: PEER_HANDSHAKE/PEER_HOLEPUNCH messages a second this node
    relays towards one host for others. ``key_pair``: the identity ``connect``
    and ``listen`` use by default (a new one if not given). ``bind_socket``: how
    UDP sockets are bound (``UDXSocket.bind``; tests pass a simulated NAT's).
    ``quick_firewall``: test during bootstrap whether strangers can reach us (False:
    stay firewalled, as hyperdht's ``quickFirewall: false``).
    """

    def __init__(
        self,
        bootstrap: Sequence[str | tuple[str, int]] = DEFAULT_BOOTSTRAP,
        host: str = "0.0.0.0",
        port: int = 0,
        ephemeral: bool | None = None,
        adaptive_after: float = ADAPTIVE_AFTER,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        request_rate: float = DEFAULT_RATE,
        relay_rate: float = DEFAULT_RELAY_RATE,
        key_pair: KeyPair | None = None,
        bind_socket: SocketBinder = UDXSocket.bind,
        quick_firewall: bool = True,
    ) -> None:
        persistent = ephemeral is False
        self.node = RPCNode(
            bootstrap=bootstrap,
            host=host,
            port=port,
            persistent=persistent,
            adaptive_after=adaptive_after if ephemeral is None else None,
            attempt_timeout=attempt_timeout,
            request_rate=request_rate,
            bind_socket=bind_socket,
            quick_firewall=quick_firewall,
        )
        self.default_key_pair = key_pair or KeyPair.generate()
        """The key pair ``connect`` and ``listen`` use when given none."""
        self.router = Router(self.node, self._forward, relay_rate)
        """Routes PEER_HANDSHAKE and PEER_HOLEPUNCH for our servers and, when persistent, others'."""
        self._servers: set[DHTServer] = set()
        self._connectors: set[Connector] = set()
        self._relay_cache: dict[bytes, tuple[Address, ...]] = {}
        """Where each peer we connected to had its announcement (tried first next time)."""
        self.connects: Counter[str] = Counter()
        """Connections made by ``connect``, by path: "open", "passive", "relay", "lan", "holepunch"."""
        self._store: RecordStore | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._announcing: dict[tuple[bytes, bytes], asyncio.Task[None]] = {}
        self._opened = False

    async def __aenter__(self) -> DHT:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Bind the sockets and bootstrap (fill the routing table)."""
        if self._opened:
            return
        self._opened = True
        self.node.on_persistent = self._start_storing
        self.node.on_ephemeral = self._stop_storing
        self.node.on_request = self._on_request
        await self.node.open()
        if self.node.persistent:
            self._start_storing()
        if self.node.bootstrap_nodes:
            await self.node.bootstrap()

    @property
    def address(self) -> Address:
        """(host, port) of this node's UDP socket."""
        return self.node.address

    @property
    def persistent(self) -> bool:
        """Whether this node stores records for others (and is in their routing tables)."""
        return self.node.persistent

    def _start_storing(self) -> None:
        if self._store is None:
            self._store = RecordStore(asyncio.get_running_loop().time())
            self._arm_expiry()

    def _stop_storing(self) -> None:
        """Ephemeral again: storage commands are answered as unknown, and what was stored is dropped."""
        self._store = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _arm_expiry(self) -> None:
        """Rotate the store's caches on time, so an idle node frees expired records too."""
        store = self._store
        if store is None:
            return
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_at(store.get_timer(), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self._store is not None:
            self._store.handle_timer(asyncio.get_running_loop().time())
            self._arm_expiry()

    @property
    def stats(self) -> dict[str, int]:
        """Counters (requests in and out, timeouts, refused), the table's size, and what is stored."""
        node = self.node
        stats = dict(node.stats)
        stats["nodes"] = len(node.table)
        stats["refused"] = node.limiter.refused
        if self._store is not None:
            self._store.handle_timer(asyncio.get_running_loop().time())
            stats.update(self._store.sizes())
        return stats

    async def close(self) -> None:
        """Stop connects under way, close the servers (they unannounce), stop refreshing
        announcements, close the sockets (and the connections on them)."""
        for connector in list(self._connectors):
            connector.stop()
        for server in list(self._servers):
            with contextlib.suppress(DHTError):
                await server.close()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        tasks = list(self._announcing.values())
        self._announcing.clear()
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)  # a cancel of close itself goes on
        finally:
            await self.node.close()

    # ------------------------------------------------------------------ storing

    def _forward(self, target: bytes) -> Address | None:
        """Where a server that self-announced ``target`` to us announced from."""
        if self._store is None:
            return None
        forward = self._store.forward(target, asyncio.get_running_loop().time())
        return forward.relay if forward is not None else None

    def _on_request(self, node: RPCNode, incoming: Incoming) -> Awaitable[None] | None:
        """The connect commands go to the router; a persistent node answers hyperdht's storage
        commands from its RecordStore; an ephemeral one calls them unknown."""
        request = incoming.request
        command = request.command
        if command == r.Command.PEER_HANDSHAKE:
            return self.router.on_handshake(incoming)
        if command == r.Command.PEER_HOLEPUNCH:
            return self.router.on_holepunch(incoming)
        store = self._store
        if store is None:
            node.reply(incoming, closer_nodes=True, error=ErrorCode.UNKNOWN_COMMAND)
            return None
        value = request.value
        now = asyncio.get_running_loop().time()
        reply: StoreReply | None
        try:
            if command == r.Command.LOOKUP:
                reply = store.lookup(request.target, now)
            elif command == r.Command.FIND_PEER:
                reply = store.find_peer(request.target, now)
            elif command in (r.Command.ANNOUNCE, r.Command.UNANNOUNCE):
                if value is None:
                    return None
                announce = r.decode_announce(value)
                if command == r.Command.ANNOUNCE:
                    reply = store.announce(
                        request.target, node.id, request.token, incoming.source, announce, now,
                        unix_ms=int(time.time() * 1000),
                    )
                else:
                    reply = store.unannounce(request.target, node.id, request.token, announce, now)
            elif command == r.Command.MUTABLE_PUT:
                if value is None:
                    return None
                reply = store.mutable_put(request.target, request.token, r.decode_mutable_put_request(value), now)
            elif command == r.Command.MUTABLE_GET:
                seq = r.decode_mutable_get_request(value) if value is not None else None
                reply = store.mutable_get(request.target, seq, now)
            elif command == r.Command.IMMUTABLE_PUT:
                reply = store.immutable_put(request.target, request.token, value, now)
            elif command == r.Command.IMMUTABLE_GET:
                reply = store.immutable_get(request.target, now)
            else:
                node.reply(incoming, closer_nodes=True, error=ErrorCode.UNKNOWN_COMMAND)
                return None
        except DecodeError as exc:
            log.debug("no reply to a malformed %s from %s: %s", command, incoming.source, exc)
            return None
        if reply is not None:
            node.reply(
                incoming, token=reply.token, closer_nodes=reply.closer_nodes, error=reply.error, value=reply.value
            )
        return None

    # ------------------------------------------------------------------ connections

    async def connect(
        self,
        public_key: bytes,
        *,
        key_pair: KeyPair | None = None,
        relay_addresses: Sequence[Address] = (),
        local_connection: bool = True,
        timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        make_connection: ConnectionMaker = default_connection,
    ) -> Connection:
        """An established ``Connection`` to the peer listening on ``public_key``.

        ``relay_addresses``: nodes known to hold its announcement (tried first).
        ``local_connection``: offer and try LAN addresses. ``make_connection(key_pair,
        initiator, handshake)`` makes the Connection (a Swarm passes its own). Raises DHTPeerNotFound,
        HandshakeRefused, HolepunchFailed or PeerConnectTimeout (all PeerConnectErrors).
        """
        key = _check_target(public_key, "public_key")
        if not sodium.crypto_core_ed25519_is_valid_point(key):
            raise InvalidKey(f"public_key {key.hex()} is not an Ed25519 public key nobody could listen on")
        if timeout is not None and timeout <= 0:
            raise InvalidSetting(f"timeout must be > 0 seconds or None, got {timeout!r}")
        known = tuple(relay_addresses) or self._relay_cache.get(key, ())
        forward = self._forward(blake2b_256(key))
        if forward is not None and not relay_addresses:
            known = (forward,)  # it announced to us: we are its relay
        connector = Connector(
            self.node,
            key_pair or self.default_key_pair,
            key,
            relay_addresses=known,
            local_connection=local_connection,
            make_connection=make_connection,
        )
        deadline = asyncio.timeout(timeout)
        self._connectors.add(connector)
        try:
            async with deadline:
                connection = await connector.run()
        except TimeoutError:
            if not deadline.expired():
                raise
            raise PeerConnectTimeout(f"connecting to peer {key.hex()} took more than {timeout} s") from None
        finally:
            self._connectors.discard(connector)
        self.connects[connector.path] += 1
        if connector.learned_relays:
            self._relay_cache.pop(key, None)
            self._relay_cache[key] = connector.learned_relays
            while len(self._relay_cache) > RELAY_CACHE_SIZE:
                del self._relay_cache[next(iter(self._relay_cache))]
        return connection

    async def listen(
        self,
        key_pair: KeyPair | None = None,
        on_connection: ConnectionHandler | None = None,
        *,
        firewall: FirewallCheck | None = None,
        share_local_address: bool = True,
        holepunch: bool = True,
        make_connection: ConnectionMaker = default_connection,
    ) -> DHTServer:
        """Accept connections to ``key_pair`` (the default key pair if None): announces it and
        returns the listening ``DHTServer``; ``on_connection(connection)`` gets each one."""
        server = DHTServer(
            self,
            on_connection,
            firewall=firewall,
            share_local_address=share_local_address,
            holepunch=holepunch,
            make_connection=make_connection,
        )
        self._servers.add(server)
        try:
            await server.listen(key_pair or self.default_key_pair)
        except BaseException:
            self._servers.discard(server)
            raise
        return server

    # ------------------------------------------------------------------ reading

    async def lookup(self, topic: bytes) -> AsyncIterator[r.PeerRecord]:
        """The peers announced on ``topic`` (32 bytes), each public key once, as they are found."""
        target = _check_target(topic, "topic")
        seen: set[bytes] = set()
        async for reply in self.node.query(target, r.Command.LOOKUP):
            value = reply.response.value
            if value is None:
                continue
            try:
                found = r.decode_lookup_reply(value)
            except DecodeError:
                continue
            for peer in found.peers:
                if peer.public_key not in seen:
                    seen.add(peer.public_key)
                    yield peer

    async def find_peer(self, public_key: bytes) -> r.PeerRecord | None:
        """The record a server announced for its own key (its relays), or None."""
        target = blake2b_256(_check_target(public_key, "public_key"))
        async for reply in self.node.query(target, r.Command.FIND_PEER):
            if reply.response.value is None:
                continue
            try:
                peer = r.decode_peer_record(reply.response.value)
            except DecodeError:
                continue
            if peer.public_key == public_key:
                return peer
        return None

    async def immutable_get(self, key: bytes) -> bytes | None:
        """The value whose BLAKE2b-256 hash is ``key``, or None."""
        target = _check_target(key, "key")
        async for reply in self.node.query(target, r.Command.IMMUTABLE_GET):
            value = reply.response.value
            if value is not None and blake2b_256(value) == target:
                return value
        return None

    async def mutable_get(self, public_key: bytes, seq: int = 0) -> MutableValue | None:
        """The newest value signed by ``public_key`` with a sequence number >= ``seq``, or None."""
        target = blake2b_256(_check_target(public_key, "public_key"))
        best: MutableValue | None = None
        async for reply in self.node.query(target, r.Command.MUTABLE_GET, value=r.encode_mutable_get_request(seq)):
            if reply.response.value is None:
                continue
            try:
                got = r.decode_mutable_get_response(reply.response.value)
            except DecodeError:
                continue
            if got.seq < seq or (best is not None and got.seq <= best.seq):
                continue
            if r.verify_mutable(got.signature, got.seq, got.value, public_key):
                best = MutableValue(got.seq, got.value, got.signature)
        return best

    # ------------------------------------------------------------------ writing

    async def _query_then_commit(
        self, target: bytes, command: int, value: bytes | None, commit: CommitMaker
    ) -> int:
        """Run the query, then send one commit per closest storing node; how many succeeded."""
        run = self.node.query(target, command, value=value)
        async for _reply in run:
            pass
        closest = run.closest_replies  # this run's own: other queries may overlap it
        futures = []
        for reply in closest:
            request = commit(reply)
            if request is not None:
                futures.append(request)
        results = await asyncio.gather(*futures, return_exceptions=True)
        succeeded = sum(1 for result in results if not isinstance(result, BaseException) and result[0].error == 0)
        if not succeeded:
            raise DHTError(
                f"too few nodes responded for target {target.hex()}: "
                f"{len(closest)} storing nodes found, {len(futures)} asked, none accepted"
            )
        return succeeded

    async def immutable_put(self, value: bytes) -> bytes:
        """Store ``value`` on the nodes closest to its hash; returns the hash (its key)."""
        value = bytes(value)
        target = blake2b_256(value)

        def commit(reply: Reply) -> asyncio.Future[tuple[Response, Address]] | None:
            token = reply.response.token
            if token is None:
                return None
            return self.node.request(reply.address, r.Command.IMMUTABLE_PUT, target=target, value=value, token=token)

        await self._query_then_commit(target, r.Command.IMMUTABLE_GET, None, commit)
        return target

    async def mutable_put(self, key_pair: KeyPair, value: bytes, seq: int = 0) -> MutableValue:
        """Store ``value`` at ``seq``, signed by ``key_pair``, on the nodes closest to H(public key)."""
        value = bytes(value)
        target = blake2b_256(key_pair.public_key)
        signature = r.sign_mutable(key_pair, seq, value)
        signed = r.encode_mutable_put_request(r.MutablePutRequest(key_pair.public_key, seq, value, signature))

        def commit(reply: Reply) -> asyncio.Future[tuple[Response, Address]] | None:
            token = reply.response.token
            if token is None:
                return None
            return self.node.request(reply.address, r.Command.MUTABLE_PUT, target=target, value=signed, token=token)

        await self._query_then_commit(target, r.Command.MUTABLE_GET, r.encode_mutable_get_request(0), commit)
        return MutableValue(seq, value, signature)

    async def announce(self, topic: bytes, key_pair: KeyPair, relay_addresses: Sequence[Address] = ()) -> None:
        """Announce ``key_pair`` on ``topic`` now, and keep it fresh until ``unannounce`` or close."""
        target = _check_target(topic, "topic")
        await self._announce_once(target, key_pair, tuple(relay_addresses))
        slot = (target, key_pair.public_key)
        previous = self._announcing.pop(slot, None)
        if previous is not None:
            previous.cancel()
        self._announcing[slot] = asyncio.ensure_future(self._refresh(target, key_pair, tuple(relay_addresses)))

    async def _announce_once(self, target: bytes, key_pair: KeyPair, relays: tuple[Address, ...]) -> int:
        peer = r.PeerRecord(key_pair.public_key, relays)
        commit = self.signed_commit(target, key_pair, peer, r.Command.ANNOUNCE)
        return await self._query_then_commit(target, r.Command.LOOKUP, None, commit)

    def signed_commit(self, target: bytes, key_pair: KeyPair, peer: r.PeerRecord, command: int) -> CommitMaker:
        """ANNOUNCE or UNANNOUNCE to a storing node, signed for its id and the token it gave."""
        sign = r.sign_announce if command == r.Command.ANNOUNCE else r.sign_unannounce

        def commit(reply: Reply) -> asyncio.Future[tuple[Response, Address]] | None:
            token = reply.response.token
            if token is None or reply.id is None:
                return None
            signature = sign(key_pair, target, reply.id, token, peer)
            value = r.encode_announce(r.Announce(peer=peer, signature=signature))
            return self.node.request(reply.address, command, target=target, value=value, token=token)

        return commit

    async def _refresh(self, target: bytes, key_pair: KeyPair, relays: tuple[Address, ...]) -> None:
        while True:
            await asyncio.sleep(REANNOUNCE)
            try:
                await self._announce_once(target, key_pair, relays)
            except DHTError as exc:
                log.warning("refreshing the announcement of %s failed: %s", target.hex()[:16], exc)

    async def unannounce(self, topic: bytes, key_pair: KeyPair) -> None:
        """Stop refreshing and remove ``key_pair``'s announcement from the nodes that hold it."""
        target = _check_target(topic, "topic")
        task = self._announcing.pop((target, key_pair.public_key), None)
        if task is not None:
            task.cancel()
            # a refresh in the middle of its commit stops before we unannounce (gather: a
            # cancel of unannounce itself is not swallowed)
            await asyncio.gather(task, return_exceptions=True)
        peer = r.PeerRecord(key_pair.public_key, ())
        commit = self.signed_commit(target, key_pair, peer, r.Command.UNANNOUNCE)
        await self._query_then_commit(target, r.Command.LOOKUP, None, commit)


def _check_target(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != 32:
        shown = value.hex() if isinstance(value, bytes | bytearray) else repr(value)
        raise InvalidKey(f"{name} must be 32 bytes, got {shown}")
    return bytes(value)
