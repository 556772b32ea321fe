"""Swarm: this process's identity on the network, its transports, connections and discovery."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol, TypeVar

from .budget import ReceiveBudget
from .connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_KEEPALIVE,
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_WRITE_BUFFER,
    DEFAULT_PAIR_TIMEOUT,
    READ_TIMEOUT_KEEPALIVES,
    Connection,
)
from .dht import DHT
from .errors import (
    ConnectError,
    HandshakeTimeout,
    InvalidKey,
    ListenError,
    NetworkError,
    PeersocketsError,
    SwarmClosed,
    TooManyConnections,
    check_at_least,
)
from .hyperswarm import DEFAULT_MAX_PEERS, DHTDiscovery, DiscoveryEvent, PeerFirewall
from .wire.crypto import KeyPair
from .wire.noise import HandshakeResult
from .wire.secretstream import MAX_FRAME, check_max_frame_size

log = logging.getLogger(__name__)

NetworkErrorT = TypeVar("NetworkErrorT", bound=NetworkError)

DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_RECEIVE_BUFFER = 64 * 1024 * 1024

ConnectionListener = Callable[[Connection], None]


class Discovery(Protocol):
    """A way of finding peers for a discovery key (in-memory now; LAN and DHT later)."""

    def join(self, swarm: Swarm, discovery_key: bytes) -> None:
        """Start finding and connecting peers that joined ``discovery_key``."""

    def leave(self, swarm: Swarm, discovery_key: bytes) -> None:
        """Stop announcing and looking up ``discovery_key``."""


class Swarm:
    """Owns a key pair, TCP listeners and the live connections, one per remote public key."""

    def __init__(
        self,
        key_pair: KeyPair | None = None,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        keepalive: float = DEFAULT_KEEPALIVE,
        max_frame_size: int = MAX_FRAME,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        pair_timeout: float = DEFAULT_PAIR_TIMEOUT,
        read_timeout: float | None = None,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        max_receive_buffer: int = DEFAULT_MAX_RECEIVE_BUFFER,
        discovery: Discovery | None = None,
        dht: bool | DHT = True,
        bootstrap: Sequence[str | tuple[str, int]] | None = None,
        max_peers: int = DEFAULT_MAX_PEERS,
        firewall: PeerFirewall | None = None,
    ) -> None:
        """Options, each a limit against misbehaving peers:

        - handshake_timeout: seconds a new connection has to finish the Noise
          handshake before it is dropped (default 10; 0 disables).
        - keepalive: seconds of send silence after which an empty frame is sent
          (5; checked when due, so after up to twice this).
        - max_frame_size: largest encrypted frame accepted, bytes (the wire's
          16 MiB - 1); a larger length prefix ends the connection at once.
        - max_channels: live protomux channels on one connection that a
          remote's opens may make us hold (1024); an open past it is rejected
          and keeps no state. Answers to our own opens always pair.
        - max_connections: connections (incoming and outgoing, handshaking or
          not) this swarm holds at once (4096). When full, a new incoming one
          evicts the oldest incoming connection with no channel open; if every
          one has a channel open, the newcomer is refused.
        - max_write_buffer: unsent bytes a connection may pile up because the
          remote does not read before it is ended with PeerNotReading (64 MiB).
        - close_timeout: seconds a closing connection keeps reading until the
          remote ends its side too (so nothing it sent is lost) before it is
          aborted (default 5; 0 waits as long as the remote takes).
        - pair_timeout: seconds an established connection may go without any
          channel open before it is ended with PairTimeout (default 10; 0
          disables): a stranger cannot hold a slot. Raw connections (with a
          message_handler) are exempt.
        - read_timeout: seconds without a byte from the remote, while we read,
          before the connection is ended with ReadTimeout (checked when due, so
          up to twice this; default None: 3 x keepalive, so 15 s; 0 disables). Peers send keepalives: JavaScript's
          every 5 s. Keep it above the keepalive of every peer.
        - frame_timeout: seconds a frame may take to arrive in full, while we
          read, before the connection is ended with FrameTimeout (default 30;
          0 disables): an unfinished frame cannot pin its buffer.
        - max_receive_buffer: bytes of unfinished frames and received but
          unhandled messages that all connections together may hold past 64 KiB
          each (default 64 MiB); over it, reading pauses on the connections that
          want more, except one, until it falls back.
        Until a channel has opened on a connection, a frame it leaves unfinished
        may be at most 1 MiB (connection.MAX_UNPAIRED_FRAME), whatever
        max_frame_size says.

        Discovery on the Hyperswarm DHT (hyperswarm's behaviour):

        - dht: True (the default) starts a DHT node on the first join, on the public
          DHT unless ``bootstrap`` names other nodes; False: no DHT (TCP and memory
          only; a swarm that never joins sends nothing either way); or a ``DHT`` of
          your own (not opened yet, or open), which the swarm then uses and closes.
        - bootstrap: "host:port" or (host, port) of the DHT to join (a local testnet).
        - max_peers: connections this swarm dials to while it has fewer (64, as
          hyperswarm; multiplied by 2-4 when peers were joined with join_peer).
        - firewall(remote_public_key) -> True refuses a peer: never dialled, never
          accepted (on the DHT).
        """
        for name, value, minimum in (
            ("handshake_timeout", handshake_timeout, 0),
            ("keepalive", keepalive, 0),
            ("max_channels", max_channels, 1),
            ("max_connections", max_connections, 1),
            ("max_write_buffer", max_write_buffer, 1),
            ("close_timeout", close_timeout, 0),
            ("pair_timeout", pair_timeout, 0),
            ("read_timeout", 0 if read_timeout is None else read_timeout, 0),
            ("frame_timeout", frame_timeout, 0),
            ("max_receive_buffer", max_receive_buffer, 1),
        ):
            check_at_least(name, value, minimum)
        self.key_pair = key_pair if key_pair is not None else KeyPair.generate()
        """This swarm's identity (a new one unless given)."""
        self.handshake_timeout = handshake_timeout
        """Setting: seconds a new connection has to finish the handshake."""
        self.keepalive = keepalive
        """Setting: seconds of send silence before an empty frame is sent."""
        self.max_frame_size = check_max_frame_size(max_frame_size)
        """Setting: the largest encrypted frame accepted, in bytes."""
        self.max_channels = max_channels
        """Setting: live channels a remote's opens may make one connection hold."""
        self.max_connections = max_connections
        """Setting: connections this swarm holds at once."""
        self.max_write_buffer = max_write_buffer
        """Setting: unsent bytes a connection may hold before PeerNotReading."""
        self.close_timeout = close_timeout
        """Setting: seconds a closing connection waits for the remote to end its side."""
        self.pair_timeout = pair_timeout
        """Setting: seconds a connection may go without a channel open."""
        self.read_timeout = (
            READ_TIMEOUT_KEEPALIVES * keepalive if read_timeout is None else read_timeout
        )
        """Setting: seconds without a byte from the remote (3 x keepalive unless given)."""
        self.frame_timeout = frame_timeout
        """Setting: seconds a frame may take to arrive in full."""
        self.receive_budget = ReceiveBudget(max_receive_buffer)
        """The bytes all connections hold unhandled (max_receive_buffer is its limit)."""
        check_at_least("max_peers", max_peers, 1)
        self.discovery: list[Discovery] = [discovery] if discovery is not None else []
        """What finds peers for a joined key: the one given, then the DHT's unless dht=False."""
        self._dht_discovery: DHTDiscovery | None = None
        if dht is not False:
            self._dht_discovery = DHTDiscovery(
                self,
                bootstrap=bootstrap,
                dht=dht if isinstance(dht, DHT) else None,
                max_peers=max_peers,
                firewall=firewall,
            )
            self.discovery.append(self._dht_discovery)
        self.topics: set[bytes] = set()
        """The discovery keys joined (join, leave)."""
        self._connections: dict[bytes, Connection] = {}
        self._all: dict[Connection, None] = {}  # every connection, oldest first
        self._servers: list[asyncio.Server] = []
        self._connection_listeners: list[ConnectionListener] = []
        self._closed = False

    @property
    def public_key(self) -> bytes:
        """This swarm's identity: the public key every peer authenticates."""
        return self.key_pair.public_key

    @property
    def connections(self) -> list[Connection]:
        """The live connections, one per remote public key."""
        return list(self._connections.values())

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every TCP listener."""
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                found.append((str(name[0]), int(name[1])))
        return found

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    # -- transports ---------------------------------------------------------------------

    def make_connection(self, initiator: bool, handshake: HandshakeResult | None = None) -> Connection:
        """A new Connection for a transport this swarm owns (TCP, pipe, a DHT connection's UDX
        stream); ``handshake``: the Noise result when the handshake was made elsewhere (hyperdht's
        IK, for this swarm's key pair), so the secret-stream skips its own."""
        self._check_open()
        conn = Connection(
            self.key_pair,
            initiator,
            handshake_timeout=self.handshake_timeout,
            keepalive=self.keepalive,
            max_frame_size=self.max_frame_size,
            max_channels=self.max_channels,
            max_write_buffer=self.max_write_buffer,
            close_timeout=self.close_timeout,
            pair_timeout=self.pair_timeout,
            read_timeout=self.read_timeout,
            frame_timeout=self.frame_timeout,
            receive_budget=self.receive_budget,
            handshake=handshake,
        )
        if not initiator and len(self._all) >= self.max_connections and not self._evict_one():
            conn.refusal = TooManyConnections(
                f"refused a connection: already {len(self._all)}, each with a channel open"
                " (max_connections)"
            )
        self._all[conn] = None
        conn.on_established.append(self._on_established)
        conn.on_closed.append(self._on_closed)
        return conn

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Accept TCP connections on ``host:port`` (0 picks a free port); returns the address.

        Raises ListenError (an OSError) when the address cannot be used.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(lambda: self.make_connection(False), host, port)
        except (OSError, OverflowError) as exc:
            raise _network_error(ListenError, "cannot listen on", host, port, exc) from exc
        self._servers.append(server)
        address = server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def connect(self, host: str, port: int, *, timeout: float | None = None) -> Connection:
        """Dial ``host:port`` over TCP; returns once the secure stream is up.

        Raises ConnectError (an OSError) when the address cannot be reached
        within ``timeout`` (default: handshake_timeout), and a ProtocolError
        when the handshake fails: HandshakeTimeout (also a TimeoutError) when
        it does not finish in that time.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        limit = self.handshake_timeout if timeout is None else timeout
        conn: Connection | None = None
        made: list[Connection] = []

        def dialled() -> Connection:
            made.append(self.make_connection(True))
            return made[-1]

        try:
            async with asyncio.timeout(limit if limit > 0 else None):
                try:
                    _transport, conn = await loop.create_connection(dialled, host, port)
                except (OSError, OverflowError) as exc:
                    raise _network_error(
                        ConnectError, "cannot connect to", host, port, exc
                    ) from exc
                await conn.wait_established()
        except BaseException as exc:
            for unconnected in made:  # uvloop makes the protocol before the socket connects
                if unconnected.transport is None:
                    unconnected.connection_lost(exc if isinstance(exc, Exception) else None)
            if not isinstance(exc, TimeoutError):
                raise
            self._raise_connect_timeout(exc, conn, host, port, limit)
        return conn

    def _raise_connect_timeout(
        self, exc: TimeoutError, conn: Connection | None, host: str, port: int, limit: float
    ) -> NoReturn:
        """connect() ran out of time: a ConnectError before the socket connected, a
        HandshakeTimeout after (the connection is ended with it)."""
        if isinstance(exc, (HandshakeTimeout, ConnectError)):
            raise exc
        if conn is None:
            error: PeersocketsError = _network_error(
                ConnectError, "cannot connect to", host, port, exc, f"timed out after {limit:g} s"
            )
        else:
            error = HandshakeTimeout(
                f"{host}:{port} did not complete the handshake within {limit:g} s"
            )
            conn.abort(error)
        raise error from exc

    # -- discovery ----------------------------------------------------------------------

    def join(self, discovery_key: bytes) -> None:
        """Find and connect to peers of ``discovery_key`` through every attached discovery."""
        self._check_open()
        if discovery_key in self.topics:
            return
        self.topics.add(discovery_key)
        for discovery in self.discovery:
            discovery.join(self, discovery_key)

    def leave(self, discovery_key: bytes) -> None:
        """Stop looking for peers of ``discovery_key`` (connections stay up)."""
        if discovery_key not in self.topics:
            return
        self.topics.discard(discovery_key)
        for discovery in self.discovery:
            discovery.leave(self, discovery_key)

    @property
    def dht(self) -> DHT | None:
        """The DHT node discovery runs on (None before the first join, or with dht=False)."""
        return self._dht_discovery.dht if self._dht_discovery is not None else None

    async def flush(self) -> None:
        """Wait until every joined key was announced and looked up on the DHT once, and the
        peers found were dialled (returns at once without DHT discovery)."""
        if self._dht_discovery is not None:
            await self._dht_discovery.flush()

    def join_peer(self, public_key: bytes) -> None:
        """Keep a connection to the peer listening on ``public_key`` (found on the DHT)."""
        self._check_open()
        if self._dht_discovery is None:
            raise SwarmClosed("join_peer needs DHT discovery; this swarm was made with dht=False")
        if not isinstance(public_key, bytes | bytearray) or len(public_key) != 32:
            raise InvalidKey(f"public_key must be 32 bytes, got {public_key!r}")
        self._dht_discovery.join_peer(bytes(public_key))

    def leave_peer(self, public_key: bytes) -> None:
        """Stop keeping a connection to ``public_key`` (the connection stays until it ends)."""
        if self._dht_discovery is not None:
            self._dht_discovery.leave_peer(bytes(public_key))

    def add_discovery_listener(self, listener: Callable[[DiscoveryEvent], None]) -> None:
        """Be told what DHT discovery does (looking up, announced, connecting, ...)."""
        if self._dht_discovery is not None:
            self._dht_discovery.add_listener(listener)

    def connection_to(self, public_key: bytes) -> Connection | None:
        """The live connection to ``public_key``, if there is one."""
        return self._connections.get(public_key)

    # -- listeners (used by Peersockets) ----------------------------------------------

    def add_listener(self, on_connection: ConnectionListener) -> None:
        """Be told of each new connection this swarm keeps (deduplicated, established)."""
        self._connection_listeners.append(on_connection)

    def remove_listener(self, on_connection: ConnectionListener) -> None:
        """Undo add_listener."""
        if on_connection in self._connection_listeners:
            self._connection_listeners.remove(on_connection)

    # -- lifecycle ----------------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Stop listening, close every connection, and wait until they are gone."""
        if self._closed:
            return
        self._closed = True
        if self._dht_discovery is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dht_discovery.close(), timeout)
        for discovery in self.discovery:
            if discovery is self._dht_discovery:
                continue
            for key in list(self.topics):
                discovery.leave(self, key)
        self.topics.clear()
        for server in self._servers:
            server.close()
        conns = list(self._all)
        for conn in conns:
            conn.close()
            if conn.transport is None:  # a dial still under way (uvloop made it early): ended
                conn.connection_lost(SwarmClosed("the swarm closed before it connected"))
        waits = [asyncio.ensure_future(c.wait_closed()) for c in conns]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=timeout)
            for conn in conns:
                if not conn.has_ended:
                    conn.abort()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
            for fut in pending:
                fut.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> Swarm:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Swarm({self.public_key.hex()[:16]}, {len(self._connections)} connections)"

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SwarmClosed("the Swarm is closed")

    def _on_established(self, conn: Connection) -> None:
        remote = conn.remote_public_key
        if remote == self.public_key:
            conn.abort(PeersocketsError("refusing a connection to ourselves"))
            return
        existing = self._connections.get(remote)
        if conn.discovered and not conn.initiator and not self._swap_for(conn, existing):
            return
        if existing is not None and not existing.is_closed:
            if self._keep_new(existing, conn):
                self._connections[remote] = conn
                existing.close()
            else:
                conn.close()
                return
        else:
            self._connections[remote] = conn
        for listener in list(self._connection_listeners):
            listener(conn)

    def _swap_for(self, new: Connection, existing: Connection | None) -> bool:
        """hyperswarm's rule for a peer dialling us on the DHT while we have a connection to it,
        or are dialling it: keep the new one if the old one carried bytes both ways (the peer
        lost it) or if the peer has the larger key (the dialler both sides expect); otherwise
        refuse the new one. Both ends, JavaScript or Python, keep the same connection."""
        remote = new.remote_public_key
        live = existing if existing is not None and not existing.is_closed else None
        dialling = self._dht_discovery.connecting.get(remote) if self._dht_discovery else None
        if live is None and dialling is None:
            return True
        keep_new = (live is not None and live.carried_both_ways) or self.public_key < remote
        if not keep_new:
            new.close()
            if live is not None and live.is_established and not live.is_closed:
                with contextlib.suppress(PeersocketsError):
                    live.send_raw(b"")  # a keep-alive: if the old one is dead, we learn it soon
            return False
        if dialling is not None:
            dialling.cancel()
        if live is not None:
            self._connections[remote] = new
            live.close()
            for listener in list(self._connection_listeners):
                listener(new)
            return False  # handled: the new one is in, its listeners told
        return True

    def _keep_new(self, existing: Connection, new: Connection) -> bool:
        """Two live connections to one remote: both ends must keep the same one."""
        if existing.initiator == new.initiator:
            return True  # a reconnect from the same side replaces the stale connection
        # A simultaneous dial: keep the connection dialled by the larger public key.
        remote = new.remote_public_key
        initiator_of_new = self.public_key if new.initiator else remote
        return initiator_of_new == max(self.public_key, remote)

    def _evict_one(self) -> bool:
        """Full: end the oldest incoming connection with no channel open (a stranger, or
        one still handshaking) to make room. False if there is none."""
        for conn in self._all:
            if not conn.initiator and not conn.is_closed and conn.mux.open_channels == 0:
                if conn.message_handler is not None:
                    continue  # raw use: it has no channels by design
                conn.abort(
                    TooManyConnections(
                        f"evicted to make room for a new connection: {len(self._all)}"
                        " connections (max_connections), this one with no channel open"
                    )
                )
                del self._all[conn]  # its slot is free now; _on_closed follows
                return True
        return False

    def _on_closed(self, conn: Connection) -> None:
        self._all.pop(conn, None)
        if conn.is_established:
            remote = conn.remote_public_key
            if self._connections.get(remote) is conn:
                del self._connections[remote]
        if self._dht_discovery is not None and conn.discovered:
            self._dht_discovery.on_closed(conn)


_REASONS = {
    errno.EADDRINUSE: "address already in use (choose another port, or 0 for any free one)",
    errno.ECONNREFUSED: "connection refused (nothing is listening there)",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset by the remote",
}


def _network_error(
    kind: type[NetworkErrorT],
    doing: str,
    host: str,
    port: int,
    cause: BaseException,
    reason: str | None = None,
) -> NetworkErrorT:
    """A typed network error that says what failed, where, and why in a few words."""
    code = getattr(cause, "errno", None)
    if reason is None:
        if isinstance(cause, socket.gaierror):
            reason, code = f"unknown host ({cause.strerror})", None
        elif isinstance(cause, OverflowError):
            reason, code = f"port {port} is out of range (0-65535)", errno.EINVAL
        elif code in _REASONS:
            reason = _REASONS[code]
        else:
            reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    elif isinstance(cause, TimeoutError):
        code = errno.ETIMEDOUT
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    error = kind(f"{doing} {where}: {reason}")
    error.errno = code
    return error
