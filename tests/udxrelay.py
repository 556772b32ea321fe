"""A lossy UDP relay: an impaired path between two UDP endpoints, for UDX tests.

    async with await LossyRelay.start(target_b=("127.0.0.1", b_port), loss=0.05) as relay:
        # A sends to relay.address_for_a, B sends to relay.address_for_b
        ...
    print(relay.a_to_b.lost, relay.b_to_a.forwarded)

Topology. The relay binds two UDP sockets on ``host`` (default 127.0.0.1),
port 0 each:

- RA, at ``address_for_a``: the address endpoint A sends to. What arrives on
  RA goes out of RB to B's address (direction ``"a_to_b"``).
- RB, at ``address_for_b``: the address endpoint B sends to. What arrives on
  RB goes out of RA to A's address (direction ``"b_to_a"``).

So A sees B's traffic coming from ``address_for_a`` and B sees A's traffic
coming from ``address_for_b``: each side talks to one fixed address, as a UDX
stream connected to (or firewall-adopting) that address needs.

A's address is ``target_a`` when given (fixed for the relay's life); without
it, the source address of the most recent datagram that arrived on RA. B's
address is ``target_b`` likewise, learned from RB. A datagram whose
destination is not known yet (no target given and nothing arrived on the
other socket yet) is dropped and counted as ``unroutable``.

Impairments, applied to every arriving datagram in this order (after the
``unroutable`` check):

1. ``drop_if(direction, data)``: a predicate hook; true drops it (``filtered``).
   It sees every arriving datagram exactly once, in arrival order, so it may
   count ("drop the third DATA packet").
2. stall (``stall(seconds)``): while a stall is on, datagrams are dropped
   (``stalled`` and ``dropped``) or, with ``hold=True``, kept and released in
   arrival order when the stall ends (``stalled`` only).
3. ``loss``: probability of dropping it (``lost``).
4. ``duplicate``: probability of sending it twice, back to back (``duplicated``).
5. ``reorder``: probability of holding it back (``reordered``) until the next
   datagram in the same direction has been sent, or ``reorder_delay`` seconds,
   whichever comes first. At most one datagram per direction is held; the
   datagram that releases it is never held itself.
6. ``delay``: a constant one-way delay in seconds before sending (order kept).

Each impairment draws from its own ``random.Random`` per direction, seeded from
``seed``, the direction and the impairment's name. So for a given sequence of
datagrams in one direction, which ones are lost (duplicated, reordered) is the
same on every run, whatever the timing of the other direction, and changing one
probability does not change the draws of another. A probability of 0 draws
nothing. The impairment attributes (``loss``, ``duplicate``, ``reorder``,
``reorder_delay``, ``delay``, ``drop_if``) may be changed at any time.

Counters are per direction (``relay.a_to_b``, ``relay.b_to_a``, or
``relay.counters[direction]``), see ``RelayCounters``.

The datagram path is a ``DatagramProtocol`` callback with no tasks; timers
(``loop.call_at``) are used only for delayed and held datagrams, one per
direction and kind at a time. Pure asyncio; nothing from peersockets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Literal, cast

__all__ = ["A_TO_B", "B_TO_A", "Address", "Direction", "DropIf", "LossyRelay", "RelayCounters"]

Direction = Literal["a_to_b", "b_to_a"]
A_TO_B: Direction = "a_to_b"
B_TO_A: Direction = "b_to_a"
DIRECTIONS: tuple[Direction, Direction] = (A_TO_B, B_TO_A)

Address = tuple[str, int]
DropIf = Callable[[Direction, bytes], bool]

_SOCKET_BUFFER = 4 * 1024 * 1024
"""Requested SO_RCVBUF/SO_SNDBUF (the kernel caps it at rmem_max/wmem_max)."""


@dataclass
class RelayCounters:
    """What happened to the datagrams of one direction.

    Every arriving datagram is counted in ``received`` and then ends up either
    sent (``forwarded``, which also counts the extra copies of duplicated ones),
    or ``dropped`` (= ``filtered`` + ``lost`` + ``unroutable`` + those of
    ``stalled`` that a dropping stall ate), or still pending (delayed, held by
    a reorder or a holding stall) or discarded by close().
    """

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    filtered: int = 0
    stalled: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unroutable: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


def _check_seconds(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return value


class _Side(asyncio.DatagramProtocol):
    """One of the relay's two sockets; hands what arrives to the relay."""

    def __init__(self, relay: LossyRelay, direction: Direction) -> None:
        self.relay = relay
        self.direction = direction
        self.transport: asyncio.DatagramTransport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
        self.relay._arrived(self.direction, data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # an ICMP error for an earlier send from this socket (e.g. port
        # unreachable), i.e. for the opposite direction: UDP shrugs
        sent = B_TO_A if self.direction == A_TO_B else A_TO_B
        self.relay.counters[sent].send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


def _factory(side: _Side) -> Callable[[], _Side]:
    return lambda: side


class _Lane:
    """Per-direction state: random streams, the held (reordered) datagram, the delay queue."""

    def __init__(self, seed: int, direction: Direction) -> None:
        self.loss_rng = random.Random(f"{seed}:{direction}:loss")
        self.duplicate_rng = random.Random(f"{seed}:{direction}:duplicate")
        self.reorder_rng = random.Random(f"{seed}:{direction}:reorder")
        self.held: tuple[bytes, int] | None = None  # (datagram, copies)
        self.held_timer: asyncio.TimerHandle | None = None
        self.delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self.delay_timer: asyncio.TimerHandle | None = None
        self.stall_until = 0.0
        self.stall_hold = False
        self.stall_timer: asyncio.TimerHandle | None = None
        self.stalled: list[bytes] = []


class LossyRelay:
    """Two UDP sockets with a seeded, impaired path between them (see the module docstring)."""

    def __init__(
        self,
        target_a: Address | None = None,
        target_b: Address | None = None,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float = 0.05,
        delay: float = 0.0,
        seed: int = 1,
        drop_if: DropIf | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.loss = _check_probability("loss", loss)
        self.duplicate = _check_probability("duplicate", duplicate)
        self.reorder = _check_probability("reorder", reorder)
        self.reorder_delay = _check_seconds("reorder_delay", reorder_delay)
        self.delay = _check_seconds("delay", delay)
        self.drop_if = drop_if
        self.seed = seed
        self.host = host
        self._fixed: dict[Direction, Address | None] = {A_TO_B: target_b, B_TO_A: target_a}
        self._learned: dict[Direction, Address | None] = {A_TO_B: None, B_TO_A: None}
        self.counters: dict[Direction, RelayCounters] = {d: RelayCounters() for d in DIRECTIONS}
        self._lanes: dict[Direction, _Lane] = {d: _Lane(seed, d) for d in DIRECTIONS}
        self._sides: dict[Direction, _Side] = {}
        self._addresses: dict[Direction, Address] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def start(
        cls,
        target_a: Address | None = None,
        target_b: Address | None = None,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float = 0.05,
        delay: float = 0.0,
        seed: int = 1,
        drop_if: DropIf | None = None,
        host: str = "127.0.0.1",
    ) -> LossyRelay:
        """Create a relay and bind its two sockets (see ``open()``)."""
        relay = cls(
            target_a,
            target_b,
            loss=loss,
            duplicate=duplicate,
            reorder=reorder,
            reorder_delay=reorder_delay,
            delay=delay,
            seed=seed,
            drop_if=drop_if,
            host=host,
        )
        await relay.open()
        return relay

    async def open(self) -> None:
        """Bind RA and RB on ``host``, port 0. Called by start() and ``async with``."""
        if self._sides:
            return
        if self._closed:
            raise RuntimeError("relay is closed")
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
        try:
            for direction in DIRECTIONS:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
                    sock.bind((self.host, 0))
                    sock.setblocking(False)
                    side = _Side(self, direction)
                    await self._loop.create_datagram_endpoint(_factory(side), sock=sock)
                except BaseException:
                    sock.close()
                    raise
                self._sides[direction] = side
                name = sock.getsockname()
                self._addresses[direction] = (str(name[0]), int(name[1]))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Cancel every timer, discard pending datagrams, close both sockets (idempotent)."""
        self._closed = True
        for lane in self._lanes.values():
            for timer in (lane.held_timer, lane.delay_timer, lane.stall_timer):
                if timer is not None:
                    timer.cancel()
            lane.held_timer = lane.delay_timer = lane.stall_timer = None
            lane.held = None
            lane.delayed.clear()
            lane.stalled.clear()
            lane.stall_until = 0.0
        sides = list(self._sides.values())
        for side in sides:
            if side.transport is not None:
                side.transport.close()
        for side in sides:
            if side.transport is not None:
                await side.lost

    async def __aenter__(self) -> LossyRelay:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ info

    @property
    def address_for_a(self) -> Address:
        """RA: where A sends; what arrives here goes to B (from ``address_for_b``)."""
        return self._address(A_TO_B)

    @property
    def address_for_b(self) -> Address:
        """RB: where B sends; what arrives here goes to A (from ``address_for_a``)."""
        return self._address(B_TO_A)

    def _address(self, direction: Direction) -> Address:
        if direction not in self._addresses:
            raise RuntimeError("relay is not open")
        return self._addresses[direction]

    @property
    def target_a(self) -> Address | None:
        """Where B's datagrams go: the fixed target_a, else the last source seen on RA."""
        return self._destination(B_TO_A)

    @property
    def target_b(self) -> Address | None:
        """Where A's datagrams go: the fixed target_b, else the last source seen on RB."""
        return self._destination(A_TO_B)

    @property
    def a_to_b(self) -> RelayCounters:
        return self.counters[A_TO_B]

    @property
    def b_to_a(self) -> RelayCounters:
        return self.counters[B_TO_A]

    @property
    def closed(self) -> bool:
        return self._closed

    def stalled(self, direction: Direction | None = None) -> bool:
        """Whether a stall is on (in ``direction``, or in either)."""
        loop = self._loop
        if loop is None:
            return False
        now = loop.time()
        directions = DIRECTIONS if direction is None else (direction,)
        return any(self._lanes[d].stall_until > now for d in directions)

    # ------------------------------------------------------------------ control

    def stall(
        self, seconds: float, *, hold: bool = False, direction: Direction | None = None
    ) -> None:
        """Stop the path for ``seconds`` from now, in both directions or only ``direction``.

        hold=False drops what arrives meanwhile; hold=True keeps it and sends it,
        in arrival order, when the stall ends (through the ``delay`` stage only:
        no loss, duplication or reordering for held datagrams). A stall started
        during another takes over its mode and ends at the later of the two ends.
        """
        _check_seconds("seconds", seconds)
        loop = self._loop
        if loop is None or self._closed:
            raise RuntimeError("relay is not open")
        until = loop.time() + seconds
        for d in DIRECTIONS if direction is None else (direction,):
            lane = self._lanes[d]
            lane.stall_hold = hold
            if until <= lane.stall_until:
                continue
            lane.stall_until = until
            if lane.stall_timer is not None:
                lane.stall_timer.cancel()
            lane.stall_timer = loop.call_at(until, self._stall_over, d)

    # ------------------------------------------------------------------ datagram path

    def _destination(self, direction: Direction) -> Address | None:
        fixed = self._fixed[direction]
        return fixed if fixed is not None else self._learned[direction]

    def _arrived(self, direction: Direction, data: bytes, source: Address) -> None:
        if self._closed:
            return
        # the source of what arrives on RA is A's address (destination of b_to_a)
        reverse = B_TO_A if direction == A_TO_B else A_TO_B
        self._learned[reverse] = source
        counters = self.counters[direction]
        lane = self._lanes[direction]
        counters.received += 1
        if self._destination(direction) is None:
            counters.unroutable += 1
            counters.dropped += 1
            return
        drop_if = self.drop_if
        if drop_if is not None and drop_if(direction, data):
            counters.filtered += 1
            counters.dropped += 1
            return
        if lane.stall_until:
            assert self._loop is not None
            if self._loop.time() < lane.stall_until:
                counters.stalled += 1
                if lane.stall_hold:
                    lane.stalled.append(data)
                else:
                    counters.dropped += 1
                return
        if self.loss and lane.loss_rng.random() < self.loss:
            counters.lost += 1
            counters.dropped += 1
            return
        copies = 1
        if self.duplicate and lane.duplicate_rng.random() < self.duplicate:
            counters.duplicated += 1
            copies = 2
        if lane.held is not None:
            # this one overtakes the held one, which follows right behind it
            self._delayed_send(direction, data, copies)
            self._release_held(direction)
            return
        if self.reorder and lane.reorder_rng.random() < self.reorder:
            counters.reordered += 1
            lane.held = (data, copies)
            assert self._loop is not None
            lane.held_timer = self._loop.call_later(
                self.reorder_delay, self._release_held, direction
            )
            return
        self._delayed_send(direction, data, copies)

    def _release_held(self, direction: Direction) -> None:
        lane = self._lanes[direction]
        if lane.held_timer is not None:
            lane.held_timer.cancel()
            lane.held_timer = None
        held, lane.held = lane.held, None
        if held is not None and not self._closed:
            self._delayed_send(direction, *held)

    def _stall_over(self, direction: Direction) -> None:
        lane = self._lanes[direction]
        lane.stall_timer = None
        lane.stall_until = 0.0
        released, lane.stalled = lane.stalled, []
        for data in released:
            self._delayed_send(direction, data, 1)

    def _delayed_send(self, direction: Direction, data: bytes, copies: int) -> None:
        lane = self._lanes[direction]
        if self.delay <= 0 and not lane.delayed:
            self._send(direction, data, copies)
            return
        loop = self._loop
        assert loop is not None
        due = loop.time() + self.delay
        for _ in range(copies):
            lane.delayed.append((due, data))
        if lane.delay_timer is None:
            lane.delay_timer = loop.call_at(lane.delayed[0][0], self._delay_due, direction)

    def _delay_due(self, direction: Direction) -> None:
        lane = self._lanes[direction]
        lane.delay_timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        # FIFO: a later datagram never overtakes an earlier one, even if delay shrank
        while lane.delayed and lane.delayed[0][0] <= now:
            _due, data = lane.delayed.popleft()
            self._send(direction, data, 1)
        if lane.delayed:
            lane.delay_timer = loop.call_at(lane.delayed[0][0], self._delay_due, direction)

    def _send(self, direction: Direction, data: bytes, copies: int) -> None:
        if self._closed:
            return
        destination = self._destination(direction)
        # a_to_b leaves from RB (B's side), b_to_a from RA
        out = self._sides.get(B_TO_A if direction == A_TO_B else A_TO_B)
        if destination is None or out is None or out.transport is None:
            return
        if out.transport.is_closing():
            return
        counters = self.counters[direction]
        for _ in range(copies):
            try:
                out.transport.sendto(data, destination)
            except OSError:
                counters.send_errors += 1
                continue
            counters.forwarded += 1
