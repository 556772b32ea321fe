"""One secure, multiplexed connection: secret-stream and protomux driven by asyncio.

``Connection`` is an ``asyncio.Protocol``, so it runs over a TCP transport or
an in-memory pipe alike (and on uvloop).

Flushing is explicit corking, as protomux does it: while the mux is corked,
messages pile up into one batch; uncorking writes it as one encrypted frame.
A message queued on an idle, uncorked connection is written at once, and the
mux stays corked until the loop turn ends, so the rest of a burst goes as one
frame. Everything the remote makes us send while one read is processed
(replies, rejects) goes as one frame when the read is done.

Closing is graceful: ``close()`` writes what is queued, ends our side
(half-close) and keeps reading until the remote ends its side, so nothing
either side sent before the close is lost; ``close_timeout`` bounds the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from .errors import (
    ConnectionClosed,
    HandshakeTimeout,
    PeerNotReading,
    PeersocketsError,
    ProtocolError,
)
from .wire.crypto import KeyPair
from .wire.protomux import Mux
from .wire.secretstream import MAX_FRAME, Phase, SecretStream
from .wire.timers import ConnectionTimers, Due

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 5.0
DEFAULT_MAX_CHANNELS = 1024
DEFAULT_MAX_WRITE_BUFFER = 64 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT = 5.0

ConnectionHook = Callable[["Connection"], None]


class Connection(asyncio.Protocol):
    """A secret-stream connection carrying protomux channels."""

    def __init__(
        self,
        key_pair: KeyPair,
        initiator: bool,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        keepalive: float = DEFAULT_KEEPALIVE,
        max_frame_size: int = MAX_FRAME,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ephemeral: KeyPair | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.initiator = initiator
        self.key_pair = key_pair
        self.stream = SecretStream(
            initiator, key_pair, ephemeral=ephemeral, max_frame_size=max_frame_size
        )
        self.mux = Mux(
            on_output=self._on_output,
            on_full=self.flush,
            max_channels=max_channels,
        )
        self.handshake_timeout = handshake_timeout
        self.keepalive = keepalive
        self.max_write_buffer = max_write_buffer
        self.close_timeout = close_timeout
        self.refusal: PeersocketsError | None = None
        """When set before the transport connects, the connection is ended at once with it."""
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self.established: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self.on_established: list[ConnectionHook] = []
        self.on_closed: list[ConnectionHook] = []
        self.message_handler: Callable[[bytearray], None] | None = None
        """When set, decrypted messages go here instead of to the mux (raw secret-stream use)."""
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.timers = ConnectionTimers(
            self._loop.time(),
            handshake_timeout=handshake_timeout,
            keepalive=keepalive,
            close_timeout=close_timeout,
        )
        """The deadlines, sans-I/O; one loop timer is armed from timers.get_timer()."""
        self._timer: asyncio.TimerHandle | None = None
        self._receiving = False  # inside data_received: output waits for the read's end
        self._closing = False  # close() or abort() was called, or the remote ended its side
        self._lost = False  # the transport is gone
        self._holders: set[object] = set()

    # -- public -------------------------------------------------------------------

    @property
    def remote_public_key(self) -> bytes:
        """The remote's authenticated static public key (its identity)."""
        return self.stream.remote_public_key

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash, the same on both ends."""
        return self.stream.handshake_hash

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closing or closed: nothing more can be sent on it."""
        return self._closing

    @property
    def is_established(self) -> bool:
        """Whether the handshake is done: remote_public_key is known and messages can be sent."""
        return self.stream.handshake_complete

    @property
    def has_ended(self) -> bool:
        """Whether the transport is gone (after a close, once the remote ended its side too)."""
        return self._lost

    @property
    def can_send_now(self) -> bool:
        """Whether a sender may queue a message without waiting: open, writable, nobody in line."""
        return not (self._write_paused or self._closing or self._drain_waiters)

    async def wait_established(self) -> None:
        """Wait for the handshake; raises the error that ended the connection if it failed."""
        await asyncio.shield(self.established)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection has ended; returns the error that ended it, if any."""
        await asyncio.shield(self._closed)
        return self.error

    def close(self) -> None:
        """Write what is queued, end our side, and read until the remote ends its side.

        Senders waiting for flow control are woken with ConnectionClosed so they can
        go elsewhere. A remote that does not end its side within close_timeout is
        aborted.
        """
        if self._closing or self._lost:
            return
        self._stop_sending(f"connection to {self._peer_name()} is closing")
        transport = self.transport
        if transport is None:
            return  # connection_made ends it
        if not self.stream.handshake_complete or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError as exc:  # the remote reset the connection meanwhile
            self.abort(exc)
            return
        self.timers.closing(self._loop.time())
        self._arm_timer()

    def _stop_sending(self, reason: str) -> None:
        """Write what is queued, then refuse new sends and wake the senders waiting in line."""
        self.flush()
        self._closing = True
        self._wake_drainers(ConnectionClosed(reason))

    def abort(self, error: BaseException | None = None) -> None:
        """End the connection at once, recording ``error`` as the reason."""
        if error is not None and self.error is None:
            self.error = error
        self._closing = True
        if self.transport is not None and not self._lost:
            self.transport.abort()

    async def drain(self) -> None:
        """Wait for this caller's turn to write; returns at once if it may write now.

        Waiters form a line: while several tasks send on one connection, each gets
        a turn of one message, so no sender starves the others. A caller that was
        let through writes its message, then calls end_turn() to let the next one
        go. Raises ConnectionClosed if the connection closes meanwhile.
        """
        if self._closing:
            raise ConnectionClosed(f"connection to {self._peer_name()} is closed")
        if not self._write_paused and not self._drain_waiters:
            return
        waiters = self._drain_waiters
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters.append(waiter)
        if not self._write_paused:
            self.end_turn()
        try:
            while True:
                await waiter
                if self._closing:
                    raise ConnectionClosed(f"connection to {self._peer_name()} is closed")
                if not self._write_paused:
                    return
                # paused again before our turn came: wait again, first in line
                waiter = self._loop.create_future()
                waiters.insert(0, waiter)
        except BaseException:
            if waiter in waiters:
                waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.end_turn()  # cancelled after our turn came: pass it on unused
            raise

    def end_turn(self) -> None:
        """Let the next sender in line write, if the transport takes more now."""
        if self._write_paused:
            return
        waiters = self._drain_waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def flush(self) -> None:
        """Encrypt and write everything queued on the mux now (dropped once closing)."""
        transport = self.transport
        if transport is None or self._lost or not self.stream.handshake_complete:
            return
        frames = self.mux.take_frames()
        if self._closing:
            return  # our side has ended: replies owed to a closing remote go nowhere
        if not frames:
            return
        encrypt = self.stream.encrypt
        if len(frames) == 1:
            transport.write(encrypt(frames[0]))
        else:
            transport.writelines([encrypt(frame) for frame in frames])
        self._wrote(transport)

    def _wrote(self, transport: asyncio.Transport) -> None:
        """After a write: the keepalive clock restarts, and the unsent bytes are checked.

        Senders wait for drain; only replies the protocol owes (rejects, noData)
        and one flush can pass the high-water mark. A peer that makes us owe
        max_write_buffer without reading is flooding us.
        """
        self.timers.wrote(self._loop.time())
        unsent = transport.get_write_buffer_size()
        if unsent <= self.max_write_buffer:
            return
        self.abort(
            PeerNotReading(
                f"{self._peer_name()} is not reading: {unsent} bytes unsent"
                f" (max_write_buffer is {self.max_write_buffer})"
            )
        )

    def hold_reading(self, holder: object) -> None:
        """Stop reading from the transport until every holder has released it (backpressure)."""
        if not self._holders and self.transport is not None and not self._lost:
            self.transport.pause_reading()
        self._holders.add(holder)

    def release_reading(self, holder: object) -> None:
        """Undo hold_reading for ``holder``; reading resumes when no holder is left."""
        if holder not in self._holders:
            return
        self._holders.discard(holder)
        if not self._holders and self.transport is not None and not self._lost:
            self.transport.resume_reading()

    def send_raw(self, message: bytes) -> None:
        """Encrypt and write one secret-stream message now, after anything queued on the mux."""
        if self._closing or self.transport is None:
            raise ConnectionClosed(f"connection to {self._peer_name()} is closed")
        self.flush()
        self.transport.write(self.stream.encrypt(message))
        self._wrote(self.transport)

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.refusal is not None:
            self.abort(self.refusal)
            return
        if self._closing:
            self.abort()  # closed before it connected
            return
        self._arm_timer()
        self._write_raw(self.stream.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self._lost:
            return
        mux = self.mux
        mux.cork()  # what this read makes us send goes as one frame
        self._receiving = True
        try:
            stream = self.stream
            if stream.phase is Phase.TRANSPORT:
                messages = stream.receive_data(data)
            else:  # handshake and header frames may produce bytes to send back
                messages = stream.receive_data(data)
                out = stream.data_to_send()
                if out:
                    self._write_raw(out)
                if not self.established.done() and stream.handshake_complete:
                    self._on_handshake()
            receive = self.message_handler or self.mux.receive_frame
            for message in messages:
                receive(message)
                if self._lost:
                    return
        except ProtocolError as exc:
            log.info("closing connection to %s: %s", self._peer_name(), exc)
            self.abort(exc)
        except Exception as exc:  # a bug in a handler must not leave the connection half-alive
            log.exception("unexpected error on connection to %s", self._peer_name())
            self.abort(exc)
        finally:
            mux.uncork()
            self._receiving = False

    def eof_received(self) -> bool | None:
        # The remote ended its side: write what is queued, then asyncio closes ours.
        if not self._closing:
            self._stop_sending(f"{self._peer_name()} closed the connection")
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.end_turn()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self.error is None and exc is not None:
            self.error = exc
        self.timers.ended()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        closed = ConnectionClosed(f"connection to {self._peer_name()} closed")
        if not self.established.done():
            failure = self.error if self.error is not None else closed
            self.established.set_exception(failure)
            self.established.exception()  # mark retrieved: not every caller awaits it
        self._wake_drainers(closed)
        try:
            self.mux.destroy()
        finally:
            for hook in list(self.on_closed):  # a hook may remove itself
                self._run_hook(hook)
            self._closed.set_result(None)

    # -- internals ------------------------------------------------------------------

    def _on_handshake(self) -> None:
        self.timers.established(self._loop.time())
        self._arm_timer()
        self.established.set_result(None)
        for hook in list(self.on_established):
            self._run_hook(hook)
        self.flush()  # anything queued before the handshake finished

    def _run_hook(self, hook: ConnectionHook) -> None:
        try:
            hook(self)
        except PeersocketsError:
            raise
        except Exception:
            log.exception("connection hook %r failed", hook)

    def _on_output(self) -> None:
        """The uncorked mux has something to send: write it now, then cork until the turn ends.

        So a lone message goes at once, and whatever else this loop turn queues
        goes as one batch in one frame when the turn ends. At the end of a read
        (the mux was corked for it) the replies are simply written: they are one
        frame already, and no extra loop turn is spent.
        """
        self.flush()
        if not self._receiving:
            self.mux.cork()
            self._loop.call_soon(self.mux.uncork)

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    def handle_timer(self, now: float) -> None:
        """Do what the deadlines say is due at ``now`` (the loop timer calls this; tests may)."""
        due = self.timers.handle_timer(now)
        if due is Due.KEEPALIVE:
            if self.transport is not None and not self._closing:
                self.transport.write(self.stream.encrypt(b""))
        elif due is Due.HANDSHAKE_TIMEOUT:
            self.abort(
                HandshakeTimeout(
                    f"{self._peer_name()} did not complete the handshake within"
                    f" {self.handshake_timeout:g} s"
                )
            )
        elif due is Due.CLOSE_TIMEOUT:
            self.abort(
                ConnectionClosed(
                    f"{self._peer_name()} did not end its side within {self.close_timeout:g} s"
                    " of our close"
                )
            )
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Keep one loop timer armed for the earliest deadline (a later one re-arms on firing)."""
        when = self.timers.get_timer()
        timer = self._timer
        if timer is not None:
            if when is not None and timer.when() <= when:
                return  # it fires early enough; handle_timer arms the next one
            timer.cancel()
            self._timer = None
        if when is not None and not self._lost:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.handle_timer(self._loop.time())

    def _wake_drainers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def _peer_name(self) -> str:
        if self.stream.remote_public_key:
            return self.stream.remote_public_key.hex()[:16]
        if self.transport is not None:
            return str(self.transport.get_extra_info("peername"))
        return "unconnected peer"
