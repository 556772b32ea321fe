"""Connecting to a public key (HYPERDHT.md 3.1-3.10; hyperdht's ``lib/connect.js``).

FIND_PEER finds the nodes holding the server's announcement; the same IK
message 1 goes through up to two of them at a time (three with relays known
beforehand, tried first); the first valid reply wins. Its payload and the
firewall table decide the path: straight to the server, the same-LAN shortcut,
or holepunching with PEER_HOLEPUNCH rounds. The UDX stream then carries a
secret-stream started with the IK keys: the ``Connection`` is the TCP one from
protomux up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..connection import Connection
from ..errors import (
    ConnectionClosed,
    DecodeError,
    DHTError,
    DHTPeerNotFound,
    HandshakeError,
    HandshakeRefused,
    HolepunchFailed,
    PeerConnectError,
)
from ..udx import HOLD, UDXSocket, UDXStream
from ..wire.crypto import KeyPair, blake2b_256
from ..wire.noise import HandshakeResult, NoiseIK
from . import records as r
from .addresses import is_bogon, is_reserved, match_address
from .holepunch import Holepuncher, close_with, local_addresses
from .messages import Address, InternalCommand
from .peer_messages import (
    Firewall,
    HandshakeMessage,
    HolepunchMessage,
    HolepunchPayload,
    Mode,
    NoisePayload,
    PayloadError,
    RelayInfo,
    SecurePayload,
    UdxInfo,
    holepunch_secret,
    ik_initiator,
)
from .server import ConnectionMaker, default_connection

if TYPE_CHECKING:
    from .node import RPCNode

__all__ = ["Connector"]

log = logging.getLogger(__name__)

PASSIVE_WAIT: Final = 10.0
"""Seconds an OPEN client waits for the server to connect to it."""
HANDSHAKE_RETRIES: Final = 3
FIND_PEER_RETRIES: Final = 3


@dataclass(frozen=True, slots=True)
class _Handshake:
    """A valid reply: the server's payload, and the addresses as the relay saw them."""

    payload: NoisePayload
    result: HandshakeResult
    relay: Address
    relayed: bool
    server_address: Address
    client_address: Address
    socket: UDXSocket


