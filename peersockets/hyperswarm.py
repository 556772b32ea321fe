"""A Swarm's discovery on the Hyperswarm DHT, as hyperswarm 4 does it (HYPERDHT.md section 5).

``DHTDiscovery`` starts a DHT node on the swarm's first join, listens on the
swarm's key pair, and for each joined discovery key announces it (server) and
looks it up (client), again every 10-12 minutes. Peers found are dialled, at
most ``max_parallel`` at a time and while fewer than ``max_peers`` are
connected, with hyperswarm's back-off on failure (1 s, 5 s, 15 s; dropped after
3 failed attempts) and again when a connection to a peer still announced drops.
Connections are the swarm's own ``Connection``s, so everything above (protomux,
Peersockets) sees DHT peers as any other. What happens is told to listeners as
``DiscoveryEvent``s (the ``peersockets chat`` command prints them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .connection import Connection
from .dht import DEFAULT_BOOTSTRAP, DHT, DHTServer, PeerRecord
from .errors import DHTError, InvalidKey, PeerConnectError
from .wire.crypto import KeyPair
from .wire.noise import HandshakeResult

if TYPE_CHECKING:
    from .swarm import Swarm

__all__ = ["DEFAULT_MAX_PARALLEL", "DEFAULT_MAX_PEERS", "DHTDiscovery", "DiscoveryEvent", "PeerFirewall"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PEERS: Final = 64
DEFAULT_MAX_PARALLEL: Final = 3
REFRESH: Final = 10 * 60.0
"""Seconds between a topic's lookups and announcements (plus up to REFRESH_JITTER)."""
REFRESH_JITTER: Final = 2 * 60.0
BACKOFFS: Final = (1.0, 5.0, 15.0, 10 * 60.0)
"""hyperswarm's retry delays S, M, L and X (explicit peers past 3 attempts), before jitter."""
BACKOFF_JITTER: Final = (0.5, 1.0, 2.0, 120.0)
MAX_ATTEMPTS: Final = 3
MIN_CONNECTION_TIME: Final = 15.0
"""A connection that lasted this long resets its peer's attempts (it was fine; retry fast)."""
MAX_KNOWN_PEERS: Final = 4096
"""Peers remembered (found, queued, retrying) at once: lookups return what strangers announced,
so past this new ones are ignored until some are forgotten."""
BOOTSTRAP_RETRY: Final = (5.0, 10.0, 20.0, 40.0, 60.0)
"""Seconds between bootstrap attempts while no DHT node answers (the last one repeats)."""

PeerFirewall = Callable[[bytes], bool]
"""firewall(remote_public_key): True refuses the peer (neither dialled nor accepted)."""


class DiscoveryEvent(NamedTuple):
    """Something the DHT discovery did: ``kind`` says what (see DHTDiscovery), the keys which."""

    kind: str
    discovery_key: bytes | None = None
    public_key: bytes | None = None
    detail: str = ""


DiscoveryListener = Callable[[DiscoveryEvent], None]


@dataclass(eq=False)
class _Peer:
    """What we know of one remote key (hyperswarm's PeerInfo)."""

    public_key: bytes
    relay_addresses: tuple[tuple[str, int], ...] = ()
    topics: set[bytes] = field(default_factory=set)
    attempts: int = 0
    proven: bool = False
    tried: bool = False
    explicit: bool = False
    banned: bool = False
    queued: bool = False
    waiting: bool = False
    connected_at: float | None = None

    def priority(self) -> int:
        """Higher first: a peer that failed once, twice, then new ones, then thrice-failed."""
        if (self.tried and not self.proven) or self.attempts > MAX_ATTEMPTS:
            return 0
        return {0: 2, 1: 4, 2: 3, 3: 1}[self.attempts]


@dataclass(eq=False)
class _Topic:
    key: bytes
    task: asyncio.Task[None] | None = None
    refreshed: asyncio.Event = field(default_factory=asyncio.Event)
    announced: bool = False


