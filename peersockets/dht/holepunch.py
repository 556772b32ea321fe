"""Holepunching (HYPERDHT.md 3.7, 3.9, 3.10): a fresh "puncher" socket, its NAT classified from
the DHT nodes' view of it, and one-byte probes until the two peers' packets meet.

``PunchNat`` is the sans-I/O classification (hyperdht's ``lib/nat.js``);
``Holepuncher`` owns the socket, samples, and punches. Only the consistent
strategy is implemented (both NATs keep one public port per socket, the common
case and the first row of 3.10); a side behind a port-randomizing NAT makes
``punch()`` return False, and the connect fails with HolepunchFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket as _socket
import struct
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from ..errors import DHTError
from ..udx import UDXSocket, UDXStream
from .messages import Address, InternalCommand
from .node import RPCNode
from .peer_messages import Firewall

__all__ = ["Holepuncher", "PunchNat", "RemoteAddress", "close_soon", "close_with", "local_addresses", "ping_from", "sampling_nodes"]

log = logging.getLogger(__name__)

PROBE: Final = b"\x00"
PROBE_TTL: Final = 5
"""An "open session" probe: enough hops to open our NAT's mapping, too few to reach a far peer."""
MIN_SAMPLES: Final = 4
CONSISTENT_ROUNDS: Final = 10
ROUND_INTERVAL: Final = 1.0


@dataclass(slots=True)
class _Sample:
    host: str
    port: int
    hits: int = 1


def _add_sample(samples: list[_Sample], host: str, port: int) -> None:
    """Count a sample, keeping the list ordered by hits (most first), ties in arrival order."""
    for i, sample in enumerate(samples):
        if sample.host == host and sample.port == port:
            sample.hits += 1
            while i > 0 and samples[i - 1].hits < sample.hits:
                samples[i - 1], samples[i] = samples[i], samples[i - 1]
                i -= 1
            return
    samples.append(_Sample(host, port))


class PunchNat:
    """What a puncher socket's NAT does, from where DHT nodes see it (3.7)."""

    def __init__(self, firewalled: bool) -> None:
        self.firewalled = firewalled
        self.firewall = Firewall.UNKNOWN if firewalled else Firewall.OPEN
        self.addresses: tuple[Address, ...] | None = None
        self.sampled = 0
        self.frozen = False
        self._hosts: list[_Sample] = []
        self._full: list[_Sample] = []
        self._visited: set[Address] = set()

    def add(self, seen_as: Address, by: Address) -> bool:
        """``by`` saw this socket at ``seen_as``; True once the classification is settled enough
        to stop waiting (consistent/open, or every sample expected is in)."""
        if by in self._visited:
            return self.settled()
        self._visited.add(by)
        _add_sample(self._hosts, seen_as[0], 0)
        _add_sample(self._full, seen_as[0], seen_as[1])
        self.sampled += 1
        if (self.sampled >= 3 or not self.firewalled) and not self.frozen:
            self._update()
        return self.settled()

    def settled(self) -> bool:
        return self.firewall in (Firewall.CONSISTENT, Firewall.OPEN) or self.sampled >= MIN_SAMPLES

    def freeze(self) -> None:
        """Keep the classification already told to the other peer."""
        self.frozen = True

    def _update(self) -> None:
        self._update_firewall()
        if self.firewall == Firewall.UNKNOWN:
            self.addresses = None
        elif self.firewall == Firewall.RANDOM:
            self.addresses = ((self._hosts[0].host, 0),)
        else:
            chosen = [s for i, s in enumerate(self._full) if s.hits >= 2 or i < 2]
            self.addresses = tuple((s.host, s.port) for s in chosen)

    def _update_firewall(self) -> None:
        if not self.firewalled:
            self.firewall = Firewall.OPEN
            return
        if self.sampled < 3:
            return
        top = self._full[0].hits
        if top >= 3:
            self.firewall = Firewall.CONSISTENT
        elif top == 1 or (len(self._hosts) == 1 and self.sampled > 3):
            self.firewall = Firewall.RANDOM
        elif len(self._hosts) > 1 and len(self._full) > 1 and self._full[1].hits > 1:
            self.firewall = Firewall.CONSISTENT
        elif self.sampled > 4:
            self.firewall = Firewall.RANDOM


