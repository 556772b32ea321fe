"""Congestion control for UDX senders: NewReno-style AIMD in packets (dht/UDX.md 4, 7.1).

udx-native runs BBR. This module is deliberately simpler and never more
aggressive on a shared link: slow start from 10 packets, then one packet per
round trip; on a loss event (once per recovery) the window halves, and on a
retransmission timeout it collapses to what is in flight plus one, as libudx
does. BBR keeps its rate through random loss where AIMD backs off, so under
loss this sender yields bandwidth to udx-native, never the reverse.
"""

from __future__ import annotations

from typing import Final

__all__ = ["INITIAL_WINDOW", "MIN_WINDOW", "NewReno"]

INITIAL_WINDOW: Final = 10
"""Packets a new stream may have in flight before its first ack, as libudx."""

MIN_WINDOW: Final = 2
"""The window never shrinks below this many packets after a loss event."""


class NewReno:
    """Window in packets: slow start, congestion avoidance, halve once per loss event."""

    __slots__ = ("_avoid_credit", "cwnd", "ssthresh")

    def __init__(self, initial_window: int = INITIAL_WINDOW) -> None:
        self.cwnd: int = initial_window
        self.ssthresh: int = 1 << 30
        self._avoid_credit = 0

    def on_delivered(self, packets: int, limit: int) -> None:
        """``packets`` newly delivered outside recovery; the window grows up to ``limit``."""
        if self.cwnd >= limit:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + packets, limit)
            return
        self._avoid_credit += packets
        if self._avoid_credit >= self.cwnd:
            self._avoid_credit -= self.cwnd
            self.cwnd += 1

    def on_loss_event(self, in_flight: int) -> None:
        """A packet was found lost while no recovery was under way: halve the window."""
        self.ssthresh = max(self.cwnd // 2, MIN_WINDOW)
        self.cwnd = self.ssthresh
        self._avoid_credit = 0

    def on_timeout(self, in_flight: int) -> None:
        """The retransmission timer fired: send one packet past what is still in flight."""
        self.ssthresh = max(self.cwnd // 2, MIN_WINDOW)
        self.cwnd = in_flight + 1
        self._avoid_credit = 0
