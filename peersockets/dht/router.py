"""PEER_HANDSHAKE and PEER_HOLEPUNCH routing (HYPERDHT.md 3.3, 3.9; hyperdht's ``lib/router.js``).

Every hop is a request with the client's tid, command and target; only the last
hop, from the client's relay, is a response. A node routes for its own servers
(``servers``, by target = H(public key)) and, when persistent, for the servers
that self-announced to it (their forward: where they announced from). Relays
keep no state per handshake.

Abuse bounds (hyperdht has none, its issue 296): the node's per-source rate
limit applies before anything here, and everything a node sends to an address a
stranger named (relays, FROM_SERVER answers to the named client, a server's answer
to a named second relay) is limited again per destination host (``relay_rate``), so
it cannot be used to flood a third party. A message that would grow past a
datagram when relayed is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import DecodeError
from ..udx import UDXSocket
from .messages import Address
from .node import Incoming, RPCNode
from .peer_messages import HandshakeMessage, HolepunchMessage, Mode
from .ratelimit import RateLimiter

__all__ = ["DEFAULT_RELAY_RATE", "HandshakeReply", "HolepunchReply", "Router", "ServerHooks"]

log = logging.getLogger(__name__)

DEFAULT_RELAY_RATE = 64.0
"""Messages a second a node relays towards one destination host (after a burst of twice that)."""


@dataclass(frozen=True, slots=True)
class HandshakeReply:
    """A server's answer to a handshake: IK message 2, and the socket to send it from."""

    noise: bytes
    socket: UDXSocket | None = None


@dataclass(frozen=True, slots=True)
class HolepunchReply:
    """A server's answer to a holepunch round: the sealed payload, and the socket for it."""

    payload: bytes
    socket: UDXSocket | None = None


class ServerHooks(Protocol):
    """What the router asks of a server listening on this node."""

    async def on_handshake(
        self, noise: bytes, peer_address: Address | None, incoming: Incoming
    ) -> HandshakeReply | None: ...

    async def on_holepunch(
        self, slot: int, payload: bytes, peer_address: Address, incoming: Incoming
    ) -> HolepunchReply | None: ...


ForwardLookup = Callable[[bytes], Address | None]


