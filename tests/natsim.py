"""A simulated NAT on loopback, so tests can put a Python peer "behind a NAT".

    async with Nat("consistent") as nat:          # or "random"
        inside = await nat.bind()                  # a UDXSocket behind the NAT
        node = DHT(socket_factory=nat.bind, ...)   # the same signature as UDXSocket.bind

Every socket ``Nat.bind`` makes is a real UDP socket on 127.0.0.1 wrapped in a
proxy (what the UDXSocket holds as ``_sock``). The proxy sends nothing directly:
each datagram goes to the NAT box's inside socket with a 6-byte header naming
its destination, and the box sends it on from a public socket of its own (a
"mapping"). Datagrams reaching a public socket from an address the inside socket
sent to through it come back with a 6-byte header naming their real source,
which the proxy strips, so the UDXSocket sees the outside peer's real address.
Anything else reaching the inside socket's real port is dropped (``bypassed``),
as a host behind a NAT never sees it.

Mapping: "consistent" gives an inside socket one public port for every
destination (endpoint-independent), "random" a new public port per destination
(host, port). Filtering is always port-restricted. A mapping without outbound
traffic for ``idle_timeout`` seconds is closed.

The proxy refuses UDP_GRO (ENOPROTOOPT) and UDP_SEGMENT sends (EINVAL) as a
kernel without them does, so UDXSocket falls back to one datagram per call.
IPv4 only; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any, Final, Literal, Protocol, cast

from peersockets.errors import ListenError, SocketClosed
from peersockets.udx.socket import UDX, MessageHandler, UDXSocket, _tune

__all__ = ["Nat", "NatMapping", "SocketFactory", "behind"]

Addr = tuple[str, int]
MappingKind = Literal["consistent", "random"]

LOOPBACK: Final = "127.0.0.1"
HEADER: Final = struct.Struct("!4sH")
"""Between a proxy and the NAT box: an IPv4 address and a port (the destination going
out, the real source coming in), then the datagram."""

MAX_BATCH: Final = 512
"""Datagrams the NAT box moves per readiness event before other callbacks run."""

BUFFER: Final = 4 * 1024 * 1024
"""SO_RCVBUF / SO_SNDBUF for the box's sockets: a 1 MiB stream's bursts fit."""

_SOL_UDP: Final = 17
_UDP_SEGMENT: Final = 103
_UDP_GRO: Final = 104


class SocketFactory(Protocol):
    """What the DHT takes to open its UDP sockets: ``UDXSocket.bind``'s signature."""

    async def __call__(
        self,
        host: str = LOOPBACK,
        port: int = 0,
        *,
        udx: UDX | None = None,
        on_message: MessageHandler | None = None,
    ) -> UDXSocket: ...


@functools.lru_cache(maxsize=4096)
def _header(host: str, port: int) -> bytes:
    """The 6-byte header for (host, port); OSError(EINVAL) where the kernel would refuse it."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise OSError(errno.EINVAL, f"bad UDP port {port!r}")
    try:
        packed = socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError):
        raise OSError(
            errno.EAFNOSUPPORT, f"the simulated NAT only routes IPv4, not {host!r}"
        ) from None
    return HEADER.pack(packed, port)


def _unpack(data: bytes | bytearray | memoryview) -> Addr:
    """The (host, port) in a header."""
    packed, port = HEADER.unpack_from(data)
    return socket.inet_ntop(socket.AF_INET, packed), port


def _seen(address: Any) -> Addr:
    """The source address the NAT box sees for a socket bound to ``address``."""
    host, port = address[0], address[1]
    return (LOOPBACK if host in ("0.0.0.0", "") else host, port)


def _udp_socket(host: str, port: int = 0) -> socket.socket:
    """A non-blocking IPv4 UDP socket with large buffers, bound to (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class NatMapping:
    """One public socket of the box: its inside owner, its public address, who may answer."""

    def __init__(self, inside: Addr, sock: socket.socket, now: float) -> None:
        self.inside = inside
        """The inside socket's address as the box sees it."""
        self.sock = sock
        self.public: Addr = _seen(sock.getsockname())
        """The address outside peers see the inside socket at."""
        self.destinations: set[Addr] = set()
        """Addresses the inside sent to through this mapping: the only ones let back in."""
        self.last_out = now
        self.sent = 0
        """Datagrams forwarded out through this mapping."""
        self.received = 0
        """Datagrams forwarded in through this mapping."""
        self.dropped = 0
        """Datagrams refused by the filter on this mapping."""
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<NatMapping {self.inside[0]}:{self.inside[1]} -> {self.public[0]}:{self.public[1]}"
            f" destinations={len(self.destinations)} sent={self.sent} received={self.received}"
            f" dropped={self.dropped}{state}>"
        )


