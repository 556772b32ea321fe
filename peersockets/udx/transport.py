"""A UDX stream as an ``asyncio.Transport``: the glue between a StreamCore and a protocol.

Any asyncio protocol runs over it: ``StreamReaderProtocol`` (``open_stream``
returns asyncio's reader and writer) or ``Connection`` (secret-stream and
protomux, unchanged from TCP). Packets reach it from ``UDXSocket`` in batches;
after each batch (or write) it flushes the core once, sends what the core
produced, and re-arms one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..errors import ConnectionClosed, InvalidSetting, StreamReset, StreamTimeout
from .stream import Closed, Ended, RemoteChanged, StreamCore

if TYPE_CHECKING:
    from .socket import Address, UDXSocket

__all__ = ["Firewall", "UDXStream"]

log = logging.getLogger(__name__)

HOLD: Final = "hold"
"""A firewall's third answer: keep the packet, and process it once the stream is connected."""
MAX_HELD_PACKETS: Final = 32
"""Packets a stream keeps (firewall answer HOLD) before it is connected; the rest are dropped."""

Firewall = Callable[["UDXSocket", "Address"], "bool | str"]
"""firewall(socket, source) for a packet arriving on a socket other than the stream's
(every packet, before ``connect``): True drops it, False processes it (udx-native's
convention), HOLD keeps it (at most MAX_HELD_PACKETS) until ``connect``: a stream whose
remote is not decided yet loses nothing the remote sent early. It may call
``connect`` to adopt the packet's source as the remote."""

HIGH_WATER = 1024 * 1024
"""Bytes queued or unacknowledged above which the protocol is asked to pause writing."""

CLOSE_TIMEOUT = 10.0
"""Seconds ``close()`` waits for the remote to end its side before aborting with DESTROY."""


