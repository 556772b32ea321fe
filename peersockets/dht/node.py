"""A dht-rpc node on asyncio: two UDP sockets shared with UDX, requests, replies, queries (HYPERDHT.md 1).

The protocol pieces are sans-I/O (``messages``, ``rpc``, ``query``,
``routing``, ``tokens``); this module moves their datagrams through
``UDXSocket``s (so UDX streams share the ports, as in hyperdht), keeps the
clock, and answers dht-rpc's internal commands. Application commands
(hyperdht's) go to ``on_request``.

Modes: an ephemeral node (the default) sends no id and is in nobody's
routing table. ``persistent=True`` makes a node that answers as a storing
node with id H(its bound address); it is meant for nodes whose bound address
is their public one (a bootstrap node, a node on a local network). With
``adaptive_after`` an ephemeral node samples its public address from the
replies it gets (``nat``) and, that long after start, becomes persistent if
the address is consistent and strangers can reach it (``check_firewall()``), as
dht-rpc's adaptive mode does after 20 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import socket as _socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ..errors import DecodeError, DHTError, DHTTimeout, InvalidSetting
from ..udx import UDXSocket
from ..udx.packet import MAX_DATAGRAM
from . import messages as m
from .messages import Address, ErrorCode, InternalCommand, Request, Response
from .nat import NatSampler
from .query import Query, Reply
from .ratelimit import DEFAULT_RATE, RateLimiter
from .routing import MAX_REPINGS, Node, RoutingTable
from .rpc import ATTEMPT_TIMEOUT, Requests
from .tokens import TICK_MS, Tokens

__all__ = ["BootstrapNode", "Incoming", "QueryRun", "RPCNode", "parse_bootstrap"]

log = logging.getLogger(__name__)

TICK: Final = 5.0
"""Seconds of one maintenance tick (dht-rpc's 5000 ms)."""

RECHECK: Final = 720 * TICK
"""An adaptive node that is not persistent re-tests this often (1 h), once its host changed."""
SLEEP_GAP: Final = 15.0
"""A tick this late means the machine slept: an adaptive node turns ephemeral again."""
RESAMPLE_TICKS: Final = 360
"""A table node's view of our address is sampled again after 360 ticks (30 min)."""
PING_TICKS: Final = 8
"""Every 8 ticks the least recently seen table nodes are pinged."""
PINGS_PER_ROUND: Final = 5
REFRESH_TICKS: Final = 60
"""A background query runs after 60 ticks (5 min) without one..."""
SMALL_TABLE_REFRESH_TICKS: Final = 64
"""... and every 64 ticks while the table has fewer than 20 nodes."""
MAX_DOWN_HINTS_PER_TICK: Final = 50
MAX_PING_DELAY_MS: Final = 10_000
"""The longest DELAYED_PING delay answered (dht-rpc's maxPingDelay)."""
MAX_HANDLER_TASKS: Final = 1024
"""Asynchronous request handlers (and housekeeping tasks) running at once; past it, requests
that need one get no answer."""
MAX_DELAYED_REPLIES: Final = 256
"""DELAYED_PING replies waiting at once (strangers choose the delay, up to 10 s)."""
MAX_DOWN_HINT_CHECKS: Final = 10
QUERY_RETRIES: Final = 5
"""Sends after the first for a query's requests (dht-rpc: 6 sends, 6 s)."""


@dataclass(slots=True)
class Incoming:
    """A request that arrived: the decoded request, who sent it, its accepted id, on which socket."""

    request: Request
    source: Address
    id: bytes | None
    socket: UDXSocket


RequestHandler = Callable[["RPCNode", Incoming], Awaitable[None] | None]

SocketBinder = Callable[..., Awaitable[UDXSocket]]
"""How a node binds its UDP sockets: ``UDXSocket.bind``'s signature (host, port, *, udx,
on_message). Tests put a simulated NAT here."""


class BootstrapNode(NamedTuple):
    """A bootstrap entry: where to find it, and the IP to try first ("suggested-ip@host:port")."""

    host: str
    port: int
    suggested: str | None = None


def parse_bootstrap(entries: Sequence[str | tuple[str, int]]) -> list[BootstrapNode]:
    """Bootstrap entries: "host:port", "suggested-ip@host:port" (hyperdht's form) or tuples."""
    parsed: list[BootstrapNode] = []
    for entry in entries:
        suggested: str | None = None
        if isinstance(entry, tuple) and len(entry) >= 2:
            host, port = entry[0], entry[1]
        elif isinstance(entry, str) and ":" in entry:
            where, _, port_text = entry.rpartition(":")
            if "@" in where:
                suggested, _, host = where.partition("@")
            else:
                host = where
            try:
                port = int(port_text)
            except ValueError:
                raise InvalidSetting(f"bootstrap entry {entry!r}: the port is not a number") from None
        else:
            raise InvalidSetting(f"bootstrap entry {entry!r}: expected 'host:port' or (host, port)")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidSetting(f"bootstrap entry {entry!r}: port must be 1-65535")
        if not host:
            raise InvalidSetting(f"bootstrap entry {entry!r}: no host")
        parsed.append(BootstrapNode(str(host), port, suggested or None))
    return parsed


class RPCNode:
    """One dht-rpc node: a server socket (its address is the node's), a client socket, a table."""

    def __init__(
        self,
        *,
        bootstrap: Sequence[str | tuple[str, int]],
        host: str = "0.0.0.0",
        port: int = 0,
        persistent: bool = False,
        adaptive_after: float | None = None,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        request_rate: float = DEFAULT_RATE,
        on_request: RequestHandler | None = None,
        bind_socket: SocketBinder = UDXSocket.bind,
        quick_firewall: bool = True,
    ) -> None:
        self.bind_socket = bind_socket
        self.quick_firewall = quick_firewall
        """Test reachability during bootstrap (dht-rpc's quickFirewall); False stays firewalled
        until the adaptive test."""
        """Binds every UDP socket of this node (its two, and the punchers of connections)."""
        self.bootstrap_entries = parse_bootstrap(bootstrap)
        self.bootstrap_nodes: list[Address] = [(b.suggested or b.host, b.port) for b in self.bootstrap_entries]
        """The bootstrap nodes' addresses (resolved by ``bootstrap()``)."""
        self.host = host
        self.port = port
        self.persistent = persistent
        self.firewalled = not persistent
        """Whether strangers may be unable to reach our server socket (the start state of
        a non-persistent node, until the firewall test says otherwise)."""
        if adaptive_after is not None and adaptive_after <= 0:
            raise InvalidSetting(f"adaptive_after must be > 0 seconds or None, got {adaptive_after!r}")
        self.adaptive_after = adaptive_after
        """Seconds after start when an ephemeral node tests whether it can become persistent
        (dht-rpc's adaptive mode: 240 ticks, 20 min); None: never."""
        self._adaptive: asyncio.Task[bool] | None = None
        self.on_request = on_request
        self.on_persistent: Callable[[], None] | None = None
        """Called when an adaptive node becomes persistent."""
        self.on_ephemeral: Callable[[], None] | None = None
        """Called when an adaptive node turns ephemeral again (after a sleep)."""
        self._last_tick_at = 0.0
        self.server: UDXSocket | None = None
        self.client: UDXSocket | None = None
        self.id = os.urandom(32)
        """Our table id: H(our address) when persistent, else random and never sent."""
        self.table = RoutingTable(self.id)
        self.tokens = Tokens()
        self.limiter = RateLimiter(request_rate, max(1, int(2 * request_rate)))
        """Requests a second each source (host, port) may make; the rest get no answer."""
        self._requests = Requests(random.randrange(0x10000), attempt_timeout=attempt_timeout)
        self._waiters: dict[int, asyncio.Future[tuple[Response, Address]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick = 0
        self._token_ticks = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.nat = NatSampler()
        """Samples of our public address, from the ``to`` of the replies we get."""
        self._maintenance: set[asyncio.Task[object]] = set()
        self._repinging = 0
        self._down_checks = 0
        self._down_hints_sent = 0
        self._last_query_tick = 0
        self._idless_sampled: list[Address] = []
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        """DELAYED_PING replies waiting (at most MAX_DELAYED_REPLIES), cancelled on close."""
        self._extra_sockets: set[UDXSocket] = set()
        """Sockets of open_socket (punchers), closed with the node (with their streams)."""
        self._arrivals: dict[int, UDXSocket | None] = {}
        """tids whose response's arrival socket the firewall check wants to know."""
        self.stats = {"requests_in": 0, "requests_out": 0, "responses_in": 0, "timeouts": 0}

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Bind both sockets (the server socket on host:port) and start the timers."""
        if self.persistent and self.host in ("0.0.0.0", "::", ""):
            raise InvalidSetting(
                f"a persistent DHT node needs the address others reach it at, not {self.host!r}"
                " (its node id is the hash of that address)"
            )
        self._loop = asyncio.get_running_loop()
        self.server = await self.bind_socket(self.host, self.port, on_message=self._on_server_datagram)
        self.client = await self.bind_socket(
            self.host, 0, udx=self.server.udx, on_message=self._on_client_datagram
        )
        if self.persistent:
            self.id = m.node_id(self.address)
            self.table = RoutingTable(self.id)
        self._last_tick_at = self._loop.time()
        self._ticker = self._loop.call_later(TICK_MS / 1000, self._on_tick)
        if self.adaptive_after is not None and not self.persistent:
            self._adaptive = self._loop.create_task(self._adapt(self.adaptive_after))

    async def _adapt(self, delay: float) -> bool:
        """dht-rpc's adaptive mode: test after ``delay``; then again every RECHECK, but only
        once the sampled public host changed."""
        await asyncio.sleep(delay)
        while not self.persistent:
            checked = self.nat.host
            with contextlib.suppress(DHTError):
                if await self.try_persistent():
                    return True
            await asyncio.sleep(RECHECK)
            while self.nat.host == checked and not self.persistent:
                await asyncio.sleep(RECHECK)
        return self.persistent

    def _woke_up(self) -> None:
        """The clock jumped (the machine slept): an adaptive node is ephemeral again, as dht-rpc."""
        if self.adaptive_after is None or self._loop is None:
            return
        log.info("the DHT node slept: ephemeral again until it tests again (in an hour)")
        if self.persistent:
            self.persistent = False  # its table and its socket stay, as in dht-rpc
            if self.on_ephemeral is not None:
                self.on_ephemeral()
        if self._adaptive is not None:
            self._adaptive.cancel()
        self._adaptive = self._loop.create_task(self._adapt(RECHECK))

    @property
    def address(self) -> Address:
        """(host, port) of the server socket: this node's address."""
        if self.server is None:
            raise DHTError("the DHT node is not open")
        host, port = self.server.address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return host, port

    async def close(self) -> None:
        """Stop the timers, fail pending requests with DHTError, close the sockets."""
        if self._closed:
            return
        self._closed = True
        if self._adaptive is not None:
            self._adaptive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adaptive
        for task in list(self._maintenance):
            task.cancel()
        for delayed in self._delayed.values():
            delayed.cancel()
        self._delayed.clear()
        for handle in (self._timer, self._ticker):
            if handle is not None:
                handle.cancel()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(DHTError("the DHT node closed"))
                future.exception()
        self._waiters.clear()
        for sock in (*self._extra_sockets, self.client, self.server):
            if sock is not None:
                await sock.close()
        self._extra_sockets.clear()

    def _on_tick(self) -> None:
        """Every 750 ms: token rotation; every TICK: the maintenance tick counter."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last_tick_at > SLEEP_GAP:
            self._woke_up()
        self._last_tick_at = now
        self.tokens.tick()
        self._token_ticks += 1
        if self._token_ticks * TICK_MS >= TICK * 1000:
            self._token_ticks = 0
            self._maintain()
        self._ticker = self._loop.call_later(TICK_MS / 1000, self._on_tick)

    def _maintain(self) -> None:
        """dht-rpc's tick: every 8th pings the least recently seen nodes; idle tables refresh."""
        assert self._loop is not None
        self._tick += 1
        self._down_hints_sent = 0
        if self._tick % PING_TICKS == 0 and len(self.table):
            oldest = sorted(self.table, key=lambda node: node.seen)[:PINGS_PER_ROUND]
            for stale in oldest:
                self._background(self._check_alive(stale))
        idle = self._tick - self._last_query_tick
        if idle >= REFRESH_TICKS or (len(self.table) < 20 and self._tick % SMALL_TABLE_REFRESH_TICKS == 0):
            self._last_query_tick = self._tick
            picked = self.table.random()
            self._background(self.find_node(picked.id if picked is not None else self.id))

    def _background(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Run maintenance work; its failures are expected (dead nodes) and only logged."""
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._maintenance.add(task)
        task.add_done_callback(self._maintenance_done)

    def _maintenance_done(self, task: asyncio.Task[object]) -> None:
        self._maintenance.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("DHT maintenance: %s", task.exception())

    async def _check_alive(self, node: Node) -> bool:
        """Ping a table node; one that does not answer, or answers without its id, is removed."""
        node.pinged = self._tick
        seen = node.seen
        with contextlib.suppress(DHTError):  # a timeout removed it already
            await self.request(node.address, InternalCommand.PING, internal=True)
        if node.seen == seen and self.table.get(node.id) is node:
            self.table.remove(node.id)
            return False
        return True

    # ---------------------------------------------------------------- requests

    def request(
        self,
        address: Address,
        command: int,
        *,
        internal: bool = False,
        target: bytes | None = None,
        value: bytes | None = None,
        token: bytes | None = None,
        retries: int = 3,
        socket: UDXSocket | None = None,
    ) -> asyncio.Future[tuple[Response, Address]]:
        """Send a request to ``address`` (from ``socket``, else the socket requests leave from);
        the future gets (response, source) or DHTTimeout."""
        return self._send_request(address, command, internal, target, value, token, retries, socket)[1]

    def _send_request(
        self,
        address: Address,
        command: int,
        internal: bool,
        target: bytes | None,
        value: bytes | None,
        token: bytes | None,
        retries: int,
        socket: UDXSocket | None = None,
    ) -> tuple[int, asyncio.Future[tuple[Response, Address]]]:
        if self._closed or self._loop is None:
            raise DHTError("the DHT node is closed")
        sender_id = self.id if self.persistent and (socket is None or socket is self.server) else None
        request = Request(0, address, command, internal, sender_id, token, target, value)
        future: asyncio.Future[tuple[Response, Address]] = self._loop.create_future()
        tid = self._requests.send(request, address, self._loop.time(), retries=retries, context=socket)
        self._waiters[tid] = future
        future.add_done_callback(lambda done: self._forget_cancelled(tid, done))
        self.stats["requests_out"] += 1
        self._flush()
        return tid, future

    def _forget_cancelled(self, tid: int, future: asyncio.Future[tuple[Response, Address]]) -> None:
        """A caller stopped waiting (its task was cancelled): stop resending that request."""
        if future.cancelled() and self._waiters.get(tid) is future:
            self._cancel_request(tid)

    def _cancel_request(self, tid: int) -> None:
        """Stop resending a request and forget its reply."""
        self._requests.cancel(tid)
        future = self._waiters.pop(tid, None)
        if future is not None:
            future.cancel()
        self._arm()

    def _socket_out(self) -> UDXSocket:
        """Requests leave from the server socket once strangers can reach it, else the client's."""
        sock = self.server if self.persistent or not self.firewalled else self.client
        assert sock is not None
        return sock

    def _flush(self) -> None:
        outgoing = self._requests.outgoing
        if outgoing:
            main = self._socket_out()
            for datagram, address, context in outgoing:
                sock = context if isinstance(context, UDXSocket) else main
                if not sock.closed:
                    sock.send(datagram, address)
            outgoing.clear()
        self._arm()

    def _arm(self) -> None:
        if self._closed:
            return
        assert self._loop is not None
        when = self._requests.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        for pending in self._requests.handle_timer(self._loop.time()):
            tid = pending.request.tid
            self.stats["timeouts"] += 1
            future = self._waiters.pop(tid, None)
            node = self.table.get(m.node_id(pending.address))
            if node is not None:
                self.table.remove(node.id)
            if future is not None and not future.done():
                future.set_exception(
                    DHTTimeout(f"no reply from {pending.address[0]}:{pending.address[1]} after {pending.sent} sends")
                )
                future.exception()
        self._flush()

    # ---------------------------------------------------------------- datagrams

    def _on_server_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        assert self.server is not None
        self._on_datagram(data, source, self.server)

    def _on_client_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        assert self.client is not None
        self._on_datagram(data, source, self.client)

    def _on_datagram(self, data: bytes, source_any: tuple[str, int], sock: UDXSocket) -> None:
        source: Address = (source_any[0], source_any[1])
        if len(data) < 2 or source[1] == 0 or data[0] not in (m.REQUEST_ID, m.RESPONSE_ID):
            return
        try:
            message = m.decode(data)
        except DecodeError as exc:
            log.debug("dropped a datagram from %s:%d: %s", source[0], source[1], exc)
            return
        if isinstance(message, Request):
            assert self._loop is not None
            if not self.limiter.allow(source, self._loop.time()):
                return  # refused before it costs anything (a table entry, a re-ping)
        accepted = m.accepted_id(message.id, source)
        if accepted is not None:
            self._saw(accepted, source)
        if isinstance(message, Response):
            if message.tid in self._arrivals:
                self._arrivals[message.tid] = sock  # a firewall probe: sampled on its own
            elif message.to[1]:
                self._sample(message.to, accepted, source, sock)
            self._on_response(message, source)
        else:
            self.stats["requests_in"] += 1
            self._on_request(Incoming(message, source, accepted, sock))

    def _sample(self, to: Address, accepted: bytes | None, source: Address, sock: UDXSocket) -> None:
        """Where a node saw us, as nat-sampler is fed in dht-rpc: once per table node (again
        after 30 min), plus id-less repliers up to as many as there are bootstrap nodes,
        and only replies on the socket our requests leave from."""
        if sock is not self._socket_out():
            return
        if accepted is not None:
            node = self.table.get(accepted)
            if node is None or (node.sampled and self._tick + 1 - node.sampled < RESAMPLE_TICKS):
                return
            node.sampled = self._tick + 1
        else:
            limit = max(1, len(self.bootstrap_nodes))
            if source in self._idless_sampled or len(self._idless_sampled) >= limit:
                return
            self._idless_sampled.append(source)
        self.nat.add(*to)

    def _saw(self, id_: bytes, source: Address) -> None:
        if id_ == self.id:
            return
        node = self.table.get(id_)
        if node is not None:
            node.seen = node.pinged = self._tick  # as dht-rpc: heard from this tick, not re-pinged
            return
        fresh = Node(id_, source[0], source[1], added=self._tick, seen=self._tick, pinged=self._tick)
        if self.table.add(fresh) or self._repinging >= MAX_REPINGS:
            return
        candidate = self.table.reping_candidate(id_, self._tick)
        if candidate is not None:
            self._repinging += 1
            self._background(self._reping_and_swap(candidate, fresh))

    async def _reping_and_swap(self, old: Node, fresh: Node) -> None:
        """A full row: the least recently pinged node keeps its place only if it answers."""
        try:
            if not await self._check_alive(old) and self.table.get(fresh.id) is None:
                self.table.add(fresh)
        finally:
            self._repinging -= 1

    def _on_response(self, response: Response, source: Address) -> None:
        pending = self._requests.response(response)
        if pending is None:
            return
        self.stats["responses_in"] += 1
        future = self._waiters.pop(response.tid, None)
        if future is not None and not future.done():
            future.set_result((response, source))
        self._flush()

    # ---------------------------------------------------------------- answering

    def reply(
        self,
        incoming: Incoming,
        *,
        token: bool = False,
        closer_nodes: bool = False,
        error: int = 0,
        value: bytes | None = None,
        to: Address | None = None,
        socket: UDXSocket | None = None,
    ) -> None:
        """Answer ``incoming`` from the socket it came in on (or ``socket``), to its source (or
        ``to``: a relay answers a client for a server), as dht-rpc answers."""
        request = incoming.request
        destination = to or incoming.source
        sock = socket or incoming.socket
        closer: tuple[Address, ...] = ()
        if closer_nodes and request.target is not None:
            closer = tuple(node.address for node in self.table.closest(request.target))
        response = Response(
            request.tid,
            destination,
            self._id_from(sock),
            self.tokens.token(destination[0]) if token else None,
            closer,
            error,
            value,
        )
        self._send_on(sock, response.encode(), destination)

    def relay(self, incoming: Incoming, value: bytes, to: Address, socket: UDXSocket | None = None) -> None:
        """Pass ``incoming`` on to ``to`` as a request with its tid, command and target and a new
        value, sent once (dht-rpc's ``req.relay``: PEER_HANDSHAKE and PEER_HOLEPUNCH hops)."""
        request = incoming.request
        sock = socket or incoming.socket
        relayed = Request(
            request.tid, to, request.command, request.internal, self._id_from(sock), None, request.target, value
        )
        self._send_on(sock, relayed.encode(), to)

    def _send_on(self, sock: UDXSocket, datagram: bytes, to: Address) -> None:
        """Send an answer or a relayed message; one that grew past a datagram (a relay adds its
        id and an address to what a stranger sent) is dropped, as the request it answers."""
        if sock.closed:
            return
        if len(datagram) > MAX_DATAGRAM:
            log.debug("dropped a %d-byte datagram to %s:%d: larger than a datagram", len(datagram), *to)
            return
        sock.send(datagram, to)

    def _reply_id(self, incoming: Incoming) -> bytes | None:
        """Our id, in replies a persistent node sends from its server socket."""
        return self._id_from(incoming.socket)

    def _id_from(self, sock: UDXSocket) -> bytes | None:
        return self.id if self.persistent and sock is self.server else None

    def now(self) -> float:
        """The event loop's clock, which every timer of this node runs on."""
        assert self._loop is not None
        return self._loop.time()

    @property
    def main_socket(self) -> UDXSocket:
        """The socket our requests leave from (hyperdht's ``dht.socket``): strangers see it."""
        return self._socket_out()

    def remote_address(self) -> Address | None:
        """Our public address if strangers can reach our server socket there, else None
        (dht-rpc's ``remoteAddress()``: only for a node that is not firewalled)."""
        if self.firewalled:
            return None
        if self.nat.host is not None and self.nat.port:
            return self.nat.host, self.nat.port
        return self.address if self.persistent else None

    async def open_socket(self, on_message: Callable[[bytes, tuple[str, int]], None] | None = None) -> UDXSocket:
        """Another socket on our host and UDX instance (a puncher): datagrams of more than one
        byte that are not UDX go to this node, as if they came on its own sockets; one-byte
        datagrams go to ``on_message``."""
        holder: list[UDXSocket] = []

        def deliver(data: bytes, source: tuple[str, int]) -> None:
            if len(data) > 1:
                self._on_datagram(data, source, holder[0])
            elif on_message is not None:
                on_message(data, source)

        if self._closed or self.server is None:
            raise DHTError("the DHT node is closed")
        sock = await self.bind_socket(self.host, 0, udx=self.server.udx, on_message=deliver)
        holder.append(sock)
        self._extra_sockets = {s for s in self._extra_sockets if not s.closed}
        self._extra_sockets.add(sock)
        return sock

    def _on_request(self, incoming: Incoming) -> None:
        request = incoming.request
        if request.token is not None and not self.tokens.valid(incoming.source[0], request.token):
            self.reply(incoming, token=True, closer_nodes=True, error=ErrorCode.INVALID_TOKEN)
            return
        if request.internal:
            self._on_internal(incoming)
            return
        handler = self.on_request
        if handler is None:
            self.reply(incoming, closer_nodes=True, error=ErrorCode.UNKNOWN_COMMAND)
            return
        result = handler(self, incoming)
        if result is not None:
            if len(self._maintenance) >= MAX_HANDLER_TASKS:
                log.debug("dropped a request from %s:%d: %d handlers running", *incoming.source, MAX_HANDLER_TASKS)
                if inspect.iscoroutine(result):
                    result.close()  # never started: not "never awaited"
                return
            self._background(result)  # type: ignore[arg-type]

    def _on_internal(self, incoming: Incoming) -> None:
        request = incoming.request
        command = request.command
        if command == InternalCommand.PING:
            self.reply(incoming)
        elif command == InternalCommand.PING_NAT:
            port = m.ping_nat_port(request.value)
            if port is None:
                return
            redirected = (incoming.source[0], port)  # the reply says, and goes to, the asked port
            response = Response(request.tid, redirected, self._reply_id(incoming), None, (), 0, None)
            incoming.socket.send(response.encode(), redirected)
        elif command == InternalCommand.FIND_NODE:
            if request.target is None:
                return
            self.reply(incoming, closer_nodes=True)
        elif command == InternalCommand.DOWN_HINT:
            down = m.down_hint_address(request.value)
            if down is None:
                return  # no (or a short) address: no reply, as dht-rpc
            node = self.table.get(m.node_id(down))
            if node is not None and self._down_checks < MAX_DOWN_HINT_CHECKS and (
                node.pinged < self._tick or node.down_hints == 0
            ):
                node.down_hints += 1
                self._down_checks += 1
                self._background(self._down_check(node))
            self.reply(incoming)
        elif command == InternalCommand.DELAYED_PING:
            delay = m.delayed_ping_delay(request.value)
            if delay is None or delay > MAX_PING_DELAY_MS or len(self._delayed) >= MAX_DELAYED_REPLIES:
                return
            assert self._loop is not None
            self._delayed[id(incoming)] = self._loop.call_later(delay / 1000, self._delayed_reply, incoming)
        else:
            self.reply(incoming, closer_nodes=True, error=ErrorCode.UNKNOWN_COMMAND)

    def _delayed_reply(self, incoming: Incoming) -> None:
        self._delayed.pop(id(incoming), None)
        self.reply(incoming)

    async def _down_check(self, node: Node) -> None:
        try:
            await self._check_alive(node)
        finally:
            self._down_checks -= 1

    def _hint_down(self, down: Address, referrers: list[Address]) -> None:
        """Tell the nodes that named ``down`` in a query that it did not answer (50 a tick)."""
        value = m.down_hint_value(down)
        for referrer in referrers:
            if self._down_hints_sent >= MAX_DOWN_HINTS_PER_TICK:
                return
            self._down_hints_sent += 1
            future = self.request(referrer, InternalCommand.DOWN_HINT, internal=True, value=value, retries=2)
            future.add_done_callback(_ignore_result)

    # ---------------------------------------------------------------- queries

    def query(
        self,
        target: bytes,
        command: int,
        *,
        internal: bool = False,
        value: bytes | None = None,
        seeds: Sequence[Address] | None = None,
    ) -> QueryRun:
        """Ask the nodes closest to ``target``, closer and closer; iterate it for every
        successful reply. Its ``closest_replies`` (after the iteration) are the storing
        nodes a commit goes to; each run has its own, however many overlap."""
        if self._closed:
            raise DHTError(f"the DHT node is closed: no query for {target.hex()}")
        seed_list = list(seeds) if seeds is not None else [n.address for n in self.table.closest(target)]
        if len(seed_list) < 20:
            seed_list += [b for b in self.bootstrap_nodes if b not in seed_list]
        state = Query(target, seed_list, own_id=self.id if self.persistent else None)
        self._last_query_tick = self._tick
        return QueryRun(state, self._run_query(state, command, internal, value))

    async def _run_query(
        self, query: Query, command: int, internal: bool, value: bytes | None
    ) -> AsyncIterator[Reply]:
        assert self._loop is not None
        target = query.target
        waiting: dict[asyncio.Future[tuple[Response, Address]], Address] = {}
        sent_at: dict[asyncio.Future[tuple[Response, Address]], float] = {}
        tids: dict[asyncio.Future[tuple[Response, Address]], int] = {}
        slow_after = self._requests.attempt_timeout
        try:
            while True:
                now = self._loop.time()
                slow = sum(1 for started in sent_at.values() if now - started >= slow_after)
                for address in query.next_nodes(slow):
                    tid, future = self._send_request(address, command, internal, target, value, None, QUERY_RETRIES)
                    waiting[future] = address
                    sent_at[future] = now
                    tids[future] = tid
                if not waiting or query.done_but_slow(slow):
                    return
                soonest = min(sent_at.values()) + slow_after - now
                timeout = soonest if soonest > 0 else slow_after
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    address = waiting.pop(future)
                    del sent_at[future]
                    del tids[future]
                    try:
                        response, source = future.result()
                    except DHTError:
                        if self._closed:
                            raise DHTError(f"the DHT node closed during a query for {target.hex()}") from None
                        referrers = query.timed_out(address)
                        if referrers:
                            self._hint_down(address, referrers)
                        continue
                    accepted = m.accepted_id(response.id, source)
                    query.replied(address, response, accepted)
                    if response.error == 0:
                        yield Reply(address, accepted, response)
        finally:
            for future in waiting:  # an abandoned query sends nothing more
                self._cancel_request(tids[future])

    async def find_node(self, target: bytes) -> list[Reply]:
        """An iterative FIND_NODE; returns the closest replies (persistent nodes)."""
        run = self.query(target, InternalCommand.FIND_NODE, internal=True)
        async for _reply in run:
            pass
        return list(run.closest_replies)

    async def bootstrap(self) -> None:
        """Resolve the bootstrap nodes, then fill the table with a query for our own id.

        An entry with a suggested IP is pinged there first and resolved by name only if
        that fails, as hyperdht does. Entries that do not resolve are skipped with a
        warning; if no node answers, a warning says so (the node keeps working alone).
        """
        assert self._loop is not None
        resolved: list[Address] = []
        for entry in self.bootstrap_entries:
            address = await self._resolve(entry)
            if address is not None and address not in resolved:
                resolved.append(address)
        self.bootstrap_nodes = resolved
        replies = 0
        probe: asyncio.Future[tuple[Response, Address]] | None = None
        probe_tid = -1
        with contextlib.suppress(DHTError):
            async for reply in self.query(self.id, InternalCommand.FIND_NODE, internal=True):
                replies += 1
                if probe is None and self.firewalled and self.quick_firewall:
                    # dht-rpc's quick firewall test: does a PING_NAT answer reach our server socket?
                    assert self.server is not None
                    value = m.ping_nat_value(self.server.address[1])
                    probe_tid, probe = self._send_request(
                        reply.address, InternalCommand.PING_NAT, True, None, value, None, 0
                    )
                    self._arrivals[probe_tid] = None
        if probe is not None:
            with contextlib.suppress(DHTError):
                await probe
            reached = self._arrivals.pop(probe_tid, None) is self.server
            sampler = await self._probe_reachability() if reached else None
            if sampler is not None:
                self.nat = sampler  # requests leave from the server socket now: sample that
                self._idless_sampled.clear()
                self.firewalled = False
                log.info("the DHT node is reachable: its requests leave from its server socket")
                with contextlib.suppress(DHTError):
                    await self.find_node(self.id)
        if self.bootstrap_entries and not replies:
            names = ", ".join(f"{b.host}:{b.port}" for b in self.bootstrap_entries)
            log.warning("no DHT bootstrap node answered (%s): this node knows no other", names)

    async def _resolve(self, entry: BootstrapNode) -> Address | None:
        assert self._loop is not None
        if entry.suggested is not None:
            try:
                await self.request((entry.suggested, entry.port), InternalCommand.PING, internal=True, retries=1)
                return entry.suggested, entry.port
            except DHTError:
                pass  # resolve the name instead
        try:
            infos = await self._loop.getaddrinfo(entry.host, entry.port, family=_socket.AF_INET, type=_socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("DHT bootstrap node %s:%d does not resolve: %s", entry.host, entry.port, exc)
            return None
        return str(infos[0][4][0]), entry.port

    # ---------------------------------------------------------------- NAT and firewall

    async def check_firewall(self) -> bool:
        """True unless strangers can reach our server socket at the address they see (below)."""
        return await self._probe_reachability() is None

    async def reachable_address(self) -> Address | None:
        """Our public address if strangers can reach our server socket there (below), else None."""
        probe = await self._probe_reachability()
        return None if probe is None or probe.host is None else (probe.host, probe.port)

    async def _probe_reachability(self) -> NatSampler | None:
        """dht-rpc's firewall check: our public address if strangers can reach our server socket.

        PING_NAT (asking for the reply on our server socket's port) goes to up to five
        recent table nodes and the bootstrap nodes. Reachable if enough replies arrive
        on the server socket (3 when 5 or more were asked, else 1), and the address
        they report is consistent, at the sampled host, with our server socket's port.
        """
        assert self.server is not None
        server_port = self.server.address[1]
        candidates = [node.address for node in list(self.table)[-5:]]
        candidates += [address for address in self.bootstrap_nodes if address not in candidates]
        if not candidates or self.nat.host is None:
            return None
        value = m.ping_nat_value(server_port)
        tids: list[int] = []
        futures = []
        for address in candidates:
            tid, future = self._send_request(address, InternalCommand.PING_NAT, True, None, value, None, 3)
            self._arrivals[tid] = None
            futures.append(future)
            tids.append(tid)
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            arrivals = {tid: self._arrivals.pop(tid, None) for tid in tids}
        probe = NatSampler()
        confirmed = 0
        for tid, result in zip(tids, results, strict=True):
            if isinstance(result, BaseException) or arrivals[tid] is not self.server:
                continue
            response, _source = result
            confirmed += 1
            probe.add(*response.to)
        needed = 3 if len(candidates) >= 5 else 1
        if confirmed < needed or probe.host != self.nat.host or probe.port != server_port:
            return None
        return probe

    async def try_persistent(self) -> bool:
        """Become persistent if our address is consistent and reachable: id = H(public address)."""
        if self.persistent or self.server is None:
            return self.persistent
        host, port = self.nat.host, self.nat.port
        if host is None or port == 0:
            return False  # no sample yet, or a port-randomizing NAT
        probe = await self._probe_reachability()
        if probe is None or probe.host is None or (self.nat.host, self.nat.port) != (host, port) or self.persistent:
            return False  # firewalled, or our address changed meanwhile
        public = (probe.host, probe.port)
        self.nat = probe  # from now on requests leave from the server socket: its samples count
        self._idless_sampled.clear()
        self.firewalled = False
        self.id = m.node_id(public)
        self.table, _left_out = self.table.with_id(self.id)
        self.persistent = True
        if self.on_persistent is not None:
            self.on_persistent()
        log.info("the DHT node is persistent now, at %s:%d", *public)
        with contextlib.suppress(DHTError):
            await self.find_node(self.id)
        return True


def _ignore_result(future: asyncio.Future[tuple[Response, Address]]) -> None:
    if not future.cancelled():
        future.exception()


class QueryRun:
    """One running query: iterate it for the replies; ``closest_replies`` once it is done."""

    def __init__(self, state: Query, replies: AsyncIterator[Reply]) -> None:
        self.state = state
        self._replies = replies

    def __aiter__(self) -> AsyncIterator[Reply]:
        return self._replies

    async def aclose(self) -> None:
        """Stop the query: its requests still out are cancelled."""
        aclose = getattr(self._replies, "aclose", None)
        if aclose is not None:
            await aclose()

    @property
    def closest_replies(self) -> list[Reply]:
        """The replies with an accepted id, closest to the target first (at most k)."""
        return list(self.state.closest_replies)
