"""A deterministic network for two UDX stream cores: a virtual clock, delays, drops.

    net = Sim(delay=0.01)
    a, b = net.pair()                 # two connected StreamCores
    a.write(b"x"); net.flush(a)
    net.run_until(lambda: ..., limit=30.0)

Datagrams travel with a one-way delay plus seeded ``jitter`` (which reorders
them) and seeded ``duplicate`` copies; ``drop(direction, datagram)`` decides
losses (deterministic tests pass a predicate or a seeded random).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable

from peersockets.udx.stream import StreamCore

Drop = Callable[[str, bytes], bool]


class Sim:
    """Two cores, a clock, and a queue of datagrams in flight."""

    def __init__(
        self,
        delay: float = 0.005,
        drop: Drop | None = None,
        *,
        jitter: float = 0.0,
        duplicate: float = 0.0,
        seed: int = 1,
        **options: object,
    ) -> None:
        self.now = 0.0
        self.delay = delay
        self.jitter = jitter
        self.duplicate = duplicate
        self.random = random.Random(seed)
        self.drop: Drop = drop or (lambda _d, _b: False)
        self.options = options
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()
        self.sent: dict[str, list[bytes]] = {"a->b": [], "b->a": []}
        self.received: dict[str, bytearray] = {"a": bytearray(), "b": bytearray()}
        self.messages: dict[str, list[bytes]] = {"a": [], "b": []}
        self.events: dict[str, list[object]] = {"a": [], "b": []}
        self.a = StreamCore(1, **options)  # type: ignore[arg-type]
        self.b = StreamCore(2, **options)  # type: ignore[arg-type]
        self.a.connect(2, "to-b", self.now)
        self.b.connect(1, "to-a", self.now)
        self.consume = True

    def name(self, core: StreamCore) -> str:
        return "a" if core is self.a else "b"

    def flush(self, core: StreamCore) -> None:
        core.flush(self.now)
        self._collect(core)

    def _collect(self, core: StreamCore) -> None:
        direction = "a->b" if core is self.a else "b->a"
        for datagram, _path in core.outgoing:
            self.sent[direction].append(datagram)
            if self.drop(direction, datagram):
                continue
            copies = 2 if self.duplicate and self.random.random() < self.duplicate else 1
            for _ in range(copies):
                at = self.now + self.delay + (self.random.random() * self.jitter if self.jitter else 0.0)
                heapq.heappush(self._queue, (at, next(self._order), direction, datagram))
        core.outgoing.clear()
        name = self.name(core)
        while core.incoming:  # consuming frees window: the core may release more
            size = 0
            for piece in core.incoming:
                self.received[name] += piece
                size += len(piece)
            core.incoming.clear()
            if not self.consume:
                break
            core.consumed(size)
        self.messages[name].extend(core.messages)
        core.messages.clear()
        self.events[name].extend(core.events)
        core.events.clear()

    def step(self) -> bool:
        """Advance to the next datagram or timer; False when nothing is left to happen."""
        timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        next_timer = min(timers) if timers else None
        next_packet = self._queue[0][0] if self._queue else None
        if next_timer is None and next_packet is None:
            return False
        if next_packet is not None and (next_timer is None or next_packet <= next_timer):
            at, _, direction, datagram = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            target = self.b if direction == "a->b" else self.a
            target.receive(memoryview(datagram), self.now)
            self._collect(target)
            target.flush(self.now)
            self._collect(target)
            return True
        assert next_timer is not None
        self.now = max(self.now, next_timer)
        for core in (self.a, self.b):
            timer = core.get_timer()
            if timer is not None and timer <= self.now:
                core.handle_timer(self.now)
                self._collect(core)
        return True

    def run_until(self, done: Callable[[], bool], limit: float = 60.0) -> None:
        """Step until ``done()`` or the virtual clock passes ``limit`` seconds (AssertionError)."""
        while not done():
            if self.now > limit:
                raise AssertionError(f"not done after {limit} virtual seconds")
            if not self.step():
                raise AssertionError("the network went quiet before it was done")

    def run_for(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, handling everything due meanwhile."""
        end = self.now + seconds
        while self._next_time() is not None and self._next_time() <= end:  # type: ignore[operator]
            self.step()
        self.now = max(self.now, end)

    def _next_time(self) -> float | None:
        times = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None
