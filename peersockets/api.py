"""The peersockets API: Peersockets bound to one drive, its Topics and PeerEvents."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, Literal, NamedTuple, Self, TypeVar

from .connection import Connection
from .errors import (
    ConnectionClosed,
    InvalidSetting,
    InvalidTopic,
    MessageTooLarge,
    NotEnoughPeers,
    PeerNotFound,
    PeersocketsClosed,
    TopicClosed,
    check_at_least,
)
from .keys import parse_drive_key
from .swarm import Swarm
from .wire import hypercore
from .wire.crypto import discovery_key as derive_discovery_key
from .wire.encoding import uint_length
from .wire.hypercore import HypercoreChannel
from .wire.secretstream import MAX_MESSAGE

log = logging.getLogger(__name__)

EXTENSION_PREFIX = "peersockets/"
MAX_TOPIC_BYTES = 1024
MAX_EXTENSION_NAME_BYTES = len(EXTENSION_PREFIX) + MAX_TOPIC_BYTES
DEFAULT_REOPEN_RATE = 1.0
REOPEN_BURST = 10
"""Drive channel reopens a connection may make at once before reopen_rate applies."""
DEFAULT_QUEUE_MESSAGES = 100_000
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024


class TopicMessage(NamedTuple):
    """A message received on a topic, from ``peer_id`` (whose key is ``public_key``)."""

    peer_id: int
    message: bytes
    public_key: bytes


_new_message = tuple.__new__  # builds a TopicMessage without NamedTuple's Python-level __new__


class PeerEvent(NamedTuple):
    """A peer joined or left the drive.

    ``address`` is the remote (host, port) of the peer's connection where the
    transport has one (TCP, UDX over the DHT), None in memory.
    """

    type: Literal["join", "leave"]
    peer_id: int
    public_key: bytes
    address: tuple[str, int] | None = None


T = TypeVar("T")


Overflow = Literal["pause", "drop-oldest"]

ITEM_OVERHEAD = 64
"""Bytes a queued item counts for on top of its message (the tuple and its references)."""


QUANTUM = 16
"""Messages taken from one peer's lane before the next peer's turn."""
DROP_LOG_SECONDS = 5.0
"""Drops are logged at the first, then as a summary at most this often."""


class _Waitable(Generic[T]):
    """A queue's waiting side: readers block in get() until an item comes or it closes."""

    def __init__(self) -> None:
        # readers blocked in get(): woken with None (look again) or handed an item
        self._waiters: list[asyncio.Future[T | None]] = []
        self.closed = False
        self.dropped = 0
        self._logged_at: float | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def pop(self) -> T:
        raise NotImplementedError

    def _put_back(self, item: T) -> None:
        """Queue ``item`` first again: it was handed to a reader cancelled before it ran."""
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        """Wake every blocked reader; each re-checks the queue (several may share one)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> T:
        while not len(self):
            if self.closed:
                raise StopAsyncIteration
            waiter: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                item = await waiter
            except asyncio.CancelledError:
                handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if handed is not None:
                    self._put_back(handed)  # handed over, but never taken: not lost
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if item is not None:
                return item  # handed straight over by put()
        return self.pop()

    def _dropped(self, count: int) -> None:
        """Count dropped items; log the first drop, then a summary every DROP_LOG_SECONDS."""
        self.dropped += count
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= DROP_LOG_SECONDS:
            self._logged_at = now
            log.warning("queue full: %d items dropped so far (oldest first)", self.dropped)


class _Lane:
    """One peer's messages in a Topic's queue, and the connections its overflow holds."""

    __slots__ = ("bytes", "holding", "items")

    def __init__(self) -> None:
        self.items: deque[TopicMessage] = deque()
        self.bytes = 0
        self.holding: set[Connection] = set()


class _Inbox(_Waitable[TopicMessage]):
    """A bounded queue behind an async iterator, fair between the peers that fill it.

    Each peer's messages wait in their own lane; lanes are read round robin,
    QUANTUM messages at a time, so a peer that floods does not delay the
    others. Each peer with messages queued has an equal share of the bound
    (max_items and max_bytes divided by the number of such peers). A lane
    past its share either holds reading on the connection that filled it
    until the lane is down to half its share ("pause": nothing is lost, that
    sender alone is slowed down by TCP flow control), or drops its own oldest
    messages and counts them ("drop-oldest").
    """

    def __init__(
        self,
        max_items: int,
        max_bytes: int,
        overflow: Overflow,
    ) -> None:
        super().__init__()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._overflow = overflow
        self._lanes: dict[int, _Lane] = {}  # by peer id; empty ones until purged
        self._ring: deque[_Lane] = deque()  # lanes with items, the one served first
        self._served = 0  # items taken from the first lane of the ring in its turn
        self._count = 0
        self._share_items = max_items
        self._share_bytes = max_bytes

    def put(self, item: TopicMessage, source: Connection | None = None) -> None:
        """Queue ``item``; past its peer's share, pause ``source`` or drop that peer's oldest.

        A reader already waiting on an empty queue is handed the item directly.
        """
        if self.closed:
            return
        waiters = self._waiters
        if waiters and not self._count:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(item)
                return
        peer = item[0]
        lane = self._lanes.get(peer)
        if lane is None:
            lane = self._new_lane(peer)
        items = lane.items
        if not items:  # the lane joins the ring (and the shares shrink if it is not alone)
            ring = self._ring
            ring.append(lane)
            if len(ring) > 1:
                self._reshare()
        items.append(item)
        self._count += 1
        size = lane.bytes = lane.bytes + len(item[1]) + ITEM_OVERHEAD
        if len(items) > self._share_items or (size > self._share_bytes and len(items) > 1):
            self._overflowed(lane, source)
        if self._waiters:
            self._wake()

    def _new_lane(self, peer: int) -> _Lane:
        """A lane for a peer not seen lately (empty lanes are kept for a while, then purged)."""
        lanes = self._lanes
        if len(lanes) > 2 * len(self._ring) + 16:
            for key in [k for k, v in lanes.items() if not v.items and not v.holding]:
                del lanes[key]  # lanes of peers long gone
        lane = lanes[peer] = _Lane()
        return lane

    def _reshare(self) -> None:
        """Each peer with messages queued gets an equal share (with one or none: all)."""
        peers = len(self._ring) or 1
        self._share_items = max(1, self._max_items // peers)
        self._share_bytes = max(1, self._max_bytes // peers)

    def _overflowed(self, lane: _Lane, source: Connection | None) -> None:
        if self._overflow == "pause" and source is not None:
            if source not in lane.holding and not source.has_ended:
                lane.holding.add(source)
                source.hold_reading(lane)
            return
        items = lane.items
        dropped = 0
        while len(items) > self._share_items or (lane.bytes > self._share_bytes and len(items) > 1):
            lane.bytes -= len(items.popleft()[1]) + ITEM_OVERHEAD
            self._count -= 1
            dropped += 1
        self._dropped(dropped)

    def close(self) -> None:
        super().close()
        for lane in self._lanes.values():
            self._release(lane)

    @staticmethod
    def _release(lane: _Lane) -> None:
        holding, lane.holding = lane.holding, set()
        for conn in holding:
            conn.release_reading(lane)

    def pop(self) -> TopicMessage:
        """Take the next item, round robin between peers (there must be one); a held
        connection is released once its lane is down to half its share."""
        ring = self._ring
        lane = ring[0]
        item = lane.items.popleft()
        lane.bytes -= len(item[1]) + ITEM_OVERHEAD
        self._count -= 1
        if not lane.items:
            ring.popleft()
            self._served = 0
            if ring:
                self._reshare()
        elif len(ring) > 1:
            self._served += 1
            if self._served >= QUANTUM:
                ring.rotate(-1)
                self._served = 0
        if lane.holding and (
            len(lane.items) <= self._share_items // 2 and lane.bytes <= self._share_bytes // 2
        ):
            self._release(lane)
        return item

    def __len__(self) -> int:
        return self._count

    def _put_back(self, item: TopicMessage) -> None:
        lane = self._lanes.get(item[0])
        if lane is None:
            lane = self._new_lane(item[0])
        if not lane.items:
            self._ring.appendleft(lane)
            self._served = 0
            self._reshare()
        lane.items.appendleft(item)
        lane.bytes += len(item[1]) + ITEM_OVERHEAD
        self._count += 1
        if self._waiters:
            self._wake()

    @property
    def queued_bytes(self) -> int:
        """Bytes the queued items count for (each its message + ITEM_OVERHEAD)."""
        return sum(lane.bytes for lane in self._ring)


class _EventInbox(_Waitable[PeerEvent]):
    """PeerEvents' queue: in order, bounded, dropping the oldest past the bound.

    A leave that finds its peer's join still queued removes both (the reader
    never heard of that peer), so a peer that churns keeps at most two events
    queued (a leave of a join already read, and its latest join), and cannot
    push other peers' events out.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        super().__init__()
        self._max = max(1, min(max_items, max_bytes // ITEM_OVERHEAD))
        self._events: OrderedDict[tuple[int, str], PeerEvent] = OrderedDict()

    def put(self, event: PeerEvent) -> None:
        if self.closed:
            return
        events = self._events
        if event.type == "leave" and events.pop((event.peer_id, "join"), None) is not None:
            return
        events[event.peer_id, event.type] = event
        if len(events) > self._max:
            events.popitem(last=False)
            self._dropped(1)
        if self._waiters:
            self._wake()

    def pop(self) -> PeerEvent:
        return self._events.popitem(last=False)[1]

    def _put_back(self, item: PeerEvent) -> None:
        self._events[item.peer_id, item.type] = item
        self._events.move_to_end((item.peer_id, item.type), last=False)

    def __len__(self) -> int:
        return len(self._events)


class _Peer:
    """A remote public key with at least one open drive channel."""

    __slots__ = ("address", "channels", "peer_id", "public_key")

    def __init__(self, peer_id: int, public_key: bytes, address: tuple[str, int] | None) -> None:
        self.peer_id = peer_id
        self.public_key = public_key
        self.address = address
        """The remote address of the peer's newest connection with the drive open."""
        self.channels: list[_DriveLink] = []

    def event(self, kind: Literal["join", "leave"]) -> PeerEvent:
        return PeerEvent(kind, self.peer_id, self.public_key, self.address)


class _DriveLink:
    """The drive's hypercore channel on one connection (a HypercoreListener).

    While the swarm replaces a peer's connection, the peer has two links. Messages
    on the newer one are held until the older one has ended (its data read to the
    end), so a peer's messages arrive in send order across the swap. What is held
    is bounded like a Topic queue: past it, reading from that connection pauses.
    """

    def __init__(self, owner: Peersockets, conn: Connection) -> None:
        self.owner = owner
        self.conn = conn
        self.peer: _Peer | None = None
        self.held: deque[tuple[str, bytes]] | None = None
        self._held_bytes = 0
        self._holding_reading = False
        self._last_name: str | None = None
        self._last_topic: str | None = None
        self.channel = HypercoreChannel(
            conn.mux,
            owner.drive_key,
            conn.handshake_hash,
            conn.initiator,
            self,
            max_name_bytes=MAX_EXTENSION_NAME_BYTES,
        )

    def peer_opened(self, channel: HypercoreChannel) -> None:
        self.owner._link_opened(self)

    def peer_extension(self, channel: HypercoreChannel, name: str, message: bytes) -> None:
        if name is not self._last_name:  # names repeat: hypercore sends them compressed
            self._last_name = name
            prefixed = name.startswith(EXTENSION_PREFIX)
            self._last_topic = name[len(EXTENSION_PREFIX) :] if prefixed else None
        topic = self._last_topic
        peer = self.peer
        if topic is None or peer is None:
            return
        if self.held is not None:
            self._hold(topic, message)
            return
        instances = self.owner._topics.get(topic)
        if instances is not None and len(instances) == 1:  # _deliver's common case, inline
            instances[0]._receive(
                _new_message(TopicMessage, (peer.peer_id, message, peer.public_key)), self.conn
            )
            return
        self._deliver(topic, message)

    def _deliver(self, topic: str, message: bytes) -> None:
        peer = self.peer
        instances = self.owner._topics.get(topic)
        if not instances or peer is None:
            return  # nobody joined this topic here: discarded, as Beaker did
        event = _new_message(TopicMessage, (peer.peer_id, message, peer.public_key))
        if len(instances) == 1:
            instances[0]._receive(event, self.conn)
            return
        for instance in list(instances):  # a callback may close its Topic meanwhile
            instance._receive(event, self.conn)

    def peer_closed(self, channel: HypercoreChannel, by_remote: bool) -> None:
        self.owner._link_closed(self)

    def _hold(self, topic: str, message: bytes) -> None:
        held = self.held
        assert held is not None
        held.append((topic, message))
        self._held_bytes += len(message) + ITEM_OVERHEAD
        owner = self.owner
        over = len(held) > owner.max_queue_messages or self._held_bytes > owner.max_queue_bytes
        if over and not self._holding_reading:
            self._holding_reading = True
            self.conn.hold_reading(self)

    def release(self) -> None:
        """Deliver what was held, in order, and deliver at once from now on."""
        held, self.held = self.held, None
        self._held_bytes = 0
        if held:
            for topic, message in held:
                self._deliver(topic, message)
        if self._holding_reading:
            self._holding_reading = False
            self.conn.release_reading(self)


MessageCallback = Callable[[TopicMessage], "Awaitable[None] | None"]


class Peersockets:
    """Topic messaging with the peers of one hyperdrive, over a Swarm's connections."""

    def __init__(
        self,
        swarm: Swarm,
        drive_key: bytes | bytearray | memoryview | str,
        *,
        max_queue_messages: int = DEFAULT_QUEUE_MESSAGES,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
        overflow: Overflow = "pause",
        reopen_rate: float = DEFAULT_REOPEN_RATE,
    ) -> None:
        """Topic messaging for the drive ``drive_key`` over ``swarm``'s connections.

        Settings, each a limit against misbehaving peers (SECURITY.md):

        - max_queue_messages, max_queue_bytes: the bound of each Topic's queue
          (100,000 messages, 64 MiB), shared fairly among the peers with
          messages queued, and of each PeerEvents.
        - overflow: what a peer past its share of a Topic's queue gets:
          "pause" (the default: reading from it stops until its lane is down
          to half; nothing is lost) or "drop-oldest" (its oldest messages are
          dropped and counted in Topic.dropped).
        - reopen_rate: drive channel reopens per second a connection may make
          after a burst of 10 (default 1.0); a reopen past it is rejected (the
          peer stays connected, without the drive, and may open again later).
        """
        check_at_least("max_queue_messages", max_queue_messages, 1)
        check_at_least("max_queue_bytes", max_queue_bytes, 1)
        check_at_least("reopen_rate", reopen_rate, 0)
        if overflow not in ("pause", "drop-oldest"):
            raise InvalidSetting(f"overflow must be 'pause' or 'drop-oldest', got {overflow!r}")
        self.swarm = swarm
        self.overflow: Overflow = overflow
        self.drive_key = parse_drive_key(drive_key)
        self.discovery_key = derive_discovery_key(self.drive_key)
        self.max_queue_messages = max_queue_messages
        self.max_queue_bytes = max_queue_bytes
        self.reopen_rate = reopen_rate
        self._links: dict[Connection, _DriveLink] = {}
        self._by_key: dict[bytes, set[Connection]] = {}  # connections in _links, by remote
        # per connection: reopen tokens left, when counted, whether a refusal was logged
        self._reopens: dict[Connection, tuple[float, float, bool]] = {}
        self._peers: dict[bytes, _Peer] = {}
        self._by_id: dict[int, _Peer] = {}
        self._ids = itertools.count(1)
        self._topics: dict[str, list[Topic]] = {}
        self._watchers: list[PeerEvents] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._pairings: dict[Connection, Callable[[str, bytes | None], None]] = {}
        self._peer_waiters: list[tuple[int, asyncio.Future[None]]] = []
        swarm.add_listener(self._on_connection)
        for conn in swarm.connections:
            self._on_connection(conn)
        swarm.join(self.discovery_key)

    @property
    def peers(self) -> list[int]:
        """The ids of the peers connected to the drive now."""
        return sorted(self._by_id)

    def peer_public_key(self, peer_id: int) -> bytes:
        """The authenticated public key of a live peer."""
        peer = self._by_id.get(peer_id)
        if peer is None:
            raise PeerNotFound(f"no live peer with id {peer_id!r}")
        return peer.public_key

    async def wait_for_peers(self, count: int = 1, timeout: float | None = None) -> list[int]:
        """Wait until at least ``count`` peers are connected to the drive; their ids then.

        Returns at once if they already are. Raises NotEnoughPeers (a
        TimeoutError) if ``timeout`` seconds pass first, and PeersocketsClosed
        if this Peersockets closes meanwhile.
        """
        if type(count) is not int:
            raise TypeError(f"count must be an int, got {type(count).__name__}")
        check_at_least("count", count, 0)
        if timeout is not None:
            check_at_least("timeout", timeout, 0)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._check_open()  # also when it closed while our wake-up was on its way
                    if len(self._by_id) >= count:
                        break
                    waiter = (count, loop.create_future())
                    self._peer_waiters.append(waiter)
                    try:
                        await waiter[1]
                    finally:
                        self._peer_waiters.remove(waiter)
        except TimeoutError:
            raise NotEnoughPeers(
                f"{len(self._by_id)} of {count} peers joined drive"
                f" {self.drive_key.hex()[:16]} within {timeout:g} s"
            ) from None
        return self.peers

    def join(self, topic: str) -> Topic:
        """Join ``topic``: a Topic that sends to and receives from this drive's peers."""
        self._check_open()
        name = _check_topic(topic)
        instance = Topic(self, name)
        self._topics.setdefault(name, []).append(instance)
        return instance

    def watch(self) -> PeerEvents:
        """A PeerEvents: a join for every peer connected now, then joins and leaves."""
        self._check_open()
        events = PeerEvents(self)
        for peer in sorted(self._by_id.values(), key=lambda p: p.peer_id):
            events._put(peer.event("join"))
        self._watchers.append(events)
        return events

    async def close(self) -> None:
        """Close the drive's channels, end every Topic and PeerEvents, stop discovery."""
        if self._closed:
            return
        self._closed = True
        self.swarm.remove_listener(self._on_connection)
        self.swarm.leave(self.discovery_key)
        for conn in list(self._pairings):
            self._connection_ended(conn)
        links = list(self._links.values())
        for link in links:
            link.channel.close()  # leave events are emitted as the channels close
        for link in links:
            link.conn.flush()
        for instances in list(self._topics.values()):
            for topic in list(instances):
                topic.close()
        for watcher in list(self._watchers):
            watcher.close()
        for _, waiter in self._peer_waiters:
            if not waiter.done():
                waiter.set_exception(PeersocketsClosed(f"{self!r} closed while waiting for peers"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Peersockets:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Peersockets({self.drive_key.hex()[:16]}, peers={self.peers})"

    # -- swarm events -------------------------------------------------------------------

    def _on_connection(self, conn: Connection) -> None:
        """A connection the swarm keeps: open the drive's channel, answer the remote's."""
        if self._closed or conn in self._links or conn.is_closed:
            return
        pairing = functools.partial(self._on_remote_open, conn)
        self._pairings[conn] = pairing
        conn.mux.pair(hypercore.PROTOCOL, self.discovery_key, pairing)
        conn.on_closed.append(self._connection_ended)
        self._set_link(conn, _DriveLink(self, conn))

    def _set_link(self, conn: Connection, link: _DriveLink) -> None:
        self._links[conn] = link
        self._by_key.setdefault(conn.remote_public_key, set()).add(conn)

    def _drop_link(self, link: _DriveLink) -> None:
        conn = link.conn
        if self._links.get(conn) is not link:
            return
        del self._links[conn]
        conns = self._by_key.get(conn.remote_public_key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_key[conn.remote_public_key]

    def _connection_ended(self, conn: Connection) -> None:
        self._reopens.pop(conn, None)
        pairing = self._pairings.pop(conn, None)
        if pairing is not None:
            conn.mux.unpair(hypercore.PROTOCOL, self.discovery_key, pairing)
        if self._connection_ended in conn.on_closed:
            conn.on_closed.remove(self._connection_ended)

    def _on_remote_open(self, conn: Connection, protocol: str, id: bytes | None) -> None:
        if self._closed or conn.is_closed:
            return  # not answered: rejected
        link = self._links.get(conn)
        # The remote (re)opened the drive's channel: answer with ours, which pairs at once.
        if (link is None or link.channel.closed) and self._may_reopen(conn):
            self._set_link(conn, _DriveLink(self, conn))

    def _may_reopen(self, conn: Connection) -> bool:
        """Whether ``conn`` may reopen the drive's channel now (a token bucket per connection)."""
        now = asyncio.get_running_loop().time()
        tokens, last, logged = self._reopens.get(conn, (float(REOPEN_BURST), now, False))
        tokens = min(float(REOPEN_BURST), tokens + (now - last) * self.reopen_rate)
        if tokens < 1:
            self._reopens[conn] = (tokens, now, True)
            if not logged:  # once per connection: a churning peer must not flood the log
                log.info(
                    "rejecting reopens of the drive's channel by %s: past reopen_rate (%g per s)",
                    conn.remote_public_key.hex()[:16],
                    self.reopen_rate,
                )
            return False
        self._reopens[conn] = (tokens - 1, now, logged)
        return True

    def _link_opened(self, link: _DriveLink) -> None:
        key = link.conn.remote_public_key
        peer = self._peers.get(key)
        address = link.conn.remote_address
        if peer is None:
            peer = _Peer(next(self._ids), key, address)
            self._peers[key] = peer
            self._by_id[peer.peer_id] = peer
            peer.channels.append(link)
            link.peer = peer
            self._emit(peer.event("join"))
            if self._peer_waiters:
                self._wake_peer_waiters()
        else:
            if peer.channels:
                link.held = deque()  # a second connection: in order after the first has ended
            peer.channels.append(link)
            link.peer = peer
            peer.address = address

    def _link_closed(self, link: _DriveLink) -> None:
        self._drop_link(link)
        link.release()  # a newer link that ends first: what it carried is still delivered
        peer = self._peers.get(link.conn.remote_public_key) if link.conn.is_established else None
        if peer is None:
            return
        if link in peer.channels:
            peer.channels.remove(link)
            if peer.channels and peer.channels[0].held is not None:
                peer.channels[0].release()  # the oldest link now: its turn to deliver
        if not peer.channels and not self._has_other_live_channel(peer.public_key):
            self._remove_peer(peer)  # (or the channel that kept the peer waiting was rejected)

    def _remove_peer(self, peer: _Peer) -> None:
        del self._peers[peer.public_key]
        del self._by_id[peer.peer_id]
        self._emit(peer.event("leave"))

    def _has_other_live_channel(self, public_key: bytes) -> bool:
        """Whether a connection to this key that is not closing has a drive channel
        open or opening.

        Two connections to one key are one peer: while the swarm swaps a
        duplicate connection for the one it keeps, the peer stays joined.
        """
        return next(self._live_links_to(public_key), None) is not None

    def _live_links_to(self, public_key: bytes) -> Iterator[_DriveLink]:
        """Links to this key on connections that are not closing, channel open or opening."""
        links = self._links
        return (
            links[conn]
            for conn in self._by_key.get(public_key, ())
            if not conn.is_closed and not links[conn].channel.closed
        )

    def _sending_link(self, peer_id: int) -> _DriveLink:
        """The link to send to ``peer_id`` on: its newest connection that is not closing.

        While the swarm replaces the peer's connection, that is the new connection,
        even before its drive channel has paired: messages queued there go after
        the channel's open, so none is lost and the peer stays reachable.
        """
        peer = self._by_id.get(peer_id)
        if peer is not None:
            for link in reversed(peer.channels):
                if not link.conn._closing:  # is_closed, without the property's call
                    return link
            opening = next(self._live_links_to(peer.public_key), None)
            if opening is not None:
                return opening
            raise PeerNotFound(f"peer {peer_id} is leaving: its connection is closing")
        if type(peer_id) is not int:
            raise TypeError(f"peer_id must be an int, got {type(peer_id).__name__}")
        raise PeerNotFound(f"no live peer with id {peer_id} on {self!r}")

    def _wake_peer_waiters(self) -> None:
        joined = len(self._by_id)
        for count, waiter in self._peer_waiters:
            if count <= joined and not waiter.done():
                waiter.set_result(None)

    def _sending_link_or_none(self, peer_id: int) -> _DriveLink | None:
        """The link send() would use for ``peer_id``, or None when the peer is leaving."""
        try:
            return self._sending_link(peer_id)
        except PeerNotFound:
            return None

    def _emit(self, event: PeerEvent) -> None:
        for watcher in list(self._watchers):
            watcher._put(event)

    def _forget_topic(self, topic: Topic) -> None:
        instances = self._topics.get(topic.name)
        if instances and topic in instances:
            instances.remove(topic)
            if not instances:
                del self._topics[topic.name]

    def _forget_watcher(self, watcher: PeerEvents) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise PeersocketsClosed(f"{self!r} is closed")


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__}")
    if not topic:
        raise InvalidTopic("topic must not be empty")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"topic is {len(topic.encode())} bytes; the limit is {MAX_TOPIC_BYTES}")
    return topic


class _Receiver(Generic[T]):
    """What Topic and PeerEvents share: a bounded queue read by ``async for``, closed once."""

    _inbox: _Waitable[T]

    @property
    def closed(self) -> bool:
        """Whether close() was called (or the Peersockets closed)."""
        return self._inbox.closed

    @property
    def dropped(self) -> int:
        """Items dropped because the queue was full (overflow "drop-oldest")."""
        return self._inbox.dropped

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> Self:
        return self


class Topic(_Receiver[TopicMessage]):
    """One joined instance of a topic: send to a peer id, receive by callback or ``async for``.

    Messages are queued from the moment the Topic exists, unless an
    on_message callback is set, in which case they go to the callbacks
    instead. The queue is fair: each peer's messages wait in their own lane,
    read round robin, so one peer's flood does not delay the others. It is
    bounded by the Peersockets' ``max_queue_messages`` and ``max_queue_bytes``,
    shared equally among the peers with messages queued; past its share,
    ``overflow="pause"`` (the default) stops reading from that peer's
    connection until its lane is half empty (the rest of what it sent waits
    unparsed: nothing is lost), and ``overflow="drop-oldest"`` drops that
    peer's oldest messages and counts them in ``dropped``. A Topic that
    nobody reads should be closed, or it will hold its peers' connections.
    """

    def __init__(self, owner: Peersockets, name: str) -> None:
        self.name = name
        self._owner = owner
        self._extension = EXTENSION_PREFIX + name
        extension_bytes = len(self._extension.encode("utf-8"))
        # frame = uint(channel) uint(type) string(name) message, as one secret-stream message
        self.max_message_size = MAX_MESSAGE - 9 - 1 - uint_length(extension_bytes) - extension_bytes
        """The largest message this topic can send in one frame."""
        self._callbacks: list[MessageCallback] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._inbox: _Inbox = _Inbox(
            owner.max_queue_messages, owner.max_queue_bytes, owner.overflow
        )
        self._receive: Callable[[TopicMessage, Connection | None], None] = self._inbox.put
        """Where a received message goes: the queue, or _put once a callback is set."""

    async def send(self, peer_id: int, message: bytes | bytearray | memoryview) -> None:
        """Send ``message`` to ``peer_id``; waits only for flow control.

        While the connection's write buffer is full, senders wait in line and
        each writes one message per turn. Raises TypeError (message not
        bytes-like), PeerNotFound, MessageTooLarge or TopicClosed.
        """
        if type(message) is not bytes or len(message) > self.max_message_size or self._inbox.closed:
            message = self._checked(message)
        link = self._owner._sending_link(peer_id)
        if link.conn.can_send_now:  # the common case, without a coroutine more
            link.channel.send_extension(self._extension, message)
            return
        await self._send(peer_id, message)

    async def broadcast(self, message: bytes | bytearray | memoryview) -> int:
        """Send ``message`` to every peer of the drive; how many peers it went to.

        The peers are those connected when it is called. A peer that leaves
        meanwhile is skipped, not an error. Peers whose connection can take the
        message now get it at once; the others are waited for together (flow
        control), so a slow peer delays the return but not the others. Raises
        TypeError, MessageTooLarge or TopicClosed as send() does.
        """
        message = self._checked(message)
        owner = self._owner
        sent = 0
        waiting: list[int] = []
        for peer_id in list(owner._by_id):
            link = owner._sending_link_or_none(peer_id)
            if link is None:
                continue
            if link.conn.can_send_now:
                link.channel.send_extension(self._extension, message)
                sent += 1
            else:
                waiting.append(peer_id)
        if waiting:
            results = await asyncio.gather(
                *(self._send(peer_id, message) for peer_id in waiting), return_exceptions=True
            )
            for result in results:
                if result is None:
                    sent += 1
                elif not isinstance(result, (PeerNotFound, ConnectionClosed)):
                    raise result  # TopicClosed, or a bug: not a peer that left
        return sent

    async def _send(self, peer_id: int, message: bytes) -> None:
        owner = self._owner
        while True:
            link = owner._sending_link(peer_id)
            conn = link.conn
            if conn.can_send_now:
                link.channel.send_extension(self._extension, message)
                return
            try:
                await conn.drain()
            except ConnectionClosed:
                continue  # closing while we waited: the peer's next connection, if any
            try:
                if self._inbox.closed:
                    raise TopicClosed(f"topic {self.name!r} is closed")
                if owner._sending_link(peer_id) is link:
                    link.channel.send_extension(self._extension, message)
                    return
            finally:
                conn.end_turn()

    def send_nowait(self, peer_id: int, message: bytes | bytearray | memoryview) -> None:
        """Queue ``message`` for ``peer_id`` without waiting for flow control.

        For sync ``on_message`` callbacks (a reply in the same loop iteration)
        and the odd fire-and-forget; a loop of sends should ``await send()``,
        or unsent bytes pile up until ``max_write_buffer`` ends the connection.
        Raises what send() raises.
        """
        if type(message) is not bytes or len(message) > self.max_message_size or self._inbox.closed:
            message = self._checked(message)
        self._owner._sending_link(peer_id).channel.send_extension(self._extension, message)

    def _checked(self, message: bytes | bytearray | memoryview) -> bytes:
        if self._inbox.closed:
            raise TopicClosed(f"topic {self.name!r} is closed")
        if type(message) is not bytes:
            if not isinstance(message, (bytearray, memoryview)):
                raise TypeError(
                    f"message must be bytes, bytearray or memoryview, got {type(message).__name__}"
                )
            message = bytes(message)  # the caller may reuse its buffer once send returns
        if len(message) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(message)} bytes exceeds the limit of"
                f" {self.max_message_size} bytes for topic {self.name!r}"
            )
        return message

    def on_message(self, callback: MessageCallback) -> None:
        """Call ``callback(TopicMessage)`` for each message, in order; it may be sync or async.

        A sync callback runs as the message is received (it may reply with
        send_nowait); once a callback returns an awaitable, one task per Topic
        awaits it and takes the following messages from the bounded queue, in
        order. Once a callback is set, messages go to the callbacks and no
        longer to ``async for``.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self._callbacks.append(callback)
        self._receive = self._put

    def close(self) -> None:
        """Close this instance; other instances of the topic keep working."""
        if self._inbox.closed:
            return
        self._inbox.close()
        self._owner._forget_topic(self)

    def _put(self, message: TopicMessage, source: Connection | None = None) -> None:
        if not self._callbacks:
            self._inbox.put(message, source)
        elif self._dispatcher is None and not self._inbox._count:
            self._call(message)  # nothing waits: sync callbacks run right now
        else:
            self._inbox.put(message, source)
            if self._dispatcher is None and not self._inbox.closed:
                self._dispatcher = self._owner._spawn(self._run_callbacks(None))

    def _call(self, message: TopicMessage) -> None:
        """Run the callbacks on ``message`` until one returns an awaitable; the task takes over."""
        callbacks = self._callbacks
        if len(callbacks) == 1:  # the common case: one callback, and a sync one returns None
            try:
                result = callbacks[0](message)
            except Exception:
                log.exception("on_message callback for topic %r failed", self.name)
                return
            if result is None or not inspect.isawaitable(result):
                return
            self._dispatcher = self._owner._spawn(self._run_callbacks((result, message, [])))
            return
        pending = self._call_until_awaitable(message, list(callbacks))
        if pending is not None:
            awaitable, rest = pending
            self._dispatcher = self._owner._spawn(self._run_callbacks((awaitable, message, rest)))

    def _call_until_awaitable(
        self, message: TopicMessage, callbacks: list[MessageCallback]
    ) -> tuple[Awaitable[object], list[MessageCallback]] | None:
        """Call ``callbacks`` in order until one returns an awaitable: it and the rest, or None."""
        for index, callback in enumerate(callbacks):
            try:
                result = callback(message)
            except Exception:
                log.exception("on_message callback for topic %r failed", self.name)
                continue
            if result is not None and inspect.isawaitable(result):
                return result, callbacks[index + 1 :]
        return None

    async def _run_callbacks(
        self, pending: tuple[Awaitable[object], TopicMessage, list[MessageCallback]] | None
    ) -> None:
        """Finish ``pending`` (an awaited callback and the callbacks after it), then hand
        queued messages to the callbacks in order, awaiting async ones.

        One task per Topic, alive while messages wait: the queue's bound and
        overflow policy hold for callbacks too.
        """
        inbox = self._inbox
        try:
            if pending is not None:
                awaitable, message, rest = pending
                await self._guard(awaitable)
                await self._run_each(message, rest)
            while len(inbox) and not inbox.closed:
                await self._run_each(inbox.pop(), list(self._callbacks))
        finally:
            self._dispatcher = None

    async def _run_each(self, message: TopicMessage, callbacks: list[MessageCallback]) -> None:
        while callbacks:
            pending = self._call_until_awaitable(message, callbacks)
            if pending is None:
                return
            awaitable, callbacks = pending
            await self._guard(awaitable)

    async def _guard(self, awaitable: Awaitable[object]) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("on_message callback for topic %r failed", self.name)

    def __anext__(self) -> Coroutine[Any, Any, TopicMessage]:
        return self._inbox.get()  # the queue's coroutine itself: no coroutine around it

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._inbox)} queued"
        return f"Topic({self.name!r}, {state})"


class PeerEvents(_Receiver[PeerEvent]):
    """Join and leave events of a drive's peers, by ``async for``; bounded like a Topic.

    Past the bound the oldest events are dropped (``dropped``). A leave whose
    join is still queued (not read yet) removes that join instead of being
    queued: the reader never hears of a peer that came and went meanwhile.
    """

    def __init__(self, owner: Peersockets) -> None:
        self._owner = owner
        self._inbox: _EventInbox = _EventInbox(owner.max_queue_messages, owner.max_queue_bytes)

    def close(self) -> None:
        """Stop receiving events (connections are not affected)."""
        if self._inbox.closed:
            return
        self._inbox.close()
        self._owner._forget_watcher(self)

    def _put(self, event: PeerEvent) -> None:
        self._inbox.put(event)

    def __anext__(self) -> Coroutine[Any, Any, PeerEvent]:
        return self._inbox.get()
