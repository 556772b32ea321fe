"""A connection's deadlines, sans-I/O: when it must act next, given the time.

As in aioquic, time is an argument: the owner tells the core what happened
and when (``established(now)``, ``wrote(now)``, ``received(now, ...)``,
``closing(now)``, ...), asks ``get_timer()`` when to call next, and calls
``handle_timer(now)``, which says what is due. The core keeps no clock and
starts no timer, so every deadline is tested by passing times, without
sleeping.

Deadlines, each disabled by a setting of 0:

- handshake: the Noise handshake must finish within ``handshake_timeout`` of
  the start;
- keepalive: after ``keepalive`` seconds without writing, an empty frame is
  owed (JavaScript peers time out silent streams). Writes are marked without
  a time (``wrote()``) and checked when the deadline comes, as JavaScript's
  secret-stream keepalive does: a keepalive goes out between ``keepalive`` and
  twice that after the last write;
- pair: once established, a connection on which no protomux channel is open
  for ``pair_timeout`` seconds is of no use to anyone: a stranger holding a
  slot;
- read: once established, ``read_timeout`` seconds without a byte from the
  remote while we read means the peer is dead (peers send keepalives). Reads
  are marked without a time (``received()``, on the hot path) and checked when
  the deadline comes, as JavaScript's secret-stream timeout does: a silent peer
  is ended between ``read_timeout`` and twice that after its last byte;
- frame: a frame the remote started must complete within ``frame_timeout``
  seconds of reading, so an unfinished frame cannot pin its buffer;
- close: a closing connection whose remote has not ended its side within
  ``close_timeout`` is aborted.

The read and frame deadlines only run while we read: while the owner holds
reading (backpressure), the remote cannot make progress, and its clocks
restart when reading resumes.
"""

from __future__ import annotations

from enum import Enum


class Due(Enum):
    """What handle_timer found due."""

    KEEPALIVE = "keepalive"  # write an empty frame (then report it with wrote())
    HANDSHAKE_TIMEOUT = "handshake timeout"  # end the connection: HandshakeTimeout
    CLOSE_TIMEOUT = "close timeout"  # abort: the remote did not end its side
    PAIR_TIMEOUT = "pair timeout"  # end the connection: no channel was open for too long
    READ_TIMEOUT = "read timeout"  # end the connection: the remote went silent
    FRAME_TIMEOUT = "frame timeout"  # end the connection: a frame did not complete in time