class DHTDiscovery:
    """Finds and connects a swarm's peers on the Hyperswarm DHT; attach with ``Swarm(dht=...)``.

    Events (``DiscoveryEvent.kind``): "started" (the DHT node is up: detail says how many
    nodes it knows), "bootstrap-failed" (no bootstrap node answered; it keeps trying),
    "listening", "announced", "lookup" (detail: how many peers were found), "connecting",
    "connected", "connect-failed" (detail: why), "disconnected", "left", "error".
    """

    def __init__(
        self,
        swarm: Swarm,
        *,
        bootstrap: Sequence[str | tuple[str, int]] | None = None,
        dht: DHT | None = None,
        max_peers: int = DEFAULT_MAX_PEERS,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        firewall: PeerFirewall | None = None,
    ) -> None:
        self.swarm = swarm
        self.bootstrap = tuple(bootstrap) if bootstrap is not None else DEFAULT_BOOTSTRAP
        self.dht = dht
        """The DHT node (made on the first join unless given); closed with the swarm."""
        self.max_peers = max_peers
        self.max_parallel = max_parallel
        self.firewall = firewall
        self.server: DHTServer | None = None
        self._topics: dict[bytes, _Topic] = {}
        self._peers: dict[bytes, _Peer] = {}
        self._queue: list[_Peer] = []
        self.connecting: dict[bytes, asyncio.Task[None]] = {}
        """Dials under way, by remote public key."""
        self._listeners: list[DiscoveryListener] = []
        self._started: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._leaving: dict[bytes, asyncio.Task[None]] = {}
        """Unannouncements under way: a join of the same key waits for its own (else the
        late UNANNOUNCE would remove the new announcement)."""
        self._idle = asyncio.Event()
        self._idle.set()
        self.ignored = 0
        """Peers found while MAX_KNOWN_PEERS were known (not remembered)."""
        self._closed = False

    # -- events -------------------------------------------------------------------------------

    def add_listener(self, listener: DiscoveryListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: DiscoveryListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, kind: str, discovery_key: bytes | None = None, public_key: bytes | None = None, detail: str = "") -> None:
        event = DiscoveryEvent(kind, discovery_key, public_key, detail)
        log.debug("discovery: %s", event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a discovery listener failed")

    # -- the Discovery protocol -------------------------------------------------------------------

    def join(self, swarm: Swarm, discovery_key: bytes) -> None:
        """Announce ``discovery_key`` and look it up, now and every 10-12 minutes."""
        if self._closed or discovery_key in self._topics:
            return
        topic = _Topic(discovery_key)
        self._topics[discovery_key] = topic
        topic.task = self._spawn(self._run_topic(topic))

    def leave(self, swarm: Swarm, discovery_key: bytes) -> None:
        """Stop looking the key up and unannounce it (connections stay)."""
        topic = self._topics.pop(discovery_key, None)
        if topic is None:
            return
        if topic.task is not None:
            topic.task.cancel()
        topic.refreshed.set()  # a flush waiting on it is not left hanging
        if topic.announced and self.dht is not None and not self._closed:
            self._leaving[discovery_key] = self._spawn(self._unannounce(discovery_key))

    async def _unannounce(self, discovery_key: bytes) -> None:
        assert self.dht is not None
        try:
            with contextlib.suppress(DHTError):
                await self.dht.unannounce(discovery_key, self.swarm.key_pair)
        finally:
            self._leaving.pop(discovery_key, None)
        self._emit("left", discovery_key)

    # -- starting ---------------------------------------------------------------------------------

    def _ready(self) -> asyncio.Task[None]:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        return self._started

    async def _start(self) -> None:
        """The DHT node (bootstrapped, retrying while nobody answers) and our server."""
        if self.dht is None:
            self.dht = DHT(bootstrap=self.bootstrap)
        dht = self.dht
        await dht.open()
        retry = 0
        while not len(dht.node.table) and dht.node.bootstrap_nodes is not None and self.bootstrap:
            delay = BOOTSTRAP_RETRY[min(retry, len(BOOTSTRAP_RETRY) - 1)]
            names = ", ".join(
                f"{b.suggested}@{b.host}:{b.port}" if b.suggested else f"{b.host}:{b.port}"
                for b in dht.node.bootstrap_entries
            )
            self._emit("bootstrap-failed", detail=f"no DHT node answered ({names}); trying again in {delay:.0f} s")
            await asyncio.sleep(delay)
            retry += 1
            await dht.node.bootstrap()
        self._emit("started", detail=f"{len(dht.node.table)} nodes known")
        while self.server is None:
            try:
                self.server = await dht.listen(
                    self.swarm.key_pair,
                    firewall=self._accepts,
                    make_connection=self._make_connection,
                )
            except DHTError as exc:
                self._emit("error", detail=f"cannot announce our key yet: {exc}")
                await asyncio.sleep(BOOTSTRAP_RETRY[0])
        self._emit("listening", public_key=self.swarm.public_key, detail=f"{len(self.server.relay_addresses)} relays")

    def _make_connection(self, key_pair: KeyPair, initiator: bool, handshake: HandshakeResult) -> Connection:
        connection = self.swarm.make_connection(initiator, handshake)  # SwarmClosed once closed
        connection.discovered = True
        return connection

    def _accepts(self, remote_public_key: bytes, _payload: object, _address: object) -> bool:
        """The server's firewall: True refuses (closing, ourselves, banned, or the user's
        firewall). Strangers it refuses are not remembered (they choose their keys)."""
        return self._closed or self._refuses(remote_public_key)

    def _refuses(self, public_key: bytes) -> bool:
        if public_key == self.swarm.public_key:
            return True
        peer = self._peers.get(public_key)
        if peer is not None and peer.banned:
            return True
        if self.firewall is None:
            return False
        try:
            refused = bool(self.firewall(public_key))
        except Exception:
            log.exception("the swarm's firewall callback failed: refusing %s", public_key.hex()[:16])
            refused = True
        if refused and peer is not None:
            peer.banned = True
        return refused

    # -- topics -----------------------------------------------------------------------------------

    async def _run_topic(self, topic: _Topic) -> None:
        """Announce the key, then look it up, then look again every 10-12 minutes (the
        announcement refreshes itself). Announcing first means that of two peers joining at the
        same moment, the one whose lookup comes second finds the other (hyperswarm, whose one
        query looks up and announces, can miss both ways till the next refresh)."""
        try:
            await self._announce_and_look_up(topic)
        finally:
            topic.refreshed.set()  # left or closed: a flush waiting on it goes on

    async def _announce_and_look_up(self, topic: _Topic) -> None:
        await asyncio.shield(self._ready())
        leaving = self._leaving.get(topic.key)
        if leaving is not None:
            await asyncio.shield(leaving)
        dht = self.dht
        assert dht is not None and self.server is not None
        failures = 0
        while topic.key in self._topics and not self._closed:
            try:
                if not topic.announced:
                    await dht.announce(topic.key, self.swarm.key_pair, self.server.relay_addresses)
                    topic.announced = True
                    self._emit("announced", topic.key)
                found = 0
                async for record in dht.lookup(topic.key):
                    if record.public_key != self.swarm.public_key:
                        found += 1
                        self._found(record, topic.key)
                self._emit("lookup", topic.key, detail=str(found))
                failures = 0
                delay = REFRESH + random.random() * REFRESH_JITTER
            except DHTError as exc:
                failures += 1
                delay = BOOTSTRAP_RETRY[min(failures - 1, len(BOOTSTRAP_RETRY) - 1)]
                self._emit("error", topic.key, detail=f"{exc}; trying again in {delay:.0f} s")
            topic.refreshed.set()
            await asyncio.sleep(delay)

    # -- peers ------------------------------------------------------------------------------------

    def _upsert(self, public_key: bytes, relay_addresses: Sequence[tuple[str, int]] | None = None) -> _Peer:
        peer = self._peers.get(public_key)
        if peer is None:
            peer = self._peers[public_key] = _Peer(public_key)
        if relay_addresses is not None:
            peer.relay_addresses = tuple(relay_addresses)
        return peer

    def _found(self, record: PeerRecord, discovery_key: bytes) -> None:
        """A lookup found a peer: queue it (a known peer is tried again from scratch)."""
        if record.public_key not in self._peers and len(self._peers) >= MAX_KNOWN_PEERS:
            self.ignored += 1
            return
        peer = self._upsert(record.public_key, record.relay_addresses)
        peer.topics.add(discovery_key)
        if self._connected(peer.public_key):
            return
        if peer.priority() < 2:
            peer.attempts, peer.proven, peer.tried = 0, False, False
        self._enqueue(peer)

    def join_peer(self, public_key: bytes) -> None:
        """Keep a connection to one known peer (retried every 10 minutes after 3 failures)."""
        peer = self._upsert(public_key)
        peer.explicit = True
        if peer.banned:
            peer.banned = False
        self._spawn(self._start_then_enqueue(peer))

    def leave_peer(self, public_key: bytes) -> None:
        peer = self._peers.get(public_key)
        if peer is not None:
            peer.explicit = False

    async def _start_then_enqueue(self, peer: _Peer) -> None:
        await asyncio.shield(self._ready())
        self._enqueue(peer)

    def _connected(self, public_key: bytes) -> bool:
        existing = self.swarm.connection_to(public_key)
        return public_key in self.connecting or (existing is not None and not existing.is_closed)

    def _enqueue(self, peer: _Peer) -> None:
        if peer.queued or peer.banned or self._closed:
            return
        peer.queued = True
        self._queue.append(peer)
        self._drain()

    def _within_max_peers(self) -> bool:
        explicit = sum(1 for p in self._peers.values() if p.explicit)
        factor = 1 if explicit == 0 else 2 if explicit < 2 else 3 if explicit < 4 else 4
        connections = len(self.swarm.connections) + len(self.connecting)  # dials count, as hyperswarm's
        return factor * connections < self.max_peers

    def _drain(self) -> None:
        """Dial the best queued peers while the limits allow."""
        while self._queue and len(self.connecting) < self.max_parallel and not self._closed:
            explicit_first = sorted(self._queue, key=lambda p: (not p.explicit, -p.priority()))
            peer = explicit_first[0]
            if not peer.explicit and not self._within_max_peers():
                break
            self._queue.remove(peer)
            peer.queued = False
            if self._connected(peer.public_key) or self._refuses(peer.public_key):
                continue
            task = self._spawn(self._dial(peer))
            self.connecting[peer.public_key] = task
            task.add_done_callback(functools.partial(self._dial_done, peer.public_key))
        self._update_idle()

    def _update_idle(self) -> None:
        busy = bool(self.connecting) or (bool(self._queue) and self._within_max_peers())
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    def _dial_done(self, key: bytes, task: asyncio.Task[None]) -> None:
        """A dial ended, however (cancelled before it started included): free its slot."""
        if self.connecting.get(key) is task:
            del self.connecting[key]
            self._drain()

    async def _dial(self, peer: _Peer) -> None:
        dht = self.dht
        assert dht is not None
        key = peer.public_key
        self._emit("connecting", public_key=key)
        peer.tried = True
        connection: Connection | None = None
        try:
            connection = await dht.connect(
                key,
                key_pair=self.swarm.key_pair,
                relay_addresses=peer.relay_addresses,
                make_connection=self._make_connection,
            )
        except PeerConnectError as exc:
            self._emit("connect-failed", public_key=key, detail=f"{exc.code}: {exc}")
        except (DHTError, InvalidKey) as exc:  # a key nobody can have, or our node closed
            self._emit("connect-failed", public_key=key, detail=str(exc))
            self._peers.pop(key, None)
            return
        finally:
            if self.connecting.get(key) is asyncio.current_task():
                del self.connecting[key]
            self._drain()
        if connection is not None:
            peer.proven = True
            peer.connected_at = asyncio.get_running_loop().time()
            self._emit("connected", public_key=key)
            await connection.wait_closed()
            self._emit("disconnected", public_key=key)
        self._disconnected(peer)

    def on_closed(self, connection: Connection) -> None:
        """A connection closed. One we dialled is retried by its dial; one the peer dialled is
        the peer's to make again, as in hyperswarm (a peer that hung up on purpose stays away)."""
        if not self._closed:
            self._drain()  # a slot under max_peers may be free

    def _disconnected(self, peer: _Peer) -> None:
        now = asyncio.get_running_loop().time()
        if peer.connected_at is not None and now - peer.connected_at >= MIN_CONNECTION_TIME:
            peer.attempts = 0
        peer.connected_at = None
        peer.attempts += 1
        self._retry(peer)

    def _retry(self, peer: _Peer) -> None:
        """Queue the peer again after hyperswarm's back-off, if it is still wanted."""
        if self._closed or peer.banned or peer.waiting:
            return
        wanted = peer.explicit or any(topic in self._topics for topic in peer.topics)
        if not wanted:
            self._peers.pop(peer.public_key, None)
            return
        delay = _backoff(peer)
        if delay is None:
            if not peer.explicit:
                self._peers.pop(peer.public_key, None)  # dropped until a lookup finds it again
            return
        peer.waiting = True
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def requeue() -> None:
            self._timers.discard(handle)
            peer.waiting = False
            if not self._connected(peer.public_key):
                self._enqueue(peer)

        handle = loop.call_later(delay, requeue)
        self._timers.add(handle)

    # -- flushing and closing -----------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every joined key was announced and looked up once, and the peers found
        were dialled (or the peer limit reached)."""
        if self._closed or (not self._topics and self._started is None):
            return
        try:
            await asyncio.shield(self._ready())
        except asyncio.CancelledError:
            if self._closed:
                return  # closed meanwhile: nothing more will happen
            raise
        await asyncio.gather(*(topic.refreshed.wait() for topic in list(self._topics.values())))
        self._update_idle()
        await self._idle.wait()

    async def close(self, unannounce_timeout: float = 2.0) -> None:
        """Stop everything: topics, dials, retries; unannounce (for at most
        ``unannounce_timeout`` seconds, all keys at once); close the DHT node, whatever happens."""
        if self._closed:
            return
        self._closed = True
        self._idle.set()
        try:
            for handle in self._timers:
                handle.cancel()
            self._timers.clear()
            # a leave's unannouncement under way is finished below, within the same bound
            # (closing a Peersockets, then its Swarm, leaves first: cancelling it here left
            # the announcement for peers to dial in vain until it expired)
            leaving = set(self._leaving.values())
            starting = [t for t in (self._started,) if t is not None and not t.done()]
            tasks = [*(t for t in self._tasks if t not in leaving), *starting]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.dht is not None:
                if self.server is not None:
                    await self.server.close()  # no new connections while we unannounce
                announced = [topic.key for topic in self._topics.values() if topic.announced]
                for topic in self._topics.values():
                    topic.refreshed.set()
                self._topics.clear()
                unannouncing = [
                    *(asyncio.ensure_future(self.dht.unannounce(key, self.swarm.key_pair)) for key in announced),
                    *leaving,
                ]
                if unannouncing:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(unannounce_timeout):
                            await asyncio.gather(*unannouncing, return_exceptions=True)
                    for task in unannouncing:
                        task.cancel()  # past the bound: given up
                    await asyncio.gather(*unannouncing, return_exceptions=True)
        finally:
            if self.dht is not None:
                await self.dht.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("DHT discovery task failed", exc_info=task.exception())
            self._emit("error", detail=str(task.exception()))


def _backoff(peer: _Peer) -> float | None:
    """hyperswarm's retry delay for a peer, or None when it is dropped."""
    if peer.attempts > MAX_ATTEMPTS:
        index = 3 if peer.explicit else None
    elif peer.attempts == 0:
        index = 0
    elif peer.proven:
        index = peer.attempts - 1
    else:
        index = min(peer.attempts, 2)
    if index is None:
        return None
    return BACKOFFS[index] + random.random() * BACKOFF_JITTER[index]
