"""Listening on a key pair (HYPERDHT.md section 4; hyperdht's ``lib/server.js`` and ``announcer.js``).

A ``DHTServer`` keeps H(public key) announced on the three closest DHT nodes
(its relays), answers the IK handshakes they forward, opens a UDX stream per
client and a secret-stream on it with the IK keys, and holepunches from its side
when neither peer is reachable directly. Each handshake has a slot (its id is
the holepunch slot the client names); a slot is freed 10 s after it is done,
and at most ``max_handshakes`` are open at once (the rest get no answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..connection import Connection
from ..errors import DecodeError, DHTError, HandshakeError, InvalidSetting
from ..udx import UDXSocket, UDXStream
from ..wire.crypto import KeyPair, blake2b_256
from ..wire.noise import HandshakeResult
from . import records as r
from .addresses import is_private, match_address
from .holepunch import Holepuncher, close_with, local_addresses
from .messages import Address, InternalCommand, accepted_id
from .node import Incoming, RPCNode
from .peer_messages import (
    Firewall,
    HolepunchInfo,
    HolepunchPayload,
    NoisePayload,
    PayloadError,
    RelayInfo,
    SecurePayload,
    UdxInfo,
    holepunch_secret,
    ik_responder,
)
from .query import Reply
from .router import HandshakeReply, HolepunchReply

if TYPE_CHECKING:
    from .dht import DHT

__all__ = ["ConnectionMaker", "DHTServer", "FirewallCheck", "default_connection"]

log = logging.getLogger(__name__)

HANDSHAKE_CLEAR_WAIT: Final = 10.0
"""Seconds a finished (or failed) handshake's slot is kept, so late copies get the same answer."""
HANDSHAKE_INITIAL_TIMEOUT: Final = 10.0
"""Seconds a handshake waits for the client's first packet or the punch to start."""
RELAY_PING_INTERVAL: Final = 3.0
RELAY_PING_ROUNDS: Final = 100
"""Re-announce after this many relay pings (about 5 minutes), or at once when relays are lost."""
ANNOUNCE_RELAYS: Final = 3
DEFAULT_MAX_HANDSHAKES: Final = 1024

FirewallCheck = Callable[[bytes, NoisePayload, Address], bool]
"""firewall(remote_public_key, payload, client_address): True refuses the client (no answer)."""
ConnectionHandler = Callable[[Connection], Awaitable[None] | None]
ConnectionMaker = Callable[[KeyPair, bool, HandshakeResult], Connection]
"""Makes the Connection for a DHT stream: (key pair, initiator, IK result). A Swarm passes its own."""


def default_connection(key_pair: KeyPair, initiator: bool, handshake: HandshakeResult) -> Connection:
    """A Connection with the default settings."""
    return Connection(key_pair, initiator, handshake=handshake)