class _InsideSocket:
    """What a UDXSocket behind the NAT holds as ``_sock``: the real socket, routed via the box.

    Only the methods UDXSocket uses exist, so nothing reaches the kernel around the NAT.
    """

    def __init__(self, nat: Nat, sock: socket.socket) -> None:
        self._nat = nat
        self._sock = sock
        self.family = sock.family
        self.type = sock.type
        self.seen = _seen(sock.getsockname())
        self._buffer = bytearray(HEADER.size + 65536)
        self._view = memoryview(self._buffer)
        self._closed = False

    def __repr__(self) -> str:
        return f"<natsim inside socket {self.seen[0]}:{self.seen[1]} of {self._nat!r}>"

    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockname(self) -> Any:
        """The real (private) address, as an OS socket behind a NAT reports."""
        return self._sock.getsockname()

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        if buflen is None:
            return self._sock.getsockopt(level, option)
        return self._sock.getsockopt(level, option, buflen)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Passed to the real socket (IP_TTL, buffers), except the UDP offloads: refused."""
        if level == _SOL_UDP and option in (_UDP_GRO, _UDP_SEGMENT):
            raise OSError(errno.ENOPROTOOPT, os.strerror(errno.ENOPROTOOPT))
        self._sock.setsockopt(level, option, value)

    def sendto(self, data: bytes | bytearray | memoryview, address: Any) -> int:
        """Send ``data`` to ``address`` through the NAT box."""
        header = _header(address[0], address[1])
        self._sock.sendto(b"".join((header, data)), self._nat.inside_address)
        return len(data)

    def sendmsg(
        self,
        buffers: Iterable[bytes | bytearray | memoryview],
        ancdata: Iterable[tuple[int, int, bytes]] = (),
        flags: int = 0,
        address: Any = None,
    ) -> int:
        """One datagram; any ancillary data (UDP_SEGMENT) is refused as an old kernel does."""
        if list(ancdata):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if address is None:
            raise OSError(errno.EDESTADDRREQ, os.strerror(errno.EDESTADDRREQ))
        return self.sendto(b"".join(buffers), address)

    def recvfrom_into(self, buffer: bytearray | memoryview, nbytes: int = 0) -> tuple[int, Addr]:
        """The next datagram the box forwarded in, with its real outside source.

        Datagrams from anywhere else are counted as ``bypassed`` and skipped. Raises
        BlockingIOError when nothing is left, as the real socket does.
        """
        view = self._view
        limit = nbytes or len(buffer)
        nat = self._nat
        while True:
            size, source = self._sock.recvfrom_into(self._buffer)
            if nat.closed or source[:2] != nat.inside_address or size < HEADER.size:
                nat.bypassed += 1
                continue
            length = min(size - HEADER.size, limit)
            memoryview(buffer)[:length] = view[HEADER.size : HEADER.size + length]
            return length, _unpack(view)

    def recvmsg_into(
        self, buffers: list[bytearray | memoryview], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Addr]:
        """As ``recvfrom_into`` into the first buffer; never any ancillary data (no GRO)."""
        size, source = self.recvfrom_into(buffers[0])
        return size, [], 0, source

    def close(self) -> None:
        """Let the box forward what this socket sent, forget its mappings, close it."""
        if self._closed:
            return
        self._closed = True
        self._nat._release(self)
        self._sock.close()


class Nat:
    """A NAT box on 127.0.0.1: one inside socket, one public socket per mapping.

    Make it inside a running event loop; ``close`` (or ``async with``) closes every public
    socket. Sockets made by ``bind`` stay their owner's to close.
    """

    def __init__(
        self,
        mapping: MappingKind = "consistent",
        *,
        idle_timeout: float = 30.0,
        host: str = LOOPBACK,
    ) -> None:
        if mapping not in ("consistent", "random"):
            raise ValueError(f"mapping is 'consistent' or 'random', got {mapping!r}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout!r}")
        self.mapping: MappingKind = mapping
        self.idle_timeout = idle_timeout
        self.host = host
        self._loop = asyncio.get_running_loop()
        self._inside = _udp_socket(host)
        self.inside_address: Addr = _seen(self._inside.getsockname())
        """Where proxies send their datagrams (and where forwarded ones come from)."""
        self._out_buffer = bytearray(HEADER.size + 65536)
        self._in_buffer = bytearray(HEADER.size + 65536)
        self._insides: dict[Addr, _InsideSocket] = {}
        self._mappings: dict[tuple[Addr, Addr | None], NatMapping] = {}
        self.closed = False
        self.forwarded_out = 0
        """Datagrams sent on from a public socket."""
        self.forwarded_in = 0
        """Datagrams let in by the filter and handed to an inside socket."""
        self.dropped = 0
        """Datagrams to a public socket from an address its inside socket never sent to."""
        self.dropped_by_port: collections.Counter[int] = collections.Counter()
        """``dropped`` per public port."""
        self.bypassed = 0
        """Datagrams that reached an inside socket's real port without going through the box."""
        self.lost = 0
        """Datagrams the box failed to send (a full buffer, a refused address)."""
        self.strays = 0
        """Datagrams to the box's inside socket from sockets not made by ``bind``."""
        self.expired = 0
        """Mappings closed by ``idle_timeout``."""
        self._loop.add_reader(self._inside.fileno(), self._on_inside_readable)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<Nat {self.mapping} box={self.inside_address[0]}:{self.inside_address[1]}"
            f" insides={len(self._insides)} mappings={len(self._mappings)}"
            f" out={self.forwarded_out} in={self.forwarded_in} dropped={self.dropped}"
            f" bypassed={self.bypassed}{state}>"
        )

    async def __aenter__(self) -> Nat:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the factory

    async def bind(
        self,
        host: str = LOOPBACK,
        port: int = 0,
        *,
        udx: UDX | None = None,
        on_message: MessageHandler | None = None,
    ) -> UDXSocket:
        """A UDXSocket bound on (host, port) whose traffic all goes through this NAT."""
        if self.closed:
            raise SocketClosed(f"{self!r} is closed")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ListenError(errno.EINVAL, f"UDP port must be 0-65535, got {port!r}")
        version: int = 0
        with contextlib.suppress(ValueError):
            version = ipaddress.ip_address(host).version
        if version != 4:
            raise ListenError(errno.EAFNOSUPPORT, f"the simulated NAT is IPv4 only, got {host!r}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _tune(sock)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ListenError(
                exc.errno or errno.EINVAL, f"cannot bind UDP {host}:{port}: {exc.strerror or exc}"
            ) from exc
        proxy = _InsideSocket(self, sock)
        self._insides[proxy.seen] = proxy
        try:
            return UDXSocket(cast(socket.socket, proxy), self._loop, udx or UDX(), on_message)
        except BaseException:
            proxy.close()
            raise

    # ------------------------------------------------------------ inspection

    @property
    def mappings(self) -> list[NatMapping]:
        """The live mappings, oldest first."""
        return list(self._mappings.values())

    def public_addresses(self, sock: UDXSocket) -> list[Addr]:
        """Every public (host, port) ``sock`` maps to now, oldest first."""
        inside = _seen(sock.address)
        return [m.public for m in self._mappings.values() if m.inside == inside]

    def public_address(self, sock: UDXSocket) -> Addr:
        """The public (host, port) ``sock`` maps to (its first live mapping in random mode)."""
        addresses = self.public_addresses(sock)
        if not addresses:
            raise LookupError(f"{sock!r} has no mapping on {self!r} (it sent nothing yet)")
        return addresses[0]

    # ------------------------------------------------------------ forwarding

    def _mapping_for(self, inside: Addr, destination: Addr) -> NatMapping:
        """The mapping a datagram from ``inside`` to ``destination`` leaves through (made if new)."""
        key = (inside, None if self.mapping == "consistent" else destination)
        mapping = self._mappings.get(key)
        now = self._loop.time()
        if mapping is None:
            sock = _udp_socket(self.host)
            mapping = NatMapping(inside, sock, now)
            self._mappings[key] = mapping
            self._loop.add_reader(sock.fileno(), self._on_outside_readable, mapping)
            mapping.timer = self._loop.call_later(self.idle_timeout, self._check_idle, key, mapping)
        mapping.last_out = now
        mapping.destinations.add(destination)
        return mapping

    def _on_inside_readable(self, limit: int | None = MAX_BATCH) -> None:
        """Datagrams from inside sockets: each out through its mapping to its destination."""
        buffer = self._out_buffer
        view = memoryview(buffer)
        count = 0
        while limit is None or count < limit:
            count += 1
            try:
                size, source = self._inside.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            inside = source[:2]
            if inside not in self._insides or size < HEADER.size:
                self.strays += 1
                continue
            destination = _unpack(view)
            mapping = self._mapping_for(inside, destination)
            try:
                mapping.sock.sendto(view[HEADER.size : size], destination)
            except OSError:
                self.lost += 1
                continue
            mapping.sent += 1
            self.forwarded_out += 1

    def _on_outside_readable(self, mapping: NatMapping) -> None:
        """Datagrams to a public socket: in if the filter allows their source, else dropped."""
        buffer = self._in_buffer
        view = memoryview(buffer)
        payload = view[HEADER.size :]
        for _ in range(MAX_BATCH):
            if mapping.closed:
                return
            try:
                size, source = mapping.sock.recvfrom_into(payload)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier send
            origin = _seen(source)
            if origin not in mapping.destinations:
                mapping.dropped += 1
                self.dropped += 1
                self.dropped_by_port[mapping.public[1]] += 1
                continue
            HEADER.pack_into(buffer, 0, socket.inet_pton(socket.AF_INET, origin[0]), origin[1])
            try:
                self._inside.sendto(view[: HEADER.size + size], mapping.inside)
            except OSError:
                self.lost += 1
                continue
            mapping.received += 1
            self.forwarded_in += 1

    # ------------------------------------------------------------ ending

    def _check_idle(self, key: tuple[Addr, Addr | None], mapping: NatMapping) -> None:
        """Close ``mapping`` if nothing went out through it for ``idle_timeout``; else wait on."""
        if mapping.closed:
            return
        remaining = mapping.last_out + self.idle_timeout - self._loop.time()
        if remaining > 0:
            mapping.timer = self._loop.call_later(remaining, self._check_idle, key, mapping)
            return
        self.expired += 1
        self._forget(key)

    def _forget(self, key: tuple[Addr, Addr | None]) -> None:
        mapping = self._mappings.pop(key)
        mapping.closed = True
        if mapping.timer is not None:
            mapping.timer.cancel()
        self._loop.remove_reader(mapping.sock.fileno())
        mapping.sock.close()

    def _release(self, proxy: _InsideSocket) -> None:
        """An inside socket closes: forward what it already sent (its DESTROYs), drop its mappings."""
        if self._insides.get(proxy.seen) is not proxy:
            return
        if not self.closed:
            self._on_inside_readable(limit=None)
        del self._insides[proxy.seen]
        for key in [k for k, m in self._mappings.items() if m.inside == proxy.seen]:
            self._forget(key)

    async def close(self) -> None:
        """Close every public socket and the box; inside sockets then reach nobody."""
        if self.closed:
            return
        self.closed = True
        for key in list(self._mappings):
            self._forget(key)
        self._insides.clear()
        self._loop.remove_reader(self._inside.fileno())
        self._inside.close()
        await asyncio.sleep(0)


def behind(nat: Nat) -> SocketFactory:
    """The socket factory for a DHT whose sockets sit behind ``nat``."""
    return nat.bind
