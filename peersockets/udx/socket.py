"""UDP sockets shared by UDX streams and other traffic (dht/UDX.md 1.7, 2).

On each readiness event the socket reads every datagram waiting (up to
``MAX_BATCH``) into one reused buffer, hands UDX packets for live streams to
their stream and everything else to ``on_message`` (the DHT), then lets each
stream it touched flush once: one ack per stream per batch.

``UDX`` is the stream table that one or more sockets share (libudx's "udx
instance"): a packet for a stream that arrives on another socket of the same
instance goes through that stream's firewall.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import secrets
import socket as _socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..errors import InvalidSetting, ListenError, MessageTooLarge, SocketClosed, StreamIdInUse
from . import packet as p
from .stream import BASE_MTU, IPV4_OVERHEAD, IPV6_OVERHEAD, StreamCore
from .transport import HOLD, Firewall, UDXStream, _check_remote_id

try:
    import termios
    from fcntl import ioctl as _ioctl
except ImportError:  # pragma: no cover - not on this platform: always drain
    _ioctl = None  # type: ignore[assignment]
    termios = None  # type: ignore[assignment]
_FIONREAD: Final = termios.FIONREAD if termios is not None else 0

__all__ = ["UDX", "Address", "MessageHandler", "UDXSocket"]

Address = tuple[Any, ...]
"""(host, port) for IPv4; IPv6 sources come as (host, port, flowinfo, scope_id)."""

MessageHandler = Callable[[bytes, Address], None]

MAX_BATCH: Final = 512
"""Datagrams read per readiness event before other callbacks get a turn."""

RECEIVE_BUFFER: Final = 4 * 1024 * 1024
"""SO_RCVBUF asked for (the kernel grants at most net.core.rmem_max). libudx asks for 1 MiB;
udx-native's BBR sender overruns a Python reader's 1 MiB buffer in bursts (27 MB/s with a
third of its packets resent, against 85-150 MB/s with 4 MiB)."""

SEND_BUFFER: Final = 1024 * 1024

SEGMENTATION = True
"""Use UDP segmentation offload on Linux (``UDP_SEGMENT``) when the kernel takes it."""

COALESCING = True
"""Read coalesced datagrams on Linux (``UDP_GRO``) when the kernel offers it."""

PROBE_BEFORE_DRAINING = True
"""After one datagram, ask the kernel whether another waits (FIONREAD) before reading on:
a second read that finds nothing raises, which costs a lone datagram (a round trip's)
three times the probe. Once one is found the socket drains each event until the kernel
has nothing, and goes back to probing after an event of one datagram."""

MAX_BACKLOG: Final = 4096
"""Datagrams held while the kernel's send buffer is full; past it new ones are dropped (lost)."""

_SOL_UDP: Final = 17
_UDP_SEGMENT: Final = 103
_UDP_GRO: Final = 104
_GRO_ANCILLARY: Final = _socket.CMSG_SPACE(4)
_SEGMENT_SIZE: Final = struct.Struct("=H")
_MAX_SEGMENTS: Final = 64
_MAX_SEGMENTED_BYTES: Final = 65000
_NO_SEGMENTATION: Final = frozenset({errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EIO, errno.EMSGSIZE})
_IP_MTU_DISCOVER: Final = 10
_IPV6_MTU_DISCOVER: Final = 23
_PMTUDISC_PROBE: Final = 3


class UDX:
    """The stream table shared by a set of sockets; ids are unique within it."""

    def __init__(self) -> None:
        self.streams: dict[int, UDXStream] = {}

    def new_id(self) -> int:
        """A random 32-bit id no live stream of this instance uses (hard to guess)."""
        while True:
            stream_id = secrets.randbits(32)
            if stream_id not in self.streams:
                return stream_id

    def _register(self, stream: UDXStream) -> None:
        self.streams[stream.local_id] = stream

    def _unregister(self, stream: UDXStream) -> None:
        if self.streams.get(stream.local_id) is stream:
            del self.streams[stream.local_id]


class UDXSocket:
    """One non-blocking UDP socket: UDX streams plus any other datagrams (``on_message``)."""

    def __init__(
        self,
        sock: _socket.socket,
        loop: asyncio.AbstractEventLoop,
        udx: UDX,
        on_message: MessageHandler | None,
    ) -> None:
        self._sock = sock
        self._loop = loop
        self.udx = udx
        self.on_message = on_message
        """Called with (datagram, source) for every datagram that is not for a live stream."""
        self.family = sock.family
        self._fd = sock.fileno()
        self._coalescing = False
        if COALESCING and sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
                self._coalescing = True
        self._buffer = bytearray(65536 if self._coalescing else p.MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._may_probe = PROBE_BEFORE_DRAINING and _ioctl is not None
        self._probing = self._may_probe
        """Probe for a second datagram before reading it (True) or read until none (False)."""
        self._waiting = bytearray(4)  # FIONREAD's answer
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._streams: set[UDXStream] = set()
        self._closed = False
        self.address: Address = sock.getsockname()[:2]
        """The (host, port) this socket is bound to."""
        self._segmentation = SEGMENTATION and sys.platform.startswith("linux")
        """Send runs of equal-size datagrams with one UDP_SEGMENT (GSO) write; off after a refusal."""
        self.dropped_sends = 0
        """Datagrams dropped because the kernel's send buffer and our backlog were full."""
        loop.add_reader(self._fd, self._on_readable)

    @classmethod
    async def bind(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        udx: UDX | None = None,
        on_message: MessageHandler | None = None,
    ) -> UDXSocket:
        """Bind a UDP socket on (host, port); IPv6 when host is an IPv6 address."""
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ListenError(errno.EINVAL, f"UDP port must be 0-65535, got {port!r}")
        loop = asyncio.get_running_loop()
        try:
            family = _socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else _socket.AF_INET
        except ValueError:
            infos = await loop.getaddrinfo(host, port, type=_socket.SOCK_DGRAM)
            family, _, _, _, _ = infos[0]
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _tune(sock)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ListenError(exc.errno or errno.EINVAL, f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from exc
        return cls(sock, loop, udx or UDX(), on_message)

    def __repr__(self) -> str:
        return f"<UDXSocket {self.address} streams={len(self._streams)}>"

    # ---------------------------------------------------------------- streams

    def create_stream(
        self,
        local_id: int | None = None,
        *,
        firewall: Firewall | None = None,
        close_timeout: float | None = None,
        **settings: Any,
    ) -> UDXStream:
        """A stream not yet connected, registered on this socket's UDX instance.

        Packets for it that arrive before ``connect`` go through ``firewall``
        (the default drops them). ``settings`` are StreamCore's (receive_window,
        keepalive, min_rto, ...).
        """
        self._check_open()
        udx = self.udx
        if local_id is None:
            local_id = udx.new_id()
        elif not isinstance(local_id, int) or not 0 <= local_id <= p.SEQ_MASK:
            raise InvalidSetting(f"a UDX stream id is a 32-bit unsigned number, got {local_id!r}")
        elif local_id in udx.streams:
            raise StreamIdInUse(f"UDX stream id {local_id} is already in use on this UDX instance")
        settings.setdefault("ipv6", self.family == _socket.AF_INET6)
        core = StreamCore(local_id, **settings)
        extra = {} if close_timeout is None else {"close_timeout": close_timeout}
        stream = UDXStream(core, self._loop, firewall=firewall, unregister=udx._unregister, **extra)
        udx._register(stream)
        self._attach(stream)  # closing this socket aborts it, connected or not
        return stream

    async def open_stream(
        self,
        local_id: int | None,
        remote_id: int,
        address: Address,
        *,
        limit: int = 2**16,
        **settings: Any,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream connected to ``remote_id`` at ``address``, as asyncio's (reader, writer)."""
        address = self._resolve(address)
        reader = asyncio.StreamReader(limit=limit, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        stream = self.connect_protocol(protocol, local_id, remote_id, address, **settings)
        writer = asyncio.StreamWriter(stream, protocol, reader, self._loop)
        return reader, writer

    def connect_protocol(
        self, protocol: asyncio.BaseProtocol, local_id: int | None, remote_id: int, address: Address, **settings: Any
    ) -> UDXStream:
        """A stream connected to ``remote_id`` at ``address`` running ``protocol`` (e.g. a Connection)."""
        address = self._resolve(address)
        _check_remote_id(remote_id)
        stream = self.create_stream(local_id, **settings)
        stream.set_protocol(protocol)
        stream.connect(self, remote_id, address)
        protocol.connection_made(stream)
        return stream

    def _resolve(self, address: Address) -> Address:
        """(IP, port) as this socket sends to it; names are refused (no DNS inside the loop)."""
        host, port = address[0], address[1]
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidSetting(f"a UDP port is 1-65535, got {port!r}")
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            raise InvalidSetting(f"a UDX stream needs an IP address, got {host!r} (resolve names first)") from None
        if self.family == _socket.AF_INET6 and version == 4:
            return (f"::ffff:{host}", port)
        if self.family == _socket.AF_INET and version == 6:
            raise InvalidSetting(f"an IPv4 UDX socket cannot reach {host!r}")
        return (host, port)

    def _attach(self, stream: UDXStream) -> None:
        self._streams.add(stream)

    def _detach(self, stream: UDXStream) -> None:
        self._streams.discard(stream)

    # ------------------------------------------------------------------ I/O

    def send(self, datagram: bytes | bytearray | memoryview, address: Address, *, ttl: int | None = None) -> None:
        """Send one datagram that is not UDX (DHT traffic) from this socket; ``ttl`` sets the IP
        time-to-live of this one datagram (holepunching opens NAT sessions with short-lived probes)."""
        self._check_open()
        if len(datagram) > p.MAX_DATAGRAM:
            raise MessageTooLarge(f"a datagram on a UDX socket is at most {p.MAX_DATAGRAM} bytes, got {len(datagram)}")
        if ttl is None:
            self._send(bytes(datagram), address)
            return
        if not isinstance(ttl, int) or not 1 <= ttl <= 255:
            raise InvalidSetting(f"ttl must be 1-255, got {ttl!r}")
        level, option = (
            (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS)
            if self.family == _socket.AF_INET6
            else (_socket.IPPROTO_IP, _socket.IP_TTL)
        )
        previous = self._sock.getsockopt(level, option)
        self._sock.setsockopt(level, option, ttl)
        try:
            with contextlib.suppress(OSError):  # lost, as any datagram may be (its sender resends)
                self._sock.sendto(bytes(datagram), address)
        finally:
            self._sock.setsockopt(level, option, previous)

    def _check_message_size(self, size: int, address: Address | None) -> None:
        overhead = IPV6_OVERHEAD if self.family == _socket.AF_INET6 else IPV4_OVERHEAD
        limit = BASE_MTU - overhead - p.HEADER_SIZE
        if size > limit:
            raise MessageTooLarge(f"a UDX message is at most {limit} bytes to {address}, got {size}")

    def _send(self, datagram: bytes, address: Address) -> None:
        if self._closed:
            return
        if self._backlog:
            self._queue_send(datagram, address)
            return
        try:
            self._sock.sendto(datagram, address)
        except (BlockingIOError, InterruptedError):
            self._queue_send(datagram, address)
        except OSError:
            pass  # unreachable, too big for the path (a probe), refused: the datagram is lost

    def _send_many(self, datagrams: list[bytes], address: Address) -> None:
        """Send datagrams in order; runs of equal size go as one UDP_SEGMENT write where it works."""
        if not self._segmentation or self._backlog or len(datagrams) < 2:
            for datagram in datagrams:
                self._send(datagram, address)
            return
        start, count = 0, len(datagrams)
        while start < count:
            size = len(datagrams[start])
            limit = min(start + min(_MAX_SEGMENTS, _MAX_SEGMENTED_BYTES // size), count)
            end = start + 1
            while end < limit and len(datagrams[end]) == size:
                end += 1
            if end < limit and len(datagrams[end]) < size:
                end += 1  # the last segment may be shorter
            if end - start < 2:
                self._send(datagrams[start], address)
            else:
                self._send_segmented(datagrams[start:end], size, address)
            start = end

    def _send_segmented(self, run: list[bytes], size: int, address: Address) -> None:
        if self._closed:
            return
        if self._backlog or not self._segmentation:
            for datagram in run:
                self._send(datagram, address)
            return
        try:
            self._sock.sendmsg([b"".join(run)], [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT_SIZE.pack(size))], 0, address)
        except (BlockingIOError, InterruptedError):
            for datagram in run:
                self._queue_send(datagram, address)
        except OSError as exc:
            if exc.errno in _NO_SEGMENTATION:
                self._segmentation = False  # this kernel or path cannot: one datagram per write from now on
                for datagram in run:
                    self._send(datagram, address)
            # otherwise lost, as a single datagram would be

    def _queue_send(self, datagram: bytes, address: Address) -> None:
        if len(self._backlog) >= MAX_BACKLOG:
            self.dropped_sends += 1
            return
        if not self._backlog:
            self._loop.add_writer(self._fd, self._on_writable)
        self._backlog.append((datagram, address))

    def _on_writable(self) -> None:
        backlog = self._backlog
        sock = self._sock
        while backlog:
            datagram, address = backlog[0]
            try:
                sock.sendto(datagram, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft()
        self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        now = self._loop.time()
        touched: dict[UDXStream, None] = {}
        if self._coalescing:
            self._read_coalesced(now, touched)
        else:
            self._read_each(now, touched)
        for stream in touched:
            stream._flush(defer_ack=True)

    def _read_each(self, now: float, touched: dict[UDXStream, None]) -> None:
        sock = self._sock
        buffer = self._buffer
        view = self._view
        dispatch = self._dispatch
        for count in range(MAX_BATCH):
            if count and not self._more_waiting():
                return
            try:
                size, source = sock.recvfrom_into(buffer, p.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                self._drained(count)
                return
            except OSError:
                continue  # an ICMP error for an earlier send (refused, unreachable)
            if dispatch(view[:size], source, now, touched):
                return

    def _more_waiting(self) -> bool:
        """Whether to read again this event (see PROBE_BEFORE_DRAINING)."""
        if not self._probing:
            return True
        try:
            _ioctl(self._fd, _FIONREAD, self._waiting, True)
        except OSError:
            return True  # no answer: read, as without the probe
        if not any(self._waiting):
            return False  # a zero-length datagram waits too: epoll is level-triggered, next turn
        self._probing = False  # a burst: drain until the kernel has nothing
        return True

    def _drained(self, count: int) -> None:
        """The kernel had nothing after ``count`` datagrams: after a lone one, probe again."""
        if count <= 1:
            self._probing = self._may_probe

    def _read_coalesced(self, now: float, touched: dict[UDXStream, None]) -> None:
        """UDP_GRO: one read may hold many equal-size datagrams (a segment size in a cmsg)."""
        sock = self._sock
        buffer = self._buffer
        view = self._view
        dispatch = self._dispatch
        count = 0
        while count < MAX_BATCH:
            if count and not self._more_waiting():
                return
            try:
                size, ancillary, _flags, source = sock.recvmsg_into([buffer], _GRO_ANCILLARY)
            except (BlockingIOError, InterruptedError):
                self._drained(count)
                return
            except OSError:
                count += 1
                continue
            segment = 0
            for level, kind, data in ancillary:
                if level == _SOL_UDP and kind == _UDP_GRO:
                    segment = int.from_bytes(data[:4], sys.byteorder)
            if segment <= 0 or segment >= size:
                count += 1
                if dispatch(view[: min(size, p.MAX_DATAGRAM)], source, now, touched):
                    return
                continue
            for offset in range(0, size, segment):
                count += 1
                if dispatch(view[offset : min(offset + segment, size)], source, now, touched):
                    return

    def _dispatch(self, datagram: memoryview, source: Address, now: float, touched: dict[UDXStream, None]) -> bool:
        """One datagram to its stream or to on_message; True if the socket closed meanwhile."""
        if len(datagram) >= p.HEADER_SIZE and datagram[0] == p.MAGIC and datagram[1] == p.VERSION:
            stream = self.udx.streams.get(int.from_bytes(datagram[4:8], "little"))
            if stream is not None:
                if stream.socket is not self:
                    firewall = stream.firewall
                    if firewall is None:
                        if not stream.core.connected:
                            return False  # udx-native's default: an unconnected stream eats it
                    else:
                        verdict = firewall(self, source)
                        if verdict == HOLD and not stream.core.connected:
                            stream._hold(datagram)
                            return False
                        if verdict:
                            return False
                stream._receive(datagram, now)
                touched[stream] = None
                return False
        on_message = self.on_message
        if on_message is not None:
            on_message(bytes(datagram), source)
        return self._closed

    # ---------------------------------------------------------------- closing

    def _check_open(self) -> None:
        if self._closed:
            raise SocketClosed(f"UDX socket {self.address} is closed")

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    async def close(self) -> None:
        """Abort every stream on this socket (each sends DESTROY), then close the socket."""
        if self._closed:
            return
        for stream in list(self._streams):
            stream.abort()
        self._on_writable_drain()
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._backlog:
            self._loop.remove_writer(self._fd)
            self._backlog.clear()
        self._sock.close()
        await asyncio.sleep(0)

    def _on_writable_drain(self) -> None:
        """Best effort: push out what is queued (the DESTROYs) before the socket closes."""
        backlog = self._backlog
        while backlog:
            datagram, address = backlog.popleft()
            try:
                self._sock.sendto(datagram, address)
            except OSError:
                break

    async def __aenter__(self) -> UDXSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _tune(sock: _socket.socket) -> None:
    """Large buffers as libudx asks, and don't-fragment so MTU probes are honest."""
    for option, size in ((_socket.SO_RCVBUF, RECEIVE_BUFFER), (_socket.SO_SNDBUF, SEND_BUFFER)):
        with contextlib.suppress(OSError):
            sock.setsockopt(_socket.SOL_SOCKET, option, size)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            if sock.family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_PROBE)
            else:
                sock.setsockopt(_socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)
