"""In-memory duplex pipes: a pair of asyncio transports joined back to back.

They let the real secret-stream and protomux run without sockets (tests,
examples, MemoryNetwork), with the same flow-control calls as TCP.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class PipeTransport(asyncio.Transport):
    """One end of an in-memory pipe; data written here is received by the other end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._peer: PipeTransport | None = None
        self._inbox: deque[bytes] = deque()
        self._buffered = 0  # bytes written by this end, not yet received by the peer
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._eof_sent = False
        self._lost = False
        self._delivery_scheduled = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # in memory: no address (peername and sockname are None)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def is_reading(self) -> bool:
        return not self._reading_paused

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._schedule_delivery()

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self._peer
        if self._closing or self._eof_sent or self._lost or peer is None or peer._lost:
            return
        chunk = bytes(data)
        if not chunk:
            return
        self._buffered += len(chunk)
        peer._inbox.append(chunk)
        peer._schedule_delivery()
        if not self._writing_paused and self._buffered > HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """End our side after what is already written; we keep reading (a half-close)."""
        if self._eof_sent or self._lost:
            return
        self._eof_sent = True
        peer = self._peer
        if peer is not None and not peer._lost:
            peer._inbox.append(b"")  # end-of-stream marker, delivered in order
            peer._schedule_delivery()

    def close(self) -> None:
        """End our side after what is already written and stop reading (as a socket does)."""
        if self._closing or self._lost:
            return
        self.write_eof()
        self._closing = True
        self._lose(None)

    def abort(self) -> None:
        """Drop the connection at once, on both ends."""
        self._closing = True
        peer = self._peer
        self._lose(None)
        if peer is not None:
            peer._lose(ConnectionResetError("pipe aborted by the other end"))

    def _schedule_delivery(self) -> None:
        if not self._delivery_scheduled and not self._lost:
            self._delivery_scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery_scheduled = False
        peer = self._peer
        while self._inbox and not self._reading_paused and not self._lost:
            chunk = self._inbox.popleft()
            if not chunk:  # the peer ended its side
                keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
                if not keep_open:
                    self.close()
                return
            if peer is not None:
                peer._written_received(len(chunk))
            self._protocol.data_received(chunk)  # type: ignore[attr-defined]

    def _written_received(self, size: int) -> None:
        self._buffered -= size
        if self._writing_paused and self._buffered <= LOW_WATER and not self._lost:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._inbox.clear()
        self._loop.call_soon(self._protocol.connection_lost, exc)


def create_pipe(
    protocol_a: asyncio.BaseProtocol, protocol_b: asyncio.BaseProtocol
) -> tuple[PipeTransport, PipeTransport]:
    """Join two protocols with an in-memory pipe and call their connection_made.

    Received chunks go to each protocol's data_received (a buffered protocol
    needs one too, as Connection has).
    """
    loop = asyncio.get_running_loop()
    a = PipeTransport(loop, protocol_a)
    b = PipeTransport(loop, protocol_b)
    a._peer, b._peer = b, a
    protocol_a.connection_made(a)
    protocol_b.connection_made(b)
    return a, b
