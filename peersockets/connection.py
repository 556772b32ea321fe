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

Receiving is bounded: one read handles at most ``ITEMS_PER_READ`` messages
(batch items count one each); the rest waits, unparsed, for the next loop
turn, with the transport paused meanwhile so order holds. While something
holds reading (a full queue, the receive budget), the rest waits for the
release. Until a channel has opened, an unfinished frame may be at most
MAX_UNPAIRED_FRAME, and the deadlines of ``wire.timers`` end strangers that
hold a slot, dead peers and unfinished frames.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import cast

from .budget import FREE_BYTES, ReceiveBudget
from .errors import (
    ConnectionClosed,
    FrameTimeout,
    HandshakeTimeout,
    PairTimeout,
    PeerNotReading,
    PeersocketsError,
    ProtocolError,
    ReadTimeout,
)
from .wire.crypto import KeyPair
from .wire.noise import HandshakeResult
from .wire.protomux import Mux
from .wire.secretstream import MAX_FRAME, Phase, SecretStream
from .wire.timers import ConnectionTimers, Due

_TRANSPORT = Phase.TRANSPORT

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 5.0
DEFAULT_MAX_CHANNELS = 1024
DEFAULT_MAX_WRITE_BUFFER = 64 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT = 5.0
DEFAULT_PAIR_TIMEOUT = 10.0
DEFAULT_FRAME_TIMEOUT = 30.0
READ_TIMEOUT_KEEPALIVES = 3
"""read_timeout defaults to this many keepalive periods."""
MAX_UNPAIRED_FRAME = 1024 * 1024
"""The largest frame kept unfinished while no channel is open on the connection.

Larger than a handshake frame because a JavaScript corestore sends the opens of
all its cores in one batch (1,102 opens make 95 KB); 1 MiB holds ~10,000. The
receive budget counts past 64 KiB, and pair_timeout ends such a connection."""
BURST_WINDOW = 0.001
"""Seconds after a lone message within which another one (nothing read between) starts a
burst, batched until the loop turn ends; a lone message is written at once."""
READ_BUFFER = 256 * 1024
"""Bytes a socket read may bring at once (asyncio's own read size)."""
ITEMS_PER_READ = 2048
"""Messages handled per read (or loop turn) before the rest waits for the next turn."""

ConnectionHook = Callable[["Connection"], None]

