"""Per-source request rates for a DHT node that answers strangers (sans-I/O, time passed in).

A token bucket per (host, port): ``rate`` requests a second after a burst of
``burst``. The table of buckets is bounded (``max_sources``): the least
recently heard source is forgotten first, so a flood from many ports costs a
bounded amount of memory (and each port still gets only its own share).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from ..errors import InvalidSetting
from .messages import Address

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE", "MAX_SOURCES", "RateLimiter"]

DEFAULT_RATE: Final = 100.0
"""Requests a second one source may make after its burst (a JS node sends a few a second)."""

DEFAULT_BURST: Final = 200
MAX_SOURCES: Final = 8192


class RateLimiter:
    """Token buckets per source address."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, max_sources: int = MAX_SOURCES) -> None:
        if rate <= 0:
            raise InvalidSetting(f"request_rate must be > 0 requests a second, got {rate!r}")
        if burst < 1:
            raise InvalidSetting(f"request_burst must be >= 1, got {burst!r}")
        if max_sources < 1:
            raise InvalidSetting(f"max_sources must be >= 1, got {max_sources!r}")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[Address, list[float]] = OrderedDict()
        self.refused = 0
        """Requests refused so far."""

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Address, now: float) -> bool:
        """Whether a request from ``source`` at ``now`` is within its rate (and count it)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = [float(self.burst), now]
        else:
            self._buckets.move_to_end(source)
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            bucket[0] = tokens if tokens < self.burst else float(self.burst)
            bucket[1] = now
        if bucket[0] < 1.0:
            self.refused += 1
            return False
        bucket[0] -= 1.0
        return True