class Router:
    """Routes the connect commands for one node."""

    def __init__(
        self, node: RPCNode, forward: ForwardLookup, relay_rate: float = DEFAULT_RELAY_RATE
    ) -> None:
        self.node = node
        self.servers: dict[bytes, ServerHooks] = {}
        self._forward = forward
        self._relays = RateLimiter(relay_rate, max(1, int(2 * relay_rate)))
        self.refused = 0
        """Relays dropped by the per-destination limit."""

    def _allowed(self, to: Address) -> bool:
        """Whether one more message may go to ``to``'s host for a stranger (relay_rate)."""
        if self._relays.allow((to[0], 0), self.node.now()):
            return True
        self.refused += 1
        return False

    def _relay(
        self, incoming: Incoming, value: bytes, to: Address, socket: UDXSocket | None = None
    ) -> None:
        if self._allowed(to):
            self.node.relay(incoming, value, to, socket)

    # -- PEER_HANDSHAKE -----------------------------------------------------------------------

    def on_handshake(self, incoming: Incoming) -> Awaitable[None] | None:
        request = incoming.request
        if request.value is None or request.target is None:
            return None
        try:
            message = HandshakeMessage.decode(request.value)
        except DecodeError:
            return None
        server = self.servers.get(request.target)
        if server is not None:
            if not message.noise:
                return None
            return self._answer_handshake(server, message, incoming)
        relay = self._forward(request.target)
        if message.mode == Mode.FROM_CLIENT:
            if not message.noise:
                return None
            destination = message.relay_address or relay
            if destination is None:
                self.node.reply(incoming, closer_nodes=True)  # help the client route
                return None
            forwarded = HandshakeMessage(Mode.FROM_RELAY, message.noise, incoming.source)
            self._relay(incoming, forwarded.encode(), destination)
        elif message.mode == Mode.FROM_RELAY:
            if relay is None or not message.noise:
                return None
            forwarded = HandshakeMessage(
                Mode.FROM_SECOND_RELAY, message.noise, message.peer_address, incoming.source
            )
            self._relay(incoming, forwarded.encode(), relay)
        elif message.mode == Mode.FROM_SERVER:
            if message.peer_address is None or not message.noise:
                return None
            reply = HandshakeMessage(Mode.REPLY, message.noise, incoming.source)
            if self._allowed(message.peer_address):  # an address the sender chose
                self.node.reply(incoming, value=reply.encode(), to=message.peer_address)
        return None

    async def _answer_handshake(
        self, server: ServerHooks, message: HandshakeMessage, incoming: Incoming
    ) -> None:
        mode = message.mode
        if mode not in (Mode.FROM_CLIENT, Mode.FROM_RELAY, Mode.FROM_SECOND_RELAY):
            return
        if mode == Mode.FROM_SECOND_RELAY and message.relay_address is None:
            return
        try:
            answer = await server.on_handshake(message.noise, message.peer_address, incoming)
        except Exception:  # a server's failure answers nothing, as in hyperdht
            log.debug("a server failed to answer a handshake", exc_info=True)
            return
        if answer is None or not answer.noise:
            return
        if mode == Mode.FROM_CLIENT:
            reply = HandshakeMessage(Mode.REPLY, answer.noise)
            self.node.reply(incoming, value=reply.encode(), socket=answer.socket)
            return
        to = incoming.source if mode == Mode.FROM_RELAY else message.relay_address
        assert to is not None
        if mode == Mode.FROM_SECOND_RELAY and not self._allowed(to):
            return  # relay_address is the sender's choice: bounded as relays are
        log.debug("handshake answered to %s:%d from %s", *to, answer.socket or incoming.socket)
        value = HandshakeMessage(Mode.FROM_SERVER, answer.noise, message.peer_address).encode()
        self.node.relay(incoming, value, to, answer.socket)

    # -- PEER_HOLEPUNCH -----------------------------------------------------------------------

    def on_holepunch(self, incoming: Incoming) -> Awaitable[None] | None:
        request = incoming.request
        if request.value is None or request.target is None:
            return None
        try:
            message = HolepunchMessage.decode(request.value)
        except DecodeError:
            return None
        server = self.servers.get(request.target)
        if message.mode == Mode.FROM_CLIENT:
            destination = message.peer_address or self._forward(request.target)
            if destination is None:
                return None
            forwarded = HolepunchMessage(
                Mode.FROM_RELAY, message.id, message.payload, incoming.source
            )
            self._relay(incoming, forwarded.encode(), destination)
        elif message.mode == Mode.FROM_RELAY:
            if server is None or message.peer_address is None:
                return None
            return self._answer_holepunch(server, message, message.peer_address, incoming)
        elif message.mode == Mode.FROM_SERVER:
            if message.peer_address is None:
                return None
            reply = HolepunchMessage(Mode.REPLY, message.id, message.payload, incoming.source)
            if self._allowed(message.peer_address):  # an address the sender chose
                self.node.reply(incoming, value=reply.encode(), to=message.peer_address)
        return None

    async def _answer_holepunch(
        self,
        server: ServerHooks,
        message: HolepunchMessage,
        peer_address: Address,
        incoming: Incoming,
    ) -> None:
        try:
            answer = await server.on_holepunch(message.id, message.payload, peer_address, incoming)
        except Exception:
            log.debug("a server failed to answer a holepunch round", exc_info=True)
            return
        if answer is None:
            return
        value = HolepunchMessage(Mode.FROM_SERVER, 0, answer.payload, peer_address).encode()
        self.node.relay(incoming, value, incoming.source, answer.socket)
