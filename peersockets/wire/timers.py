"""A connection's deadlines, sans-I/O: when it must act next, given the time.

As in aioquic, time is an argument: the owner tells the core what happened
and when (``established(now)``, ``wrote(now)``, ``closing(now)``), asks
``get_timer()`` when to call next, and calls ``handle_timer(now)``, which says
what is due. The core keeps no clock and starts no timer, so every deadline
is tested by passing times, without sleeping.

Deadlines: the handshake must finish within ``handshake_timeout`` of the
start; after ``keepalive`` seconds without writing, an empty frame is owed
(JavaScript peers time out silent streams); a closing connection whose remote
has not ended its side within ``close_timeout`` is aborted. A setting of 0
disables its deadline.
"""

from __future__ import annotations

from enum import Enum


class Due(Enum):
    """What handle_timer found due."""

    KEEPALIVE = "keepalive"  # write an empty frame (then report it with wrote())
    HANDSHAKE_TIMEOUT = "handshake timeout"  # end the connection: HandshakeTimeout
    CLOSE_TIMEOUT = "close timeout"  # abort: the remote did not end its side


class ConnectionTimers:
    """The deadlines of one connection (handshake, keepalive, close)."""

    def __init__(
        self, now: float, *, handshake_timeout: float, keepalive: float, close_timeout: float
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.keepalive = keepalive
        self.close_timeout = close_timeout
        self._handshake_deadline = now + handshake_timeout if handshake_timeout > 0 else None
        self._close_deadline: float | None = None
        self._last_write: float | None = None  # None until established: no keepalive before
        self._ended = False

    def established(self, now: float) -> None:
        """The handshake finished at ``now``: its deadline goes, the keepalive clock starts."""
        self._handshake_deadline = None
        if self.keepalive > 0 and not self._ended:
            self._last_write = now

    def wrote(self, now: float) -> None:
        """Something was written at ``now``: no keepalive is owed before now + keepalive."""
        if self._last_write is not None:
            self._last_write = now

    def closing(self, now: float) -> None:
        """Our side ended at ``now``: the remote has close_timeout to end its side."""
        self._last_write = None
        self._handshake_deadline = None
        if self.close_timeout > 0 and self._close_deadline is None and not self._ended:
            self._close_deadline = now + self.close_timeout

    def ended(self) -> None:
        """The connection is gone: nothing is due any more."""
        self._ended = True
        self._handshake_deadline = self._close_deadline = self._last_write = None

    def get_timer(self) -> float | None:
        """When handle_timer must next be called (None: nothing is pending)."""
        deadlines = [
            deadline
            for deadline in (
                self._handshake_deadline,
                self._close_deadline,
                None if self._last_write is None else self._last_write + self.keepalive,
            )
            if deadline is not None
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> Due | None:
        """What is due at ``now``, the most severe first; None if nothing is (a timer fired early).

        A keepalive reported due is taken as written at ``now``.
        """
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_deadline = None
            return Due.HANDSHAKE_TIMEOUT
        if self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            return Due.CLOSE_TIMEOUT
        if self._last_write is not None and now >= self._last_write + self.keepalive:
            self._last_write = now
            return Due.KEEPALIVE
        return None