class ConnectionTimers:
    """The deadlines of one connection (handshake, keepalive, pair, read, frame, close)."""

    def __init__(
        self,
        now: float,
        *,
        handshake_timeout: float,
        keepalive: float,
        close_timeout: float,
        pair_timeout: float = 0.0,
        read_timeout: float = 0.0,
        frame_timeout: float = 0.0,
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.keepalive = keepalive
        self.close_timeout = close_timeout
        self.pair_timeout = pair_timeout
        self.read_timeout = read_timeout
        self.frame_timeout = frame_timeout
        self._handshake_deadline = now + handshake_timeout if handshake_timeout > 0 else None
        self._close_deadline: float | None = None
        self._pair_deadline: float | None = None
        self._frame_deadline: float | None = None
        self._last_write: float | None = None  # None until established: no keepalive before
        self.write_seen = False
        """Something was written since the keepalive clock last moved (the owner sets it on
        every write: an attribute, not a call, on the hot path; no clock is read)."""
        self._last_read: float | None = None  # None when the read deadline does not run
        self.read_seen = False
        """Bytes arrived since the read deadline was last moved (set by the owner on every
        read, like write_seen)."""
        self._established = False
        self._paused = False  # the owner holds reading
        self.frame_pending = False
        """The remote has started a frame it has not finished (frame_state() tracks it)."""
        self._channels_open = False
        self._closing = False
        self._ended = False

    def established(self, now: float) -> None:
        """The handshake finished at ``now``: its deadline goes, the other clocks start."""
        if self._ended:
            return
        self._established = True
        self._handshake_deadline = None
        if self.keepalive > 0:
            self._last_write = now
        if self.pair_timeout > 0 and not self._channels_open:
            self._pair_deadline = now + self.pair_timeout
        self._start_reading(now)

    def wrote(self) -> None:
        """Something was written (no time needed: the keepalive clock is checked when due)."""
        self.write_seen = True

    def received(self) -> None:
        """Bytes arrived (no time needed: the read deadline is checked when it comes)."""
        self.read_seen = True

    def frame_state(self, now: float, unfinished: bool, completed: bool) -> bool:
        """After a read at ``now``: ``unfinished``, a frame is still incomplete; ``completed``,
        the read finished at least one frame. Call it when a frame is unfinished, or was
        (``frame_pending``).

        Returns True when a new, earlier deadline was set (the owner re-arms its timer).
        """
        self.frame_pending = unfinished
        if not unfinished:
            self._frame_deadline = None
            return False
        if (completed or self._frame_deadline is None) and self._frame_clock_runs():
            self._frame_deadline = now + self.frame_timeout
            return True
        return False

    def channels_changed(self, now: float, any_open: bool) -> None:
        """A channel opened (``any_open``) or the last one closed, at ``now``."""
        self._channels_open = any_open
        if any_open or self.pair_timeout <= 0 or not self._established or self._closing:
            self._pair_deadline = None
        elif self._pair_deadline is None:
            self._pair_deadline = now + self.pair_timeout

    def reading_paused(self) -> None:
        """The owner stopped reading: the remote's read and frame clocks stop."""
        self._paused = True
        self._last_read = self._frame_deadline = None

    def reading_resumed(self, now: float) -> None:
        """The owner reads again at ``now``: the read and frame clocks start afresh."""
        self._paused = False
        self._start_reading(now)

    def closing(self, now: float) -> None:
        """Our side ended at ``now``: the remote has close_timeout to end its side."""
        self._closing = True
        self._last_write = None
        self._handshake_deadline = self._pair_deadline = None
        if self.close_timeout > 0 and self._close_deadline is None and not self._ended:
            self._close_deadline = now + self.close_timeout

    def ended(self) -> None:
        """The connection is gone: nothing is due any more."""
        self._ended = self._closing = True
        self._handshake_deadline = self._close_deadline = self._last_write = None
        self._pair_deadline = self._frame_deadline = self._last_read = None

    def get_timer(self) -> float | None:
        """When handle_timer must next be called (None: nothing is pending)."""
        earliest: float | None = None
        for deadline in (
            self._handshake_deadline,
            self._close_deadline,
            self._pair_deadline,
            self._frame_deadline,
            None if self._last_read is None else self._last_read + self.read_timeout,
            None if self._last_write is None else self._last_write + self.keepalive,
        ):
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def handle_timer(self, now: float) -> Due | None:
        """What is due at ``now``, the most severe first; None if nothing is (a timer fired early).

        A deadline is reported once. A keepalive reported due is taken as written at ``now``
        (the owner need not call wrote() for it).
        """
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_deadline = None
            return Due.HANDSHAKE_TIMEOUT
        if self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            return Due.CLOSE_TIMEOUT
        if self._frame_deadline is not None and now >= self._frame_deadline:
            self._frame_deadline = None
            return Due.FRAME_TIMEOUT
        if self._last_read is not None and now >= self._last_read + self.read_timeout:
            if self.read_seen:  # alive: the deadline moves on
                self.read_seen = False
                self._last_read = now
            else:
                self._last_read = None
                return Due.READ_TIMEOUT
        if self._pair_deadline is not None and now >= self._pair_deadline:
            self._pair_deadline = None
            return Due.PAIR_TIMEOUT
        if self._last_write is not None and now >= self._last_write + self.keepalive:
            self._last_write = now
            if self.write_seen:  # written meanwhile: no keepalive owed yet
                self.write_seen = False
                return None
            return Due.KEEPALIVE
        return None

    def _frame_clock_runs(self) -> bool:
        return self.frame_timeout > 0 and self._established and not self._paused and not self._ended

    def _start_reading(self, now: float) -> None:
        if self._ended or self._paused or not self._established:
            return
        if self.read_timeout > 0:
            self._last_read = now
            self.read_seen = False
        if self.frame_pending and self._frame_clock_runs():
            self._frame_deadline = now + self.frame_timeout
