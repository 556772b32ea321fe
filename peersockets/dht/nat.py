"""nat-sampler 1.0.1: our public address, as the `to` fields of other nodes report it (HYPERDHT.md 1.10).

Each sample is counted twice: as (host, port) and as (host, any port). The
sampler reports ``host:port`` when the best (host, port) count reaches the
threshold, ``host`` with port 0 (a port-randomizing NAT) when only the host
does, else nothing (host None).

Mirrored exactly, quirks included, because a node's decision to become
persistent hangs on it:

- the window holds the last 16 samples (32 slots: a (host, port) and a
  (host, any) slot per sample);
- a new sample is counted together with an earlier equal one only if that one
  is among the 4 samples before it (in its own kind of slot); otherwise it
  starts a new count at 1, so alternating answers never add up;
- a count is shared by every slot that joined it and drops by one when one of
  those slots is overwritten;
- the best counts are sticky: a count replaces the best only when it is
  strictly higher, and the best keeps its (possibly falling) count meanwhile;
- threshold = size for fewer than 4 samples, size - 1 below 8, size - 2 below
  12, size - 3 from 12 on (size stops growing at 16).

Sans-I/O: no sockets, no clock.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LOOKBACK", "SLOTS", "WINDOW", "NatSampler", "threshold_for"]

WINDOW: Final = 16
"""Samples kept."""
SLOTS: Final = 2 * WINDOW
LOOKBACK: Final = 4
"""How many earlier samples a new one is compared with."""


def threshold_for(size: int) -> int:
    """Hits needed to report an address when ``size`` samples are held."""
    return size - (0 if size < 4 else 1 if size < 8 else 2 if size < 12 else 3)


class _Count:
    """A shared hit count for one (host, port) or (host, any) answer."""

    __slots__ = ("hits", "host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.hits = 1


class NatSampler:
    """Public address samples in, the consistent address (if any) out."""

    __slots__ = ("_a", "_b", "_samples", "_threshold", "_top", "host", "port", "size")

    def __init__(self) -> None:
        self.host: str | None = None
        """The consistent public host, or None."""
        self.port = 0
        """The consistent public port, or 0 (none, or a randomizing NAT when host is set)."""
        self.size = 0
        """Samples held (at most WINDOW)."""
        self._a: _Count | None = None
        self._b: _Count | None = None
        self._threshold = 0
        self._top = 0
        self._samples: list[_Count] = []

    @property
    def threshold(self) -> int:
        """Hits the best count needs for the current size (threshold_for(size))."""
        return self._threshold

    @property
    def randomized(self) -> bool:
        """The host is consistent but the port is not: a port-randomizing NAT."""
        return self.host is not None and self.port == 0

    def add(self, host: str, port: int) -> int:
        """Record that a node saw us at ``host:port``; the hits of that (host, port) count."""
        a = self._bump(host, port, 2)
        b = self._bump(host, 0, 1)
        samples = self._samples
        if len(samples) < SLOTS:
            self.size += 1
            self._threshold = threshold_for(self.size)
            samples.append(a)
            samples.append(b)
            self._top += 2
        else:
            if self._top == SLOTS:
                self._top = 0
            samples[self._top].hits -= 1
            samples[self._top] = a
            samples[self._top + 1].hits -= 1
            samples[self._top + 1] = b
            self._top += 2
        if self._a is None or self._a.hits < a.hits:
            self._a = a
        if self._b is None or self._b.hits < b.hits:
            self._b = b
        if self._a.hits >= self._threshold:
            self.host, self.port = self._a.host, self._a.port
        elif self._b.hits >= self._threshold:
            self.host, self.port = self._b.host, 0
        else:
            self.host, self.port = None, 0
        return a.hits

    def _bump(self, host: str, port: int, back: int) -> _Count:
        """The count this answer joins among the last LOOKBACK of its kind, or a new one."""
        samples = self._samples
        for i in range(LOOKBACK):
            j = (self._top - back - 2 * i) & (SLOTS - 1)
            if j >= len(samples):
                break
            count = samples[j]
            if count.port == port and count.host == host:
                count.hits += 1
                return count
        return _Count(host, port)
