"""dht-rpc's request lifecycle, sans-I/O: tids, retries, timeouts, the congestion window (HYPERDHT.md 1.6).

``Requests`` hands out tids (one 16-bit counter from a random start), puts each
request's datagram in ``outgoing`` when the congestion window allows (at most
80 sends per 750 ms slot and 160 over the last four slots, each reply giving
its send back, as dht-rpc's window does; the rest wait),
resends it every ``ATTEMPT_TIMEOUT`` until its sends run out, and matches
responses by tid alone, as dht-rpc does. Time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

from ..errors import InvalidSetting
from .messages import Address, Request, Response

__all__ = [
    "ATTEMPT_TIMEOUT",
    "MAX_PENDING",
    "Pending",
    "Requests",
]

ATTEMPT_TIMEOUT: Final = 1.0
"""Seconds each send of a request waits for its response (dht-rpc's fixed 1000 ms)."""

SLOT: Final = 0.75
SLOTS: Final = 4
SENDS_PER_SLOT: Final = 80
SENDS_PER_WINDOW: Final = 160

MAX_PENDING: Final = 65536 - 1024
"""Requests in flight or queued at once: tids are 16 bits, and a tid is never reused while live."""


@dataclass(slots=True, eq=False)
class Pending:
    """One request: where it goes, how many sends are left, and the caller's ``context``."""

    request: Request
    address: Address
    sends_left: int
    context: object = None
    deadline: float = 0.0
    sent: int = 0
    queued: bool = field(default=True)


class Requests:
    """Every request this node has in flight or waiting for the congestion window."""

    def __init__(self, first_tid: int, *, attempt_timeout: float = ATTEMPT_TIMEOUT) -> None:
        if not 0 <= first_tid <= 0xFFFF:
            raise InvalidSetting(f"a tid is 16 bits, got {first_tid!r}")
        if attempt_timeout <= 0:
            raise InvalidSetting(f"attempt_timeout must be > 0 seconds, got {attempt_timeout!r}")
        self._next_tid = first_tid
        self._timeout = attempt_timeout
        self.attempt_timeout = attempt_timeout
        """Seconds each send waits for its response."""
        self._live: dict[int, Pending] = {}
        self._waiting: deque[Pending] = deque()
        self._slots = [0] * SLOTS
        self._slot_started = 0.0
        self.outgoing: list[tuple[bytes, Address, object]] = []
        """Datagrams to send now, with their destination and their request's ``context``;
        the adapter empties it."""

    def __len__(self) -> int:
        return len(self._live)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered or timed out."""
        return len(self._live) - len(self._waiting)

    def send(self, request: Request, address: Address, now: float, *, retries: int = 3, context: object = None) -> int:
        """Send ``request`` (its tid is replaced) up to ``1 + retries`` times; returns the tid."""
        if retries < 0:
            raise InvalidSetting(f"retries must be >= 0, got {retries!r}")
        if len(self._live) >= MAX_PENDING:
            raise InvalidSetting(f"{MAX_PENDING} requests are already pending")
        tid = self._take_tid()
        pending = Pending(replace(request, tid=tid), address, 1 + retries, context)
        self._live[tid] = pending
        self._waiting.append(pending)
        self._drain(now)
        return tid

    def _take_tid(self) -> int:
        while True:
            tid = self._next_tid
            self._next_tid = (tid + 1) & 0xFFFF
            if tid not in self._live:
                return tid

    def cancel(self, tid: int) -> Pending | None:
        """Forget a request (no more sends, its response ignored)."""
        pending = self._live.pop(tid, None)
        if pending is not None and pending.queued:
            self._waiting.remove(pending)
        if pending is not None:
            self._give_back()
        return pending

    def _give_back(self) -> None:
        """A request ended (answered, timed out, cancelled): its send leaves the window."""
        if self._slots[-1] > 0:
            self._slots[-1] -= 1

    def response(self, response: Response) -> Pending | None:
        """The request this response answers (matched by tid), which is then done; None if unknown.

        A reply gives its send back to the window (dht-rpc's ``recv``), so the window
        bounds requests outstanding, not requests sent; a late reply to an earlier send
        counts even while the request waits to be sent again."""
        pending = self._live.pop(response.tid, None)
        if pending is None:
            return None
        if pending.queued:
            self._waiting.remove(pending)
        self._give_back()
        return pending

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next: the soonest resend or timeout, or the next slot."""
        soonest: float | None = None
        for pending in self._live.values():
            if not pending.queued and (soonest is None or pending.deadline < soonest):
                soonest = pending.deadline
        if self._waiting:
            slot_end = self._slot_started + SLOT
            if soonest is None or slot_end < soonest:
                soonest = slot_end
        return soonest

    def handle_timer(self, now: float) -> list[Pending]:
        """Resend what timed out with sends left; returns the requests that ran out of sends."""
        expired: list[Pending] = []
        for tid, pending in list(self._live.items()):
            if pending.queued or pending.deadline > now:
                continue
            if pending.sends_left > 0:
                pending.queued = True
                self._waiting.appendleft(pending)
            else:
                del self._live[tid]
                self._give_back()
                expired.append(pending)
        self._drain(now)
        return expired

    def _rotate(self, now: float) -> None:
        elapsed = now - self._slot_started
        if elapsed < SLOT:
            return
        steps = min(int(elapsed / SLOT), SLOTS)
        for _ in range(steps):
            self._slots.pop(0)
            self._slots.append(0)
        self._slot_started = now if steps == SLOTS else self._slot_started + steps * SLOT

    def _drain(self, now: float) -> None:
        self._rotate(now)
        slots = self._slots
        while self._waiting and slots[-1] < SENDS_PER_SLOT and sum(slots) < SENDS_PER_WINDOW:
            pending = self._waiting.popleft()
            pending.queued = False
            pending.sends_left -= 1
            pending.sent += 1
            pending.deadline = now + self._timeout
            slots[-1] += 1
            self.outgoing.append((pending.request.encode(), pending.address, pending.context))