@dataclass(slots=True)
class RemoteAddress:
    """An address the other peer's puncher told us, and whether it proved it receives there."""

    host: str
    port: int
    verified: bool = False


Pinger = Callable[[Address, UDXSocket], Awaitable[tuple[Address, Address]]]
"""Sends a PING from the socket; gives (where the node saw us, where it answered from)."""


class Holepuncher:
    """One connection's puncher socket: sampling, probes, and the punch itself.

    The initiator (client) connects on the first one-byte datagram that reaches its
    socket (``on_connect(socket, source)``); the responder (server) echoes every one
    back, and connects on the client's first UDX packet instead.
    """

    def __init__(
        self,
        socket: UDXSocket,
        *,
        initiator: bool,
        firewalled: bool,
        remote_firewall: int = Firewall.UNKNOWN,
        on_connect: Callable[[UDXSocket, Address], None] | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self.socket = socket
        self.initiator = initiator
        self.nat = PunchNat(firewalled)
        self.remote_firewall = remote_firewall
        self.remote_addresses: list[RemoteAddress] = []
        self.remote_punching = False
        self.punching = False
        self.connected = False
        self.destroyed = False
        self.on_connect = on_connect
        self.on_abort = on_abort
        """Called once if the puncher is destroyed before it connected (punching gave up, or
        its owner stopped it); owners clear it before destroying a puncher they are done with."""
        self.keep_socket = False
        """Set once a connection uses the socket: destroy() then leaves it open."""
        self._analyzed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- sampling -----------------------------------------------------------------------------

    def sample(self, nodes: list[Address], ping: Pinger) -> None:
        """Ping four DHT nodes from the puncher socket (once each, no retry), and as many of the
        rest of ``nodes`` as did not answer, as hyperdht does; every reply says where they see us."""
        self._spawn(self._sample(nodes, ping))

    def sample_from(self, node: RPCNode) -> None:
        """Sample through ``node``: PINGs from the puncher socket to its recent table nodes."""
        self.sample(sampling_nodes(node), lambda address, sock: ping_from(node, address, sock))

    async def _sample(self, nodes: list[Address], ping: Pinger) -> None:
        async def one(node: Address) -> None:
            with contextlib.suppress(DHTError):
                seen_as, by = await ping(node, self.socket)
                self.add_sample(seen_as, by)

        first, spare = nodes[:MIN_SAMPLES], nodes[MIN_SAMPLES:]
        await asyncio.gather(*(one(node) for node in first))
        if self.nat.sampled < MIN_SAMPLES and spare:  # some did not answer: once more, with others
            await asyncio.gather(*(one(node) for node in spare[: MIN_SAMPLES - self.nat.sampled]))
        self._resolve()

    def add_sample(self, seen_as: Address, by: Address) -> None:
        if self.nat.add(seen_as, by):
            self._resolve()

    def _resolve(self) -> None:
        if not self._analyzed.done():
            self._analyzed.set_result(None)

    async def analyze(self) -> bool:
        """Wait for the samples; True if our NAT is classified and punching can work with it."""
        await self._analyzed
        unknown = self.nat.firewall == Firewall.UNKNOWN
        double_random = (
            self.nat.firewall >= Firewall.RANDOM and self.remote_firewall >= Firewall.RANDOM
        )
        return not (unknown or double_random)

    # -- the remote ---------------------------------------------------------------------------

    def update_remote(
        self,
        punching: bool,
        firewall: int,
        addresses: tuple[Address, ...] | None,
        verified: str | None,
    ) -> None:
        """What the other peer's latest holepunch payload said about it."""
        known = {a.host for a in self.remote_addresses if a.verified}
        self.remote_addresses = [
            RemoteAddress(host, port, host == verified or host in known)
            for host, port in addresses or ()
        ]
        self.remote_firewall = firewall
        self.remote_punching = punching

    # -- probes -------------------------------------------------------------------------------

    def open_session(self, address: Address) -> None:
        """A short-lived probe: opens our NAT towards ``address`` without reaching far."""
        self._probe(address, PROBE_TTL)

    def ping(self, address: Address) -> None:
        self._probe(address, None)

    def _probe(self, address: Address, ttl: int | None) -> None:
        if self.socket.closed or not address[1]:
            return
        with contextlib.suppress(OSError):
            self.socket.send(PROBE, address, ttl=ttl)

    def on_probe(self, data: bytes, source: Address) -> None:
        """A one-byte datagram on the puncher socket (the other peer's probe)."""
        log.debug("puncher %s: probe from %s:%d", self.socket.address, *source)
        if self.destroyed or not source[1]:
            return
        if not self.initiator:
            self.ping(source)  # the client connects on our echo
            return
        if self.connected:
            return
        self.connected = True
        self.punching = False
        self.keep_socket = True
        if self.on_connect is not None:
            self.on_connect(self.socket, source)

    # -- punching -----------------------------------------------------------------------------

    def punch(self) -> bool:
        """Start punching in the background; False if no supported strategy fits (3.10)."""
        if self.destroyed or self.connected or not self.remote_addresses:
            return False
        local = Firewall.CONSISTENT if self.nat.firewall == Firewall.OPEN else self.nat.firewall
        remote = (
            Firewall.CONSISTENT if self.remote_firewall == Firewall.OPEN else self.remote_firewall
        )
        if local != Firewall.CONSISTENT or remote != Firewall.CONSISTENT:
            return False  # the random-NAT strategies are not implemented
        if not self.punching:
            self.punching = True
            self._spawn(self._consistent_rounds())
        return True

    async def _consistent_rounds(self) -> None:
        if not self.initiator:
            await asyncio.sleep(ROUND_INTERVAL)  # the server's fast path just probed
        for attempt in range(1, CONSISTENT_ROUNDS + 1):
            if not self.punching:
                return
            for address in self.remote_addresses:
                if address.verified or attempt % 4 == 0:
                    self.ping((address.host, address.port))
            await asyncio.sleep(ROUND_INTERVAL)
        if not self.connected:
            self.destroy()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def destroy(self) -> None:
        """Stop punching; close the socket unless a connection uses it."""
        if self.destroyed:
            return
        self.destroyed = True
        self.punching = False
        self._resolve()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if not self.keep_socket:
            close_soon(self.socket)
        on_abort, self.on_abort = self.on_abort, None
        if on_abort is not None and not self.connected:
            on_abort()


_closing: set[asyncio.Task[None]] = set()


def close_soon(socket: UDXSocket) -> None:
    """Close a socket from synchronous code (the task is kept until it is done)."""
    if socket.closed:
        return
    task = asyncio.ensure_future(socket.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def ping_from(node: RPCNode, address: Address, socket: UDXSocket) -> tuple[Address, Address]:
    """A dht-rpc PING sent once from ``socket``: (where the node saw us, where it answered from)."""
    response, source = await node.request(
        address, InternalCommand.PING, internal=True, retries=0, socket=socket
    )
    return response.to, source


def sampling_nodes(node: RPCNode) -> list[Address]:
    """The DHT nodes a puncher asks where they see it: the most recently seen ones (the five
    newest skipped when there are eight or more, as hyperdht), eight at most: four first, the
    others for those that do not answer."""
    nodes = sorted(node.table, key=lambda n: n.seen, reverse=True)
    if len(nodes) >= 8:
        nodes = nodes[5:]
    addresses = [n.address for n in nodes]
    for bootstrap in node.bootstrap_nodes:
        if len(addresses) >= 2 * MIN_SAMPLES:
            break
        if bootstrap not in addresses:
            addresses.append(bootstrap)
    return addresses[: 2 * MIN_SAMPLES]


def close_with(stream: UDXStream, socket: UDXSocket) -> None:
    """Close a puncher socket once the stream that uses it is closed."""

    def closed(_future: asyncio.Future[None]) -> None:
        close_soon(socket)

    stream.closed.add_done_callback(closed)


def _interface_addresses() -> list[str]:
    """The IPv4 addresses of this machine's non-loopback interfaces (Linux; none elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    siocgifaddr = 0x8915
    found: list[str] = []
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as probe:
        for _index, name in _socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
                host = _socket.inet_ntoa(answer[20:24])
                if not host.startswith("127.") and host not in found:
                    found.append(host)
    return found


def local_addresses(bound: Address) -> list[Address]:
    """The addresses a socket bound to ``bound`` can be reached at on the local network."""
    host, port = bound
    if host == "127.0.0.1":
        return [(host, port)]
    if host not in ("0.0.0.0", ""):
        return [(host, port)]
    found = [(address, port) for address in _interface_addresses()]
    return found or [("127.0.0.1", port)]
