"""Per-source request rates for a DHT node that answers strangers (sans-I/O, time passed in).

A token bucket per (host, port): ``rate`` requests a second after a burst of
``burst``; and one per host, ``HOST_FACTOR`` times larger, so a flood from
many ports of one host (or a spoofed one: replies are larger than requests)
is bounded too. The tables of buckets are bounded (``max_sources``): the
least recently heard source is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from ..errors import InvalidSetting
from .messages import Address

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE", "MAX_SOURCES", "RateLimiter"]

DEFAULT_RATE: Final = 100.0
"""Requests a second one source may make after its burst (a JS node sends a few a second)."""

DEFAULT_BURST: Final = 200
MAX_SOURCES: Final = 8192
HOST_FACTOR: Final = 20
"""A host may make this many times one source's rate, over all its ports (a local network of
nodes on one machine shares one host)."""


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
        self._hosts: OrderedDict[str, list[float]] = OrderedDict()
        self.refused = 0
        """Requests refused so far."""

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Address, now: float) -> bool:
        """Whether a request from ``source`` at ``now`` is within its rates (and count it)."""
        port_bucket = _refill(self._buckets, source, now, self.rate, self.burst, self.max_sources)
        host_bucket = _refill(
            self._hosts, source[0], now, self.rate * HOST_FACTOR, self.burst * HOST_FACTOR, self.max_sources
        )
        if port_bucket[0] < 1.0 or host_bucket[0] < 1.0:
            self.refused += 1
            return False
        port_bucket[0] -= 1.0
        host_bucket[0] -= 1.0
        return True


def _refill(
    buckets: OrderedDict[Any, list[float]], key: object, now: float, rate: float, burst: float, limit: int
) -> list[float]:
    """The bucket of ``key``, topped up for the time since it was last used (a new one is full)."""
    bucket = buckets.get(key)
    if bucket is None:
        if len(buckets) >= limit:
            buckets.popitem(last=False)
        bucket = buckets[key] = [float(burst), now]
        return bucket
    buckets.move_to_end(key)
    tokens = bucket[0] + (now - bucket[1]) * rate
    bucket[0] = tokens if tokens < burst else float(burst)
    bucket[1] = now
    return bucket