_read_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _host_port(peername: object) -> tuple[str, int] | None:
    """(host, port) of a transport's peername: IPv6's 4-tuple shortened, anything else None."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        if isinstance(host, str) and isinstance(port, int):
            return host, port
    return None


def _read_buffer_of(loop: asyncio.AbstractEventLoop) -> memoryview:
    """The receive buffer every connection of ``loop`` reads into (one per loop), as a view:
    the buffer is never resized, so the view stays valid."""
    buffer = _read_buffers.get(loop)
    if buffer is None:
        buffer = _read_buffers[loop] = memoryview(bytearray(READ_BUFFER))
    return buffer


class Connection(asyncio.BufferedProtocol):
    """A secret-stream connection carrying protomux channels.

    A buffered protocol: socket transports read into one receive buffer that all
    connections of an event loop share (a read is handled before the next one,
    and whatever must outlive it is copied), instead of allocating a 256 KiB
    bytes object per read (glibc then grows and trims its heap on every read:
    about 10 us a round trip). Transports that hand over bytes (the in-memory
    pipe) call data_received.
    """

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
        pair_timeout: float = DEFAULT_PAIR_TIMEOUT,
        read_timeout: float | None = None,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        receive_budget: ReceiveBudget | None = None,
        ephemeral: KeyPair | None = None,
        handshake: HandshakeResult | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.initiator = initiator
        self.key_pair = key_pair
        self.stream = SecretStream(
            initiator,
            key_pair,
            ephemeral=ephemeral,
            max_frame_size=max_frame_size,
            handshake=handshake,
        )
        # until a channel opens, an unfinished frame may not be large
        self.stream.frame_limit = min(max_frame_size, MAX_UNPAIRED_FRAME)
        self.mux = Mux(
            on_output=self._on_output,
            on_full=self.flush,
            max_channels=max_channels,
        )
        self.mux.on_channels = self._on_channels
        self.mux.write_lone = self._write_lone
        self.handshake_timeout = handshake_timeout
        self.keepalive = keepalive
        self.max_write_buffer = max_write_buffer
        self.close_timeout = close_timeout
        self.pair_timeout = pair_timeout
        self.read_timeout = (
            READ_TIMEOUT_KEEPALIVES * keepalive if read_timeout is None else read_timeout
        )
        self.frame_timeout = frame_timeout
        self.receive_budget = receive_budget
        self.discovered = False
        """Made by a DHT discovery (hyperswarm's rule decides between two to one peer)."""
        self.refusal: PeersocketsError | None = None
        """When set before the transport connects, the connection is ended at once with it."""
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self.remote_address: tuple[str, int] | None = None
        """The remote's (host, port) where the transport has one (TCP, UDX); None in memory."""
        self.established: asyncio.Future[None] = self._loop.create_future()
        self.remote_opened: asyncio.Future[None] = self._loop.create_future()
        """Done once the remote's stream header arrived: its data reaches us (with a handshake
        made elsewhere, ``established`` is done before a byte has come back)."""
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self.on_established: list[ConnectionHook] = []
        self.on_closed: list[ConnectionHook] = []
        self._message_handler: Callable[[bytearray], None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.timers = ConnectionTimers(
            self._loop.time(),
            handshake_timeout=handshake_timeout,
            keepalive=keepalive,
            close_timeout=close_timeout,
            pair_timeout=pair_timeout,
            read_timeout=self.read_timeout,
            frame_timeout=frame_timeout,
        )
        """The deadlines, sans-I/O; one loop timer is armed from timers.get_timer()."""
        self._timer: asyncio.TimerHandle | None = None
        self._receiving = False  # inside data_received: output waits for the read's end
        self._lone_at: float | None = None  # when a lone message was written (None: a read since)
        self._closing = False  # close() or abort() was called, or the remote ended its side
        self._lost = False  # the transport is gone
        self._holders: set[object] = set()
        self._read_buffer = _read_buffer_of(self._loop)
        self._reading = True  # the transport is being read
        # a read's unhandled rest: the messages and the index of the first not handled
        self._backlog: tuple[list[bytearray], int] | None = None
        self._budgeted = False  # the receive budget counts bytes of ours
        self._eof_pending = False  # the remote ended its side while a backlog waited

    # -- public -------------------------------------------------------------------

    @property
    def carried_both_ways(self) -> bool:
        """Whether bytes went both ways: our header is always sent first, and the remote's came."""
        opened = self.remote_opened
        return opened.done() and not opened.cancelled() and opened.exception() is None

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

    @property
    def message_handler(self) -> Callable[[bytearray], None] | None:
        """When set, decrypted messages go here instead of to the mux (raw secret-stream use).

        A raw connection has no channels: setting a handler lifts the small frame
        cap and the pair deadline, which are for connections that use the mux.
        """
        return self._message_handler

    @message_handler.setter
    def message_handler(self, handler: Callable[[bytearray], None] | None) -> None:
        self._message_handler = handler
        if handler is not None:
            self._on_channels(True)

    @property
    def is_reading(self) -> bool:
        """Whether nothing holds reading (backpressure) on this connection now."""
        return not self._holders

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
        """After a write: no keepalive is owed yet, and the unsent bytes are checked.

        Senders wait for drain; only replies the protocol owes (rejects, noData)
        and one flush can pass the high-water mark. A peer that makes us owe
        max_write_buffer without reading is flooding us. (Below the transport's
        high-water mark there is nothing to check.)
        """
        self.timers.write_seen = True
        if not self._write_paused:
            return
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
        """Stop reading until every holder has released it (backpressure).

        Handling stops before the next message too: the rest of a read, even of
        one batch frame, waits unparsed.
        """
        if not self._holders:
            self.mux.halted = True
            self.timers.reading_paused()
        self._holders.add(holder)
        self._update_reading()

    def release_reading(self, holder: object) -> None:
        """Undo hold_reading for ``holder``; reading resumes when no holder is left."""
        if holder not in self._holders:
            return
        self._holders.discard(holder)
        if self._holders:
            return
        self.mux.halted = False
        if self._lost:
            return
        self.timers.reading_resumed(self._loop.time())
        self._arm_timer()
        if self._backlog is not None:
            self._loop.call_soon(self._continue)
        else:
            self._update_reading()

    def _update_reading(self) -> None:
        """Pause or resume the transport: read while nothing holds it and no backlog waits."""
        reading = not self._holders and self._backlog is None
        if reading == self._reading or self.transport is None or self._lost:
            return
        self._reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

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
        self.remote_address = _host_port(transport.get_extra_info("peername"))
        if self.refusal is not None:
            self.abort(self.refusal)
            return
        if self._closing:
            self.abort()  # closed before it connected
            return
        self._arm_timer()
        self._write_raw(self.stream.data_to_send())
        if self.stream.handshake_complete and not self.established.done():
            self._on_handshake()  # keys from a handshake made elsewhere (hyperdht's IK)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # not released explicitly: an error's traceback may still hold a view of it
        self.data_received(self._read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._lost:
            return
        mux = self.mux
        mux.cork()  # what this read makes us send goes as one frame
        self._receiving = True
        self._lone_at = None  # the next lone message after a read goes at once
        try:
            stream = self.stream
            if stream.phase is _TRANSPORT:
                messages = stream.receive_data(data)
            else:  # handshake and header frames may produce bytes to send back
                messages = stream.receive_data(data)
                out = stream.data_to_send()
                if out:
                    self._write_raw(out)
                if not self.established.done() and stream.handshake_complete:
                    self._on_handshake()
                if not self.remote_opened.done() and self.stream.phase is Phase.TRANSPORT:
                    self.remote_opened.set_result(None)
            unfinished = stream.unfinished
            timers = self.timers
            timers.read_seen = True
            if (unfinished or timers.frame_pending) and timers.frame_state(
                self._loop.time(), unfinished > 0, bool(messages)
            ):
                self._arm_timer()
            if self._backlog is not None:  # a transport that delivered while paused
                self._backlog[0].extend(messages)
            elif len(messages) == 1 and self._message_handler is None and not mux.unfinished_batch:
                mux.item_budget = ITEMS_PER_READ  # _handle's common case, inline: one frame
                if not mux.receive_frame(messages[0]) and not self._lost:
                    self._keep_backlog(messages, 1)
            elif messages:
                self._handle(messages, 0)
            if unfinished or self._budgeted or self._backlog is not None:
                if unfinished and self._backlog is None:
                    stream.check_unfinished()  # after the messages before it: an open lifts the cap
                if unfinished > FREE_BYTES or self._budgeted or self._backlog is not None:
                    self._count_held()
        except Exception as exc:
            self._failed(exc)
        finally:
            mux.uncork()
            self._receiving = False

    def _handle(self, messages: list[bytearray], start: int) -> None:
        """Handle ``messages[start:]`` until ITEMS_PER_READ are spent or reading is held;
        the rest is kept as the backlog, for the next turn or the release."""
        handler = self._message_handler
        if handler is not None:
            for index in range(start, len(messages)):
                handler(messages[index])
                if self._lost:
                    return
            return
        mux = self.mux
        mux.item_budget = ITEMS_PER_READ
        if mux.unfinished_batch and not mux.resume_batch():
            self._keep_backlog(messages, start)
            return
        receive = mux.receive_frame
        count = len(messages)
        index = start
        while index < count:
            finished = receive(messages[index])
            index += 1
            if self._lost:
                return
            if not finished or (index < count and (mux.item_budget <= 0 or mux.halted)):
                self._keep_backlog(messages, index)
                return

    def _keep_backlog(self, messages: list[bytearray], start: int) -> None:
        """Keep what is not handled yet; go on next turn, or when reading is released."""
        self._backlog = (messages, start)
        self._update_reading()
        if not self._holders:
            self._loop.call_soon(self._continue)

    def _continue(self) -> None:
        """Handle the backlog kept by an earlier read (then read again, once it is done)."""
        backlog = self._backlog
        if backlog is None or self._holders or self._lost:
            return
        self._backlog = None
        mux = self.mux
        mux.cork()
        self._receiving = True
        try:
            self._handle(*backlog)
            self._count_held()
        except Exception as exc:
            self._failed(exc)
        finally:
            mux.uncork()
            self._receiving = False
        if self._backlog is None and not self._lost:
            if self._eof_pending:
                self._eof_pending = False
                if not self.eof_received() and self.transport is not None:
                    self.transport.close()
                return
            self._update_reading()

    def _count_held(self) -> None:
        """Tell the receive budget how many bytes this connection holds unhandled."""
        budget = self.receive_budget
        if budget is None:
            return
        held = self.stream.unfinished
        backlog = self._backlog
        if backlog is not None:
            messages, start = backlog
            if self.mux.unfinished_batch and start:
                start -= 1  # the batch frame being parsed is held too
            held += sum(len(message) for message in messages[start:])
        self._budgeted = held > FREE_BYTES
        budget.update(self, held)

    def _failed(self, exc: Exception) -> None:
        """Handling what the remote sent raised: end the connection with the error."""
        if isinstance(exc, ProtocolError):
            log.info("closing connection to %s: %s", self._peer_name(), exc)
        else:  # a bug in a handler must not leave the connection half-alive
            log.error("unexpected error on connection to %s", self._peer_name(), exc_info=exc)
        self.abort(exc)

    def eof_received(self) -> bool | None:
        # The remote ended its side: write what is queued, then asyncio closes ours.
        if self._backlog is not None:
            self._eof_pending = True  # after the backlog is handled
            return True
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
        failure = self.error if self.error is not None else closed
        for opening in (self.established, self.remote_opened):
            if not opening.done():
                opening.set_exception(failure)
                opening.exception()  # mark retrieved: not every caller awaits it
        self._wake_drainers(closed)
        self._backlog = None
        if self.receive_budget is not None:
            self.receive_budget.forget(self)
        try:
            self.mux.destroy()
        finally:
            for hook in list(self.on_closed):  # a hook may remove itself
                self._run_hook(hook)
            self._closed.set_result(None)

    # -- internals ------------------------------------------------------------------

    def _on_channels(self, any_open: bool) -> None:
        """The first channel opened (the remote earned full-size frames), or the last closed."""
        if any_open:
            self.stream.frame_limit = self.stream.max_frame_size
        elif self._message_handler is not None:
            return
        self.timers.channels_changed(self._loop.time(), any_open)
        self._arm_timer()

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
        """The uncorked mux has something to send: write it now, or batch a burst.

        A lone message goes at once, with nothing scheduled: a round trip costs
        no extra loop turn. A second message within BURST_WINDOW of a lone one,
        with nothing read in between, is a burst: the mux is corked until the
        turn ends, so the rest of the burst goes as one batch in one frame. At
        the end of a read (the mux was corked for it) the replies are simply
        written: they are one frame already.
        """
        if self._receiving:
            self.flush()
            return
        now = self._loop.time()
        if self._lone_at is None or now - self._lone_at > BURST_WINDOW:
            self.flush()
            self._lone_at = now
            return
        self.mux.cork()
        self._loop.call_soon(self._end_burst)

    def _write_lone(self, frame: bytes) -> bool:
        """The mux offers a lone message's frame: write it at once unless it is part of a
        burst (or cannot go yet); the queue's path (_on_output) decides then. At the end
        of a read (the mux was corked for it) the reply is simply written."""
        transport = self.transport
        if transport is None or self._lost or self._closing or not self.stream.handshake_complete:
            return False
        if not self._receiving:
            now = self._loop.time()
            lone_at = self._lone_at
            if lone_at is not None and now - lone_at <= BURST_WINDOW:
                return False
            self._lone_at = now
        transport.write(self.stream.encrypt(frame))
        self.timers.write_seen = True
        if self._write_paused:
            self._wrote(transport)  # past the high-water mark: the unsent bytes are checked
        return True

    def _end_burst(self) -> None:
        """The turn of a burst has ended: write what it queued, as one frame."""
        self._lone_at = None
        self.mux.uncork()

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    def handle_timer(self, now: float) -> None:
        """Do what the deadlines say is due at ``now`` (the loop timer calls this; tests may)."""
        due = self.timers.handle_timer(now)
        if due is Due.KEEPALIVE:
            if self.transport is not None and not self._closing:
                self.transport.write(self.stream.encrypt(b""))
        elif due is not None:
            error = self._deadline_error(due)
            if isinstance(error, ProtocolError):
                log.info("closing connection to %s: %s", self._peer_name(), error)
            self.abort(error)
        self._arm_timer()

    def _deadline_error(self, due: Due) -> PeersocketsError:
        """The error that ends the connection when deadline ``due`` passes."""
        peer = self._peer_name()
        if due is Due.HANDSHAKE_TIMEOUT:
            return HandshakeTimeout(
                f"{peer} did not complete the handshake within {self.handshake_timeout:g} s"
            )
        if due is Due.PAIR_TIMEOUT:
            return PairTimeout(
                f"no channel was open on the connection to {peer}"
                f" for {self.pair_timeout:g} s (pair_timeout)"
            )
        if due is Due.READ_TIMEOUT:
            return ReadTimeout(
                f"nothing arrived from {peer} for at least {self.read_timeout:g} s (read_timeout)"
            )
        if due is Due.FRAME_TIMEOUT:
            return FrameTimeout(
                f"{peer} did not finish a frame within {self.frame_timeout:g} s;"
                f" {self.stream.unfinished} bytes of it had arrived (frame_timeout)"
            )
        return ConnectionClosed(
            f"{peer} did not end its side within {self.close_timeout:g} s of our close"
        )

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
        if self.remote_address is not None:
            host, port = self.remote_address
            return f"{host}:{port}"
        return "unconnected peer" if self.transport is None else "peer in memory"