@dataclass(eq=False)
class _Slot:
    """One client's handshake."""

    id: int
    key: bytes
    reply: bytes = b""
    result: HandshakeResult | None = None
    remote: NoisePayload | None = None
    stream: UDXStream | None = None
    puncher: Holepuncher | None = None
    secure: SecurePayload | None = None
    round: int = 0
    reply_from_puncher: bool = False
    clearing: asyncio.TimerHandle | None = None
    waiting: asyncio.TimerHandle | None = None
    connection: Connection | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class _Announcer:
    """Keeps a server's key announced on the closest nodes, pinging its relays every 3 s."""

    def __init__(self, dht: DHT, key_pair: KeyPair, target: bytes) -> None:
        self.dht = dht
        self.node = dht.node
        self.key_pair = key_pair
        self.target = target
        self.relays: tuple[RelayInfo, ...] = ()
        self.relay_addresses: tuple[Address, ...] = ()
        self._current: dict[Address, Address] = {}
        self._closest: list[Address] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._refresh = asyncio.Event()
        self._updating = False
        self._earlier: list[set[Address]] = [set(), set()]
        """The relays of the two announcements before the current one (hyperdht keeps three)."""

    def is_relay(self, address: Address) -> bool:
        """Whether ``address`` held one of our last three announcements (its tokens count)."""
        return address in self._current or any(address in earlier for earlier in self._earlier)

    async def start(self) -> None:
        await self._update()
        self._task = asyncio.ensure_future(self._background())

    def refresh(self) -> None:
        self._refresh.set()

    async def _background(self) -> None:
        failures = 0
        while not self._stopped:
            for _ in range(RELAY_PING_ROUNDS):
                if self._refresh.is_set() or not self._current:
                    break  # asked to, or nobody holds our announcement
                relays = list(self._current)
                answers = await asyncio.gather(
                    *(self.node.request(a, InternalCommand.PING, internal=True) for a in relays),
                    return_exceptions=True,
                )
                alive = sum(1 for answer in answers if not isinstance(answer, BaseException))
                if alive < min(len(relays), ANNOUNCE_RELAYS):
                    break  # too many relays lost: announce again now
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._refresh.wait(), RELAY_PING_INTERVAL)
            self._refresh.clear()
            if self._stopped:
                return
            try:
                self._updating = True
                await self._update()
                failures = 0
            except DHTError as exc:
                failures += 1
                delay = min(60.0, RELAY_PING_INTERVAL * 2 ** min(failures, 5))
                log.warning(
                    "re-announcing key %s failed (%s); again in %.0f s",
                    self.key_pair.public_key.hex()[:16], exc, delay,
                )
                self._updating = False
                await asyncio.sleep(delay)
            finally:
                self._updating = False

    async def _update(self) -> None:
        run = self.node.query(self.target, r.Command.FIND_PEER, seeds=self._closest)
        async for _reply in run:
            pass
        peer = r.PeerRecord(self.key_pair.public_key, ())
        relays: list[RelayInfo] = []
        relay_addresses: list[Address] = []
        own = self.node.remote_address()
        if own is not None:
            relay_addresses.append(own)
        current: dict[Address, Address] = {}
        announce_to = self.dht.signed_commit(self.target, self.key_pair, peer, r.Command.ANNOUNCE)

        async def commit(reply: Reply) -> None:
            request = announce_to(reply)
            if request is None:
                return  # no token or id: not a storing node
            response, _source = await request
            if response.error:
                return
            if len(relay_addresses) < ANNOUNCE_RELAYS:
                relay_addresses.append(reply.address)
            relays.append(RelayInfo(reply.address, reply.response.to))
            current[reply.address] = reply.response.to

        commits = [commit(reply) for reply in run.closest_replies[:ANNOUNCE_RELAYS]]
        await asyncio.gather(*commits, return_exceptions=True)
        removed = [address for address in self._current if address not in current]
        self._closest = [reply.address for reply in run.closest_replies]
        self.relays = tuple(relays)
        self.relay_addresses = tuple(relay_addresses)
        self._earlier = [set(self._current), self._earlier[0]]
        self._current = current
        if not current:
            raise DHTError(
                f"no DHT node accepted the announcement of {self.key_pair.public_key.hex()}"
            )
        await asyncio.gather(
            *(self._unannounce(address) for address in removed), return_exceptions=True
        )

    async def _unannounce(self, address: Address) -> None:
        """UNANNOUNCE from one node, after a FIND_PEER for its token."""
        response, source = await self.node.request(address, r.Command.FIND_PEER, target=self.target)
        peer = r.PeerRecord(self.key_pair.public_key, ())
        unannounce_to = self.dht.signed_commit(self.target, self.key_pair, peer, r.Command.UNANNOUNCE)
        request = unannounce_to(Reply(address, accepted_id(response.id, source), response))
        if request is not None:
            await request

    async def stop(self) -> None:
        """Stop refreshing (an announcement under way is finished, so that what it announced is
        known), then unannounce from every node holding it."""
        self._stopped = True
        self._refresh.set()
        if self._task is not None:
            if self._updating:
                with contextlib.suppress(DHTError):
                    await self._task
            else:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        current = list(self._current)
        self._current = {}
        await asyncio.gather(
            *(self._unannounce(address) for address in current), return_exceptions=True
        )