class Connector:
    """One ``DHT.connect``: finds the server, handshakes, picks the path, returns the Connection."""

    def __init__(
        self,
        node: RPCNode,
        key_pair: KeyPair,
        public_key: bytes,
        *,
        relay_addresses: tuple[Address, ...] = (),
        local_connection: bool = True,
        make_connection: ConnectionMaker = default_connection,
    ) -> None:
        self.node = node
        self.make_connection = make_connection
        self.key_pair = key_pair
        self.public_key = public_key
        self.target = blake2b_256(public_key)
        self.relay_addresses = relay_addresses
        self.local_connection = local_connection
        self.ik: NoiseIK = ik_initiator(key_pair, public_key)
        self.stream: UDXStream = node.main_socket.create_stream(firewall=self._first_packet)
        self.handshake: _Handshake | None = None
        self.puncher: Holepuncher | None = None
        self.path = ""
        """How the stream was connected: "direct", "relay" (the relay was the server), "open",
        "passive" (the server reached us), "lan" or "holepunch"."""
        self._early: tuple[UDXSocket, Address] | None = None
        # a firewall rejection before the handshake is done: the packet is resent later
        self._connected: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._round = 0
        self._secure: SecurePayload | None = None
        self._told_open = False
        self.learned_relays: tuple[Address, ...] = ()
        """After a connect: where the server's announcement is (for the next connect to it)."""
        self._stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- the whole thing ----------------------------------------------------------------------

    async def run(self) -> Connection:
        """Find, handshake, choose the path; the Connection once the server's header came back."""
        key = self.public_key.hex()
        try:
            handshake = await self._find_and_handshake()
            self.handshake = handshake
            self._secure = SecurePayload(holepunch_secret(handshake.result))
            path: asyncio.Future[None] = asyncio.ensure_future(self._choose_path(handshake))
            self._tasks.add(path)
            waits: list[asyncio.Future[Any]] = [path, self._connected, self._stop]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if self._connected.done():
                connection = self._connected.result()
            elif self._stop.done():
                raise PeerConnectError(f"the DHT closed while connecting to peer {key}")
            else:
                path.result()  # raises the path's failure
                connection = await self._connected
            await asyncio.shield(connection.remote_opened)  # the path works: its header came back
            return connection
        except PeerConnectError:
            self._abandon()
            raise
        except (DHTError, ConnectionClosed, HandshakeError) as exc:  # the node closed, the stream died
            self._abandon()
            raise PeerConnectError(f"connecting to peer {key} failed: {exc}") from exc
        except BaseException:
            self._abandon()
            raise
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.puncher is not None:
                self.puncher.on_abort = None
                self.puncher.destroy()

    def stop(self) -> None:
        """The DHT is closing: give up now (``run`` raises PeerConnectError)."""
        if not self._stop.done():
            self._stop.set_result(None)

    def _abandon(self) -> None:
        if not self._connected.done():
            self._connected.cancel()
            if not self.stream.core.connected:
                self.stream.abort()
        elif not self._connected.cancelled() and self._connected.exception() is None:
            self._connected.result().abort()

    # -- finding the server and the IK handshake ----------------------------------------------

    def _message_one(self) -> bytes:
        node = self.node
        public = node.remote_address()
        self._told_open = public is not None  # what the server will act on, whatever changes later
        addresses: list[Address] = [public] if public else []
        if self.local_connection:
            addresses += local_addresses(
                node.server.address if node.server is not None else node.address
            )
        payload = NoisePayload(
            firewall=Firewall.OPEN if public else Firewall.UNKNOWN,
            addresses4=tuple(addresses),
            udx=UdxInfo(self.stream.local_id),
            secret_stream=1,
        )
        return self.ik.write_message(payload.encode())

    async def _find_and_handshake(self) -> _Handshake:
        noise = self._message_one()
        attempts = 0
        tried: set[Address] = set()
        running: set[asyncio.Task[_Handshake]] = set()
        preknown = list(self.relay_addresses)
        limit = 3 if preknown else 2

        def start(relay: Address, found: bool = True) -> None:
            """Try ``relay``; ``found``: the query found the record there (a relay known
            beforehand that fails does not make the peer "found", as in hyperdht)."""
            nonlocal attempts
            tried.add(relay)
            attempts += found
            running.add(asyncio.ensure_future(self._handshake_through(relay, noise)))

        async def settle_one() -> _Handshake | None:
            """Wait for one attempt to end: its handshake, or None if it failed (a refusal by
            the server itself is final and raised)."""
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            task = done.pop()
            running.discard(task)
            try:
                return task.result()
            except PeerConnectError:
                raise
            except (DHTError, DecodeError, HandshakeError) as exc:
                log.debug("a handshake attempt for %s failed: %s", self.public_key.hex()[:16], exc)
                return None

        try:
            for relay in preknown[:limit]:
                start(relay, found=False)
            for _round in range(2 if preknown else 1):
                run = self.node.query(self.target, r.Command.FIND_PEER, seeds=preknown or None)
                async with contextlib.aclosing(run):  # leaving early stops the query's requests
                    async for reply in run:
                        if reply.address in tried or reply.response.value is None:
                            continue
                        try:
                            r.decode_peer_record(reply.response.value)
                        except DecodeError:
                            continue
                        while len(running) >= limit:
                            found = await settle_one()
                            if found is not None:
                                return found
                        start(reply.address)
                while running:
                    found = await settle_one()
                    if found is not None:
                        return found
                preknown = []
                tried = set()  # the second round may try a relay again (it may have lost a packet)
        finally:
            for task in running:
                task.cancel()
        if attempts:
            raise HandshakeRefused(
                f"peer {self.public_key.hex()} was found on {attempts} node(s) but no handshake completed",
                "PEER_CONNECTION_FAILED",
            )
        raise DHTPeerNotFound(f"no DHT node knows peer {self.public_key.hex()}: is it listening?")

    async def _handshake_through(self, relay: Address, noise: bytes) -> _Handshake:
        value = HandshakeMessage(Mode.FROM_CLIENT, noise).encode()
        socket = self.node.main_socket
        response, source = await self.node.request(
            relay,
            r.Command.PEER_HANDSHAKE,
            target=self.target,
            value=value,
            retries=HANDSHAKE_RETRIES,
        )
        if response.value is None or source != relay:
            raise DecodeError(f"bad handshake reply from {source[0]}:{source[1]}")
        message = HandshakeMessage.decode(response.value)
        if message.mode != Mode.REPLY or not message.noise:
            raise DecodeError(
                f"handshake reply from {source[0]}:{source[1]} has mode {message.mode}"
            )
        if self.handshake is not None:
            raise DecodeError("another relay's reply came first")
        payload = NoisePayload.decode(self.ik.read_message(message.noise))
        key = self.public_key.hex()
        if payload.version != 1:
            raise HandshakeRefused(
                f"peer {key} speaks handshake version {payload.version}", "SERVER_INCOMPATIBLE"
            )
        if payload.error != PayloadError.NONE:
            raise HandshakeRefused(
                f"peer {key} refused the connection (error {payload.error})", "SERVER_ERROR"
            )
        if payload.udx is None:
            raise HandshakeRefused(f"peer {key} sent no UDX stream", "SERVER_ERROR")
        result = self.ik.result()
        server_address = message.peer_address or relay
        self.learned_relays = payload.relay_addresses or (relay,)
        return _Handshake(
            payload,
            result,
            relay,
            message.peer_address is not None,
            server_address,
            response.to,
            socket,
        )

    # -- the path -----------------------------------------------------------------------------

    def _first_packet(self, socket: UDXSocket, source: Address) -> bool | str:
        """Our stream's firewall: the server's first packet may show the way. Before the handshake
        is done it is held (a reachable server sends it before its reply reaches us)."""
        if not 0 < source[1] < 65536:
            return True
        if self.stream.core.connected:
            return False
        if self.handshake is None:
            self._early = (socket, source)
            return HOLD
        self.path = self.path or "passive"
        self._connect(socket, source)
        return False

    def _connect(self, socket: UDXSocket, address: Address) -> None:
        if self._connected.done() or self.stream.core.connected:
            return
        log.debug("connecting to %s at %s:%d (%s)", self.public_key.hex()[:16], *address, self.path)
        handshake = self.handshake
        assert handshake is not None and handshake.payload.udx is not None
        if self.puncher is not None:
            self.puncher.keep_socket = self.puncher.socket is socket
            self.puncher.on_abort = None
            self.puncher.destroy()
            if self.puncher.keep_socket:
                close_with(self.stream, socket)
        self.stream.connect(socket, handshake.payload.udx.id, address)
        connection = self.make_connection(self.key_pair, True, handshake.result)
        self.stream.set_protocol(connection)
        connection.connection_made(self.stream)
        self._connected.set_result(connection)

    async def _choose_path(self, hs: _Handshake) -> None:
        payload = hs.payload
        log.debug(
            "handshake with %s through %s:%d: server at %s:%d (%s), we are at %s:%d, server %s",
            self.public_key.hex()[:16], *hs.relay, *hs.server_address,
            "relayed" if hs.relayed else "direct", *hs.client_address, Firewall(payload.firewall).name,
        )
        key = self.public_key.hex()
        if self._early is not None:
            self.path = "passive"
            self._connect(*self._early)
            return
        if not hs.relayed:
            self.path = "relay"
            self._connect(hs.socket, hs.relay)
            return
        punchable = payload.holepunch is not None and bool(payload.holepunch.relays)
        if payload.firewall == Firewall.OPEN or not punchable:  # reachable, or nothing else to try
            self.path = "open"
            target = next((a for a in payload.addresses4 if not is_bogon(a[0])), hs.server_address)
            self._connect(self.node.main_socket, target)
            return
        if self._told_open:  # the server connects to us
            await asyncio.sleep(PASSIVE_WAIT)
            raise HolepunchFailed(
                f"peer {key} did not connect to us in {PASSIVE_WAIT:.0f} s", "HOLEPUNCH_ABORTED"
            )
        lan: asyncio.Task[None] | None = None
        if self.local_connection and hs.client_address[0] == hs.server_address[0]:
            theirs = [a for a in payload.addresses4 if not is_reserved(a[0])]
            if theirs:
                assert self.node.server is not None
                mine = local_addresses(self.node.server.address)
                lan = asyncio.ensure_future(self._try_lan(match_address(mine, theirs) or theirs[0]))
                self._tasks.add(lan)
        assert payload.holepunch is not None
        try:
            await self._holepunch(hs)
        except PeerConnectError:
            if lan is not None:
                await lan  # the LAN shortcut may still win
                if self._connected.done():
                    return
            raise

    async def _try_lan(self, address: Address) -> None:
        """The same-LAN shortcut: if the server's local address answers a PING, go there."""
        with contextlib.suppress(DHTError):
            await self.node.request(address, InternalCommand.PING, internal=True)
            if not self._connected.done():
                self.path = "lan"
                assert self.node.server is not None
                self._connect(self.node.server, address)

    # -- holepunching -------------------------------------------------------------------------

    async def _holepunch(self, hs: _Handshake) -> None:
        node = self.node
        key = self.public_key.hex()
        payload = hs.payload
        assert payload.holepunch is not None
        socket = await node.open_socket(on_message=self._on_probe)
        puncher = Holepuncher(
            socket,
            initiator=True,
            firewalled=node.firewalled,
            remote_firewall=payload.firewall,
            on_connect=self._punched,
        )
        self.puncher = puncher
        puncher.sample_from(node)
        server_relay = next(
            (x for x in payload.holepunch.relays if x.relay_address == hs.relay),
            payload.holepunch.relays[0],
        )
        server_address = hs.server_address
        token, peer_address = await self._probe_round(hs, server_relay, server_address, retry=True)
        if self._connected.done():
            return
        if server_relay.relay_address == hs.relay and peer_address != server_address:
            server_address = peer_address
            puncher.open_session(server_address)
        puncher.nat.freeze()
        if puncher.nat.firewall >= Firewall.RANDOM or puncher.remote_firewall >= Firewall.RANDOM:
            await self._abort(hs, server_relay)
            raise HolepunchFailed(
                f"peer {key}: a port-randomizing NAT on one side; only consistent NATs are punched",
                "HOLEPUNCH_ABORTED",
            )
        assert self._secure is not None
        await self._update(
            hs,
            server_address,
            hs.relay,
            HolepunchPayload(
                firewall=puncher.nat.firewall,
                round=self._next_round(),
                punching=True,
                addresses=puncher.nat.addresses,
                token=self._secure.token(server_address),
                remote_token=token,
            ),
        )
        if self._connected.done():
            return
        if not puncher.remote_punching:
            raise HolepunchFailed(f"peer {key} is not holepunching", "REMOTE_NOT_HOLEPUNCHING")
        if not puncher.punch():
            raise HolepunchFailed(f"peer {key} cannot be holepunched", "REMOTE_NOT_HOLEPUNCHABLE")
        while not self._connected.done() and not puncher.destroyed:
            await asyncio.sleep(0.05)
        if not self._connected.done():
            raise HolepunchFailed(f"holepunching to peer {key} found no path", "HOLEPUNCH_ABORTED")

    async def _probe_round(
        self, hs: _Handshake, server_relay: RelayInfo, server_address: Address, retry: bool
    ) -> tuple[bytes | None, Address]:
        puncher = self.puncher
        assert puncher is not None
        key = self.public_key.hex()
        puncher.open_session(server_address)
        reply, to, source, peer_address = await self._update(
            hs,
            server_relay.peer_address,
            server_relay.relay_address,
            HolepunchPayload(
                firewall=puncher.nat.firewall,
                round=self._next_round(),
                addresses=puncher.nat.addresses,
                remote_address=server_address,
            ),
        )
        puncher.add_sample(to, source)
        log.debug(
            "probe round to %s: remote %s %s, local %s %s",
            self.public_key.hex()[:16], Firewall(puncher.remote_firewall).name, reply.addresses,
            Firewall(puncher.nat.firewall).name, puncher.nat.addresses,
        )
        if self._connected.done():
            return reply.token, peer_address
        if puncher.remote_firewall == Firewall.UNKNOWN:
            await asyncio.sleep(1.0)
        await puncher.analyze()
        if (puncher.remote_firewall == Firewall.UNKNOWN or reply.token is None) and retry:
            return await self._probe_round(hs, server_relay, server_address, retry=False)
        if puncher.remote_firewall == Firewall.UNKNOWN or puncher.nat.firewall == Firewall.UNKNOWN:
            await self._abort(hs, server_relay)
            raise HolepunchFailed(
                f"peer {key}: the NAT of one side stayed unknown", "HOLEPUNCH_PROBE_TIMEOUT"
            )
        if puncher.remote_firewall >= Firewall.RANDOM and puncher.nat.firewall >= Firewall.RANDOM:
            await self._abort(hs, server_relay)
            raise HolepunchFailed(
                f"peer {key}: both sides randomize ports", "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS"
            )
        return reply.token, peer_address

    def _next_round(self) -> int:
        self._round += 1
        return self._round - 1

    async def _update(
        self, hs: _Handshake, peer_address: Address, relay: Address, payload: HolepunchPayload
    ) -> tuple[HolepunchPayload, Address, Address, Address]:
        """One PEER_HOLEPUNCH round through ``relay``: (their payload, us as seen, from, server)."""
        puncher = self.puncher
        assert puncher is not None and self._secure is not None and hs.payload.holepunch is not None
        key = self.public_key.hex()
        value = HolepunchMessage(
            Mode.FROM_CLIENT, hs.payload.holepunch.id, self._secure.encrypt(payload), peer_address
        )
        try:
            response, source = await self.node.request(
                relay,
                r.Command.PEER_HOLEPUNCH,
                target=self.target,
                value=value.encode(),
                socket=puncher.socket,
            )
        except DHTError as exc:
            raise HolepunchFailed(
                f"holepunching to peer {key}: its relay did not answer: {exc}", "HOLEPUNCH_ABORTED"
            ) from exc
        try:
            message = HolepunchMessage.decode(response.value or b"")
        except DecodeError as exc:
            raise HolepunchFailed(
                f"peer {key}: bad holepunch reply: {exc}", "BAD_HOLEPUNCH_REPLY"
            ) from exc
        if message.mode != Mode.REPLY or source != relay:
            raise HolepunchFailed(
                f"peer {key}: bad holepunch reply from {source}", "BAD_HOLEPUNCH_REPLY"
            )
        remote = self._secure.decrypt(message.payload)
        if remote is None:
            raise HolepunchFailed(
                f"peer {key}: a holepunch reply did not open", "HOLEPUNCH_INVALID"
            )
        if remote.error != PayloadError.NONE:
            raise HolepunchFailed(
                f"peer {key} aborted holepunching (error {remote.error})", "REMOTE_ABORTED"
            )
        echoed = (
            remote.remote_token is not None
            and payload.token is not None
            and remote.remote_token == payload.token
        )
        puncher.update_remote(
            remote.punching, remote.firewall, remote.addresses, peer_address[0] if echoed else None
        )
        return remote, response.to, source, message.peer_address or relay

    async def _abort(self, hs: _Handshake, server_relay: RelayInfo) -> None:
        """Tell the server we give up (payload error ABORTED), best effort."""
        with contextlib.suppress(PeerConnectError):
            await self._update(
                hs,
                server_relay.peer_address,
                server_relay.relay_address,
                HolepunchPayload(error=PayloadError.ABORTED, round=self._next_round()),
            )

    def _on_probe(self, data: bytes, source: tuple[str, int]) -> None:
        if self.puncher is not None:
            self.puncher.on_probe(data, (source[0], source[1]))

    def _punched(self, socket: UDXSocket, source: Address) -> None:
        self.path = "holepunch"
        self._connect(socket, source)