class UDXStream(asyncio.Transport):
    """One reliable, ordered byte stream over UDP; an ``asyncio.Transport`` for a protocol."""

    def __init__(
        self,
        core: StreamCore,
        loop: asyncio.AbstractEventLoop,
        *,
        firewall: Firewall | None = None,
        unregister: Callable[[UDXStream], None],
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        super().__init__()
        if close_timeout <= 0:
            raise InvalidSetting(f"close_timeout must be > 0 seconds, got {close_timeout!r}")
        self.core = core
        self._loop = loop
        self.firewall: Firewall | None = firewall
        """Decides packets that arrive on another socket than the stream's (see ``Firewall``).
        None: dropped until the stream is connected, accepted after (same UDX instance)."""
        self._unregister = unregister
        self._close_timeout = close_timeout
        self.socket: UDXSocket | None = None
        self.remote_address: Address | None = None
        self._protocol: asyncio.BaseProtocol | None = None
        self._buffered = False
        self._paused_reading = False
        self._held: deque[bytes] = deque()
        self._eof_held = False
        self._writing_paused = False
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        self._closing = False
        self._lost = False
        self._lost_reported = False
        self._ack_scheduled = False
        self._delivering = False
        self._forgotten = False
        self._timer: asyncio.Handle | None = None
        self._timer_when = 0.0
        self._close_deadline: float | None = None
        self._remote_changed: list[asyncio.Future[None]] = []
        self._early: list[bytes] = []  # packets held (firewall HOLD) until connect
        self.closed: asyncio.Future[None] = loop.create_future()
        """Done (with the stream's error, if any) once the stream is closed."""
        self.message_handler: Callable[[bytes], None] | None = None
        """Called with each MESSAGE datagram (unordered, unreliable) that arrives."""

    @property
    def local_id(self) -> int:
        """Our stream id: the id in the packets the remote sends us."""
        return self.core.local_id

    @property
    def remote_id(self) -> int:
        """The remote's stream id (0 until connected)."""
        return self.core.remote_id

    def __repr__(self) -> str:
        state = "closed" if self.core.closed else "connected" if self.core.connected else "unconnected"
        return f"<UDXStream {self.local_id}->{self.remote_id} {state} {self.remote_address}>"

    # ---------------------------------------------------------------- linking

    def connect(self, socket: UDXSocket, remote_id: int, address: Address) -> None:
        """Send to ``remote_id`` at ``address`` through ``socket``; nothing goes on the wire."""
        if self.core.closed:
            raise ConnectionClosed(f"UDX stream {self.local_id} is closed")
        if self.core.connected:
            raise InvalidSetting(f"UDX stream {self.local_id} is already connected to {self.remote_address}")
        _check_remote_id(remote_id)
        self.socket = socket
        self.remote_address = address
        socket._attach(self)
        self.core.connect(remote_id, (socket, address), self._loop.time())
        if self._early:  # after the caller has set the protocol up (this same turn)
            self._loop.call_soon(self._receive_held)
        self._flush()

    def change_remote(self, socket: UDXSocket, remote_id: int, address: Address) -> asyncio.Future[None]:
        """Send new packets to ``remote_id`` at ``address`` through ``socket`` (relay to direct).

        The future is done once every packet sent before the change is acknowledged.
        """
        if not self.core.connected or self.core.closed:
            raise ConnectionClosed(f"UDX stream {self.local_id} is not connected")
        _check_remote_id(remote_id)
        done: asyncio.Future[None] = self._loop.create_future()
        self._remote_changed.append(done)
        if self.socket is not socket:
            if self.socket is not None:
                self.socket._detach(self)
            socket._attach(self)
        self.socket = socket
        self.remote_address = address
        self.core.change_remote(remote_id, (socket, address), self._loop.time())
        self._flush()
        return done

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand received bytes and events to ``protocol`` (``connection_made`` is the caller's)."""
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.remote_address
        if name == "sockname":
            return self.socket.address if self.socket is not None else default
        if name == "udx_stream":
            return self
        return default

    # ---------------------------------------------------------------- writing

    def _closed_error(self) -> ConnectionClosed:
        error = self.core.error
        if isinstance(error, StreamReset | StreamTimeout):
            return type(error)(f"UDX stream {self.local_id} cannot write: {error.strerror}")
        return ConnectionClosed(f"UDX stream {self.local_id} is closing; cannot write")

    def _check_writable(self) -> None:
        if self._closing or self.core.closed:
            raise self._closed_error()
        if self.core.ending:
            raise ConnectionClosed(f"UDX stream {self.local_id}: cannot write after write_eof()")
        if not self.core.connected:
            raise ConnectionClosed(f"UDX stream {self.local_id} is not connected yet")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_writable()
        self.core.write(data)
        self._flush()
        self._check_write_pressure()

    def writelines(self, list_of_data: Any) -> None:
        self._check_writable()
        for data in list_of_data:
            self.core.write(data)
        self._flush()
        self._check_write_pressure()

    def write_eof(self) -> None:
        """Send END after everything written: the remote reads EOF, we may still read."""
        if self.core.closed or self.core.ending:
            return
        self.core.end()
        self._flush()

    def can_write_eof(self) -> bool:
        return True

    def send_message(self, payload: bytes | bytearray | memoryview) -> None:
        """One unreliable, unordered datagram (a MESSAGE packet) to the remote."""
        if self.core.closed or not self.core.connected:
            raise ConnectionClosed(f"UDX stream {self.local_id} cannot send: not connected")
        if self.socket is not None:
            self.socket._check_message_size(len(payload), self.remote_address)
        self.core.send_message(payload, self._loop.time())
        self._send_outgoing()

    def get_write_buffer_size(self) -> int:
        return self.core.writable_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise InvalidSetting(f"write buffer limits need high >= low >= 0, got high={high} low={low}")
        self._high, self._low = high, low
        self._check_write_pressure()

    def _check_write_pressure(self) -> None:
        if self._lost:
            return  # connection_lost wakes the writers (with the error, if there is one)
        size = self.core.writable_bytes
        protocol = self._protocol
        if not self._writing_paused and size > self._high:
            self._writing_paused = True
            if protocol is not None:
                protocol.pause_writing()
        elif self._writing_paused and size <= self._low:
            self._writing_paused = False
            if protocol is not None:
                protocol.resume_writing()

    # ---------------------------------------------------------------- reading

    def is_reading(self) -> bool:
        return not self._paused_reading and not self._lost_reported

    def pause_reading(self) -> None:
        self._paused_reading = True

    def resume_reading(self) -> None:
        if not self._paused_reading:
            return
        self._paused_reading = False
        if self._held or self._eof_held:
            self._loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        while self._held and not self._paused_reading:
            piece = self._held.popleft()
            self._hand(piece)
        if not self._held and self._eof_held and not self._paused_reading:
            self._eof_held = False
            self._on_ended()
        if self._lost:
            if not self._held and not self._eof_held:
                self._report_lost(self.core.error)
            return
        self._flush()

    def _hand(self, piece: bytes | memoryview) -> None:
        """Give one piece to the protocol (copying: the view is the socket's buffer)."""
        protocol = self._protocol
        size = len(piece)
        if self._closing or protocol is None:
            pass  # after close() nothing more is delivered; it is still acked
        elif self._buffered:
            offset = 0
            while offset < size:
                buffer = protocol.get_buffer(size - offset)  # type: ignore[attr-defined]
                n = min(len(buffer), size - offset)
                buffer[:n] = piece[offset : offset + n]
                protocol.buffer_updated(n)  # type: ignore[attr-defined]
                offset += n
        else:
            protocol.data_received(bytes(piece))  # type: ignore[attr-defined]
        self.core.consumed(size)

    def _receive_held(self) -> None:
        early, self._early = self._early, []
        if self.core.closed:
            return
        now = self._loop.time()
        for datagram in early:
            self._receive(memoryview(datagram), now)
        self._flush()

    def _hold(self, datagram: memoryview) -> None:
        """Keep a packet that came before ``connect`` (the firewall said HOLD)."""
        if len(self._early) < MAX_HELD_PACKETS:
            self._early.append(bytes(datagram))

    def _receive(self, datagram: memoryview, now: float) -> None:
        """One packet for this stream (called by the socket, within a batch)."""
        core = self.core
        core.receive(datagram, now)
        if core.incoming:
            self._take_incoming()
        if core.messages:
            messages = core.messages
            core.messages = []
            handler = self.message_handler
            if handler is not None:
                for message in messages:
                    handler(message)

    def _take_incoming(self) -> None:
        if self._delivering:
            return  # the protocol wrote while we hand it data: the loop below takes the rest, in order
        core = self.core
        self._delivering = True
        try:
            while core.incoming:  # handing over frees window: the core may release more
                incoming = core.incoming
                core.incoming = []
                if self._paused_reading or self._held:
                    self._held.extend(bytes(piece) for piece in incoming)
                    return
                for index, piece in enumerate(incoming):
                    if self._paused_reading:
                        self._held.extend(bytes(rest) for rest in incoming[index:])
                        return
                    self._hand(piece)
        finally:
            self._delivering = False

    # ------------------------------------------------------------ batch & timers

    def _flush(self, defer_ack: bool = False) -> None:
        """Let the core send what it may, then deliver events and re-arm the timer.

        After a batch of received datagrams the socket defers a pure ack to the next
        loop turn, so that a protocol answering in a task (asyncio streams) sends one
        datagram carrying data and ack, not an ack and then the data.
        """
        core = self.core
        now = self._loop.time()
        if core.flush(now, defer_ack) and not self._ack_scheduled:
            self._ack_scheduled = True
            self._loop.call_soon(self._flush_deferred_ack)
        if core.incoming:
            self._take_incoming()
        self._send_outgoing()
        if core.events:
            self._dispatch_events()
        self._arm_timer(now)
        if self._writing_paused:
            self._check_write_pressure()

    def _flush_deferred_ack(self) -> None:
        self._ack_scheduled = False
        if self.core.ack_pending:  # else a reply written meanwhile carried it
            self._flush()

    def _send_outgoing(self) -> None:
        outgoing = self.core.outgoing
        if not outgoing:
            return
        self.core.outgoing = []
        socket: UDXSocket
        address: Address
        if len(outgoing) == 1:
            datagram, path = outgoing[0]
            socket, address = path  # type: ignore[misc]
            socket._send(datagram, address)
            return
        run: list[bytes] = []
        run_path: object = None
        for datagram, path in outgoing:
            if path is not run_path and run:
                socket, address = run_path  # type: ignore[misc]
                socket._send_many(run, address)
                run = []
            run_path = path
            run.append(datagram)
        socket, address = run_path  # type: ignore[misc]
        socket._send_many(run, address)

    def _arm_timer(self, now: float) -> None:
        when = self.core.get_timer()
        if self._close_deadline is not None and (when is None or self._close_deadline < when):
            when = self._close_deadline
        timer = self._timer
        if when is None:
            return  # an armed timer fires once and finds nothing due: cheaper than re-arming per packet
        if timer is not None:
            if self._timer_when <= when:
                return  # it fires early and re-arms
            timer.cancel()
        self._timer_when = when  # uvloop's handle for a past deadline has no when()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._close_deadline is not None and now >= self._close_deadline and not self.core.closed:
            log.debug("%r: the remote did not end within %.1f s of close(); aborting", self, self._close_timeout)
            self._close_deadline = None
            self.core.destroy(now)
        else:
            when = self.core.get_timer()
            if when is not None and when <= now:
                self.core.handle_timer(now)
        self._flush()
        if self._lost and not self.core.lingering:
            self._forget()

    def _dispatch_events(self) -> None:
        events = self.core.events
        while events:
            event = events.pop(0)
            if isinstance(event, Ended):
                if self._held or self._paused_reading:
                    self._eof_held = True
                else:
                    self._on_ended()
            elif isinstance(event, RemoteChanged):
                waiting, self._remote_changed = self._remote_changed, []
                for future in waiting:
                    if not future.done():
                        future.set_result(None)
            elif isinstance(event, Closed):
                self._on_closed(event.error)

    def _on_ended(self) -> None:
        protocol = self._protocol
        keep_open = False
        if protocol is not None and not self._closing:
            keep_open = bool(protocol.eof_received())  # type: ignore[attr-defined]
        if not keep_open and not self._lost:
            self.close()

    def _on_closed(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._close_deadline = None
        if error is not None:
            self._held.clear()
            self._eof_held = False
        for future in self._remote_changed:
            if not future.done():
                future.set_exception(error or ConnectionClosed(f"UDX stream {self.local_id} closed"))
                future.exception()
        self._remote_changed = []
        if not self.core.lingering:
            self._forget()
        if not self.closed.done():
            if error is None:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(error)
                self.closed.exception()
        if not self._held and not self._eof_held:
            self._report_lost(error)
        # otherwise the held bytes and EOF go to the protocol first (_release_held)

    def _report_lost(self, error: Exception | None) -> None:
        if self._lost_reported:
            return
        self._lost_reported = True
        self._closing = True
        protocol = self._protocol
        if protocol is not None:
            self._loop.call_soon(protocol.connection_lost, error)

    def _forget(self) -> None:
        if self._forgotten:
            return
        self._forgotten = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unregister(self)
        if self.socket is not None:
            self.socket._detach(self)

    # ----------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """End our side after what is queued; closed once both sides ended (or close_timeout)."""
        if self._closing or self.core.closed:
            self._closing = True
            return
        self._closing = True
        if not self.core.connected:
            self.abort()
            return
        self._close_deadline = self._loop.time() + self._close_timeout
        self.write_eof()
        self._flush()

    def abort(self) -> None:
        """Close at once: one DESTROY to the remote, queued data dropped."""
        self._closing = True
        if not self.core.closed:
            self.core.destroy(self._loop.time())
        self._flush()

    async def wait_closed(self) -> None:
        """Wait until the stream is closed (its error, if any, is not raised here)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.closed)


def _check_remote_id(remote_id: int) -> None:
    if not isinstance(remote_id, int) or not 0 <= remote_id <= 0xFFFFFFFF:
        raise InvalidSetting(f"a UDX stream id is a 32-bit unsigned number, got {remote_id!r}")