class DHTServer:
    """Accepts connections to one key pair over the DHT; make one with ``DHT.listen``.

    ``on_connection(connection)`` is called with each new ``Connection`` (a
    coroutine function runs as a task). ``firewall(remote_public_key, payload,
    address)`` returning True refuses a client silently, as hyperdht does.
    ``share_local_address``: tell clients our LAN addresses (same-LAN shortcut).
    ``holepunch``: False never punches (clients must reach us directly).
    ``max_handshakes``: handshakes open at once (each holds a slot for 10 s after it
    is done); past it new ones get no answer. ``make_connection(key_pair, initiator,
    handshake)``: makes each Connection (a Swarm passes its own).
    """

    def __init__(
        self,
        dht: DHT,
        on_connection: ConnectionHandler | None = None,
        *,
        firewall: FirewallCheck | None = None,
        share_local_address: bool = True,
        holepunch: bool = True,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
        make_connection: ConnectionMaker = default_connection,
    ) -> None:
        if max_handshakes < 1:
            raise InvalidSetting(f"max_handshakes must be >= 1, got {max_handshakes!r}")
        self.dht = dht
        self.on_connection = on_connection
        self.firewall = firewall
        self.share_local_address = share_local_address
        self.holepunch = holepunch
        self.max_handshakes = max_handshakes
        self.make_connection = make_connection
        self.key_pair: KeyPair | None = None
        self.target = b""
        self.refused = 0
        """Handshakes dropped because ``max_handshakes`` were open."""
        self.accepts: Counter[str] = Counter()
        """Connections accepted, by the socket their stream runs on: "puncher" (holepunched)
        or "node" (the client reached one of our node's sockets)."""
        self._slots: list[_Slot | None] = []
        self._by_message: dict[bytes, asyncio.Future[_Slot | None]] = {}
        self._announcer: _Announcer | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> RPCNode:
        return self.dht.node

    @property
    def public_key(self) -> bytes:
        if self.key_pair is None:
            raise DHTError("the server is not listening")
        return self.key_pair.public_key

    @property
    def relay_addresses(self) -> tuple[Address, ...]:
        """The nodes holding our announcement (what a topic announcement should carry)."""
        return self._announcer.relay_addresses if self._announcer is not None else ()

    def __repr__(self) -> str:
        key = self.key_pair.public_key.hex()[:16] if self.key_pair else "not listening"
        return f"<DHTServer {key} handshakes={sum(1 for s in self._slots if s)}>"

    async def listen(self, key_pair: KeyPair) -> None:
        """Register for H(public key) on our node, then announce it (awaits the first announce)."""
        if self.key_pair is not None:
            raise InvalidSetting("this server is already listening")
        target = blake2b_256(key_pair.public_key)
        router = self.dht.router
        if target in router.servers:
            raise InvalidSetting(
                f"key {key_pair.public_key.hex()} is already listening on this DHT"
            )
        self.key_pair = key_pair
        self.target = target
        router.servers[target] = self
        self._announcer = _Announcer(self.dht, key_pair, target)
        try:
            await self._announcer.start()
        except BaseException:
            await self.close()
            raise

    def refresh(self) -> None:
        """Announce again now (after a network change)."""
        if self._announcer is not None:
            self._announcer.refresh()

    async def close(self) -> None:
        """Stop accepting, unannounce from the relays, drop pending handshakes. Connections
        already made stay open."""
        if self._closed:
            return
        self._closed = True
        if self.dht.router.servers.get(self.target) is self:
            del self.dht.router.servers[self.target]
        for slot in self._slots:
            if slot is not None:
                self._drop(slot)
        self._slots.clear()
        self._by_message.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._announcer is not None:
            with contextlib.suppress(DHTError):
                await self._announcer.stop()

    async def __aenter__(self) -> DHTServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- handshakes ---------------------------------------------------------------------------

    async def on_handshake(
        self, noise: bytes, peer_address: Address | None, incoming: Incoming
    ) -> HandshakeReply | None:
        if self._closed:
            return None
        pending = self._by_message.get(noise)
        if pending is None:  # one slot per message 1, however many relays bring it
            if len([s for s in self._slots if s is not None]) >= self.max_handshakes:
                self.refused += 1
                return None
            pending = asyncio.get_running_loop().create_future()
            self._by_message[noise] = pending  # before any await: copies wait for this one
            direct = peer_address is None
            try:
                slot = await self._add_handshake(noise, peer_address or incoming.source, incoming, direct)
            except BaseException:
                pending.set_result(None)
                self._by_message.pop(noise, None)
                raise
            pending.set_result(slot)
            if slot is None:  # refused before a slot was taken: nothing to remember
                self._by_message.pop(noise, None)
        slot = await pending
        if slot is None or self._closed or not slot.reply:
            return None
        socket = (
            slot.puncher.socket if slot.reply_from_puncher and slot.puncher is not None else None
        )
        return HandshakeReply(slot.reply, socket)

    def _new_slot(self, key: bytes) -> _Slot:
        for index, existing in enumerate(self._slots):
            if existing is None:
                slot = _Slot(index, key)
                self._slots[index] = slot
                return slot
        slot = _Slot(len(self._slots), key)
        self._slots.append(slot)
        return slot

    async def _add_handshake(
        self, noise: bytes, client: Address, incoming: Incoming, direct: bool
    ) -> _Slot | None:
        assert self.key_pair is not None
        ik = ik_responder(self.key_pair)
        try:  # before a slot is taken: a message that does not open costs us nothing to keep
            remote = NoisePayload.decode(ik.read_message(noise))
        except (HandshakeError, DecodeError) as exc:
            log.debug("refused a handshake from %s: %s", client, exc)
            return None
        assert ik.remote_static is not None
        if self.firewall is not None:
            try:
                refused = bool(self.firewall(ik.remote_static, remote, client))
            except Exception:
                log.exception("the server's firewall callback failed")
                refused = True
            if refused:
                return None
        slot = self._new_slot(noise)
        if remote.version != 1:
            error = PayloadError.VERSION_MISMATCH
        elif remote.udx is None:
            error = PayloadError.ABORTED
        else:
            error = PayloadError.NONE
        node = self.node
        our_public = node.remote_address()
        addresses: list[Address] = [our_public] if our_public else []
        if self.share_local_address:
            addresses += self._local_addresses()
        if error == PayloadError.NONE:
            slot.stream = node.main_socket.create_stream(
                firewall=lambda sock, source: self._first_packet(slot, sock, source)
            )
        relays = self._announcer.relays if self._announcer is not None else ()
        relay_addresses = self.relay_addresses
        reply = NoisePayload(
            error=error,
            firewall=Firewall.OPEN if our_public else Firewall.UNKNOWN,
            holepunch=None if our_public else HolepunchInfo(slot.id, relays),
            addresses4=tuple(addresses),
            udx=UdxInfo(slot.stream.local_id if slot.stream else 0),
            secret_stream=1,
            relay_addresses=relay_addresses or None,
        )
        slot.reply = ik.write_message(reply.encode())
        slot.result = ik.result()
        slot.remote = remote
        if error != PayloadError.NONE:
            self._clear_later(slot)
            return slot
        if remote.firewall == Firewall.OPEN or direct:
            self._connect(slot, incoming.socket if direct else node.main_socket, client)
            return slot
        loop = asyncio.get_running_loop()
        if not direct and client[0] == incoming.request.to[0]:
            theirs = [a for a in remote.addresses4 if is_private(a[0])]
            if (
                theirs
                and self.share_local_address
                and match_address(self._local_addresses(), theirs)
            ):
                # the LAN shortcut: a puncher, but we keep answering from the main socket
                await self._start_puncher(slot)
                if self._closed:
                    self._drop(slot)
                    return None
                slot.waiting = loop.call_later(HANDSHAKE_INITIAL_TIMEOUT, self._abort, slot)
                return slot
        if our_public is not None or not self.holepunch:
            slot.waiting = loop.call_later(HANDSHAKE_INITIAL_TIMEOUT, self._abort, slot)
            return slot
        await self._start_puncher(slot)
        if self._closed:
            self._drop(slot)
            return None
        slot.reply_from_puncher = slot.puncher is not None
        slot.waiting = loop.call_later(HANDSHAKE_INITIAL_TIMEOUT, self._stop_puncher, slot)
        return slot

    def _local_addresses(self) -> list[Address]:
        return local_addresses(
            self.node.address if self.node.host != "0.0.0.0" else ("0.0.0.0", self.node.address[1])
        )

    def _first_packet(self, slot: _Slot, socket: UDXSocket, source: Address) -> bool:
        """Our stream's firewall: the client's first packet tells where it is (3.6)."""
        if not 0 < source[1] < 65536:
            return True
        if slot.stream is not None and not slot.stream.core.connected:
            self._connect(slot, socket, source)
        return False

    def _connect(self, slot: _Slot, socket: UDXSocket, address: Address) -> None:
        """Connect the slot's stream and start the secret-stream as responder."""
        stream = slot.stream
        if stream is None or stream.core.connected or slot.result is None or slot.remote is None:
            return
        assert slot.remote.udx is not None and self.key_pair is not None
        self._clear_later(slot)
        if slot.waiting is not None:
            slot.waiting.cancel()
            slot.waiting = None
        if slot.puncher is not None:
            slot.puncher.keep_socket = slot.puncher.socket is socket
            slot.puncher.on_abort = None
            slot.puncher.destroy()
        self.accepts["puncher" if slot.puncher is not None and slot.puncher.keep_socket else "node"] += 1
        stream.connect(socket, slot.remote.udx.id, address)
        connection = self.make_connection(self.key_pair, False, slot.result)
        stream.set_protocol(connection)
        connection.connection_made(stream)
        slot.connection = connection
        slot.stream = None
        if slot.puncher is not None and slot.puncher.keep_socket:
            close_with(stream, slot.puncher.socket)
        handler = self.on_connection
        if handler is not None:
            try:
                result = handler(connection)
            except Exception:
                log.exception("on_connection failed")
                return
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _start_puncher(self, slot: _Slot) -> None:
        """A puncher socket for this client, sampling our NAT from it."""
        assert slot.result is not None and slot.remote is not None
        slot.secure = SecurePayload(holepunch_secret(slot.result))
        node = self.node
        socket = await node.open_socket(on_message=lambda data, source: self._on_probe(slot, data, source))
        if self._closed or slot.clearing is not None:
            await socket.close()
            return
        puncher = Holepuncher(
            socket,
            initiator=False,
            firewalled=node.firewalled,
            remote_firewall=slot.remote.firewall,
            on_abort=lambda: self._abort(slot),  # punching gave up: the slot goes too
        )
        slot.puncher = puncher
        puncher.sample_from(node)

    def _on_probe(self, slot: _Slot, data: bytes, source: tuple[str, int]) -> None:
        if slot.puncher is not None:
            slot.puncher.on_probe(data, (source[0], source[1]))

    async def on_holepunch(
        self, slot_id: int, sealed: bytes, peer_address: Address, incoming: Incoming
    ) -> HolepunchReply | None:
        slot = self._slots[slot_id] if 0 <= slot_id < len(self._slots) else None
        if slot is None or self._closed:
            return None
        if slot.secure is None:
            return self._abort_reply(slot)
        payload = slot.secure.decrypt(sealed)
        if payload is None:
            return None
        puncher = slot.puncher
        if puncher is None or puncher.destroyed:
            return self._abort_reply(slot)
        from_relay = self._announcer is not None and self._announcer.is_relay(incoming.source)
        if payload.error != PayloadError.NONE:
            slot.round = max(slot.round, payload.round)
            return self._abort_reply(slot)
        token = slot.secure.token(peer_address)
        echoed = from_relay and payload.remote_token is not None and payload.remote_token == token
        if incoming.socket is puncher.socket:
            puncher.add_sample(incoming.request.to, incoming.source)
        if payload.round >= slot.round:
            slot.round = payload.round
            puncher.update_remote(
                payload.punching,
                payload.firewall,
                payload.addresses,
                peer_address[0] if echoed else None,
            )
        stable = await puncher.analyze()
        if puncher.destroyed:
            return None
        log.debug(
            "holepunch slot %d round %d: we are %s %s, client %s %s (punching: %s)",
            slot.id, payload.round, Firewall(puncher.nat.firewall).name, puncher.nat.addresses,
            Firewall(puncher.remote_firewall).name, payload.remote_address, puncher.remote_punching,
        )
        if not puncher.remote_punching and not stable:
            return self._abort_reply(slot)
        nat = puncher.nat
        if (
            nat.firewall in (Firewall.OPEN, Firewall.CONSISTENT)
            and payload.remote_address is not None
            and payload.remote_address in (nat.addresses or ())
        ):
            log.debug("holepunch slot %d: fast ping to %s:%d", slot.id, *peer_address)
            puncher.ping(peer_address)  # fast mode: the client opened its side already
        if puncher.remote_punching:
            if slot.waiting is not None:
                slot.waiting.cancel()
                slot.waiting = None
            if not puncher.punch():
                return self._abort_reply(slot)
        if nat.firewall != Firewall.UNKNOWN:
            nat.freeze()
        answer = HolepunchPayload(
            error=PayloadError.NONE,
            firewall=nat.firewall,
            round=slot.round,
            connected=puncher.connected,
            punching=puncher.punching,
            addresses=nat.addresses,
            token=token if from_relay else None,
            remote_token=payload.token,
        )
        return HolepunchReply(slot.secure.encrypt(answer), puncher.socket)

    def _abort_reply(self, slot: _Slot, error: int = PayloadError.ABORTED) -> HolepunchReply | None:
        if slot.puncher is not None:
            slot.puncher.destroy()
        if slot.secure is None:
            return None
        payload = HolepunchPayload(error=error, round=slot.round)
        return HolepunchReply(slot.secure.encrypt(payload), self.node.main_socket)

    # -- slot lifetime ------------------------------------------------------------------------

    def _stop_puncher(self, slot: _Slot) -> None:
        slot.waiting = None
        if slot.puncher is not None and not slot.puncher.punching:
            slot.puncher.destroy()
            self._abort(slot)

    def _abort(self, slot: _Slot) -> None:
        """Nobody connected in time: the stream goes, the slot is cleared later."""
        slot.waiting = None
        if slot.puncher is not None:
            slot.puncher.destroy()
        if slot.stream is not None:
            slot.stream.abort()
            slot.stream = None
        self._clear_later(slot)

    def _clear_later(self, slot: _Slot) -> None:
        if slot.clearing is None and not self._closed:
            slot.clearing = asyncio.get_running_loop().call_later(
                HANDSHAKE_CLEAR_WAIT, self._clear, slot
            )

    def _clear(self, slot: _Slot) -> None:
        if slot.id < len(self._slots) and self._slots[slot.id] is slot:
            self._slots[slot.id] = None
            while self._slots and self._slots[-1] is None:
                self._slots.pop()
        self._by_message.pop(slot.key, None)
        self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        for handle in (slot.clearing, slot.waiting):
            if handle is not None:
                handle.cancel()
        for task in list(slot.tasks):
            task.cancel()
        if slot.puncher is not None and not slot.puncher.keep_socket:
            slot.puncher.on_abort = None
            slot.puncher.destroy()
        if slot.stream is not None:
            slot.stream.abort()
            slot.stream = None
