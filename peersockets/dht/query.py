"""dht-rpc's iterative query, sans-I/O: whom to ask next, and the k closest that answered (HYPERDHT.md 1.8).

The caller asks ``next_nodes()`` whom to send the query's request to, and
reports each reply (``replied``) or timeout (``timed_out``). Candidates are
kept in XOR order to the target; a reply's closer nodes join them when they
would rank among the k best. ``closest_replies`` holds the replies with an
accepted id (persistent nodes), closest first, at most k: the nodes a commit
goes to. ``done`` once nothing is left to ask and nothing is in flight.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

from .messages import Address, Response, node_id

__all__ = ["CONCURRENCY", "K", "Query", "Reply"]

K: Final = 20
CONCURRENCY: Final = 10
MAX_CANDIDATES: Final = 4 * K
"""Candidates kept waiting to be asked: the best few k is all a query can use."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful reply: who sent it (and its id, when accepted) and the response."""

    address: Address
    id: bytes | None
    response: Response


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two 32-byte ids, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


class Query:
    """One iterative query towards ``target``."""

    def __init__(
        self,
        target: bytes,
        seeds: list[Address],
        *,
        own_id: bytes | None = None,
        k: int = K,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.target = target
        self.k = k
        self.concurrency = concurrency
        self._own_id = own_id
        self._candidates: list[tuple[int, Address]] = []
        self._seen: set[Address] = set()
        self._in_flight: set[Address] = set()
        self._referrers: dict[Address, list[Address]] = {}
        """Who named each candidate in its closer nodes: told with a DOWN_HINT if it is dead."""
        self.closest_replies: list[Reply] = []
        """Replies with an accepted id, closest to the target first, at most k."""
        self.replies = 0
        self.timeouts = 0
        for address in seeds:
            self._offer(address, force=True)

    def _offer(self, address: Address, *, force: bool = False) -> None:
        if address in self._seen:
            return
        id_ = node_id(address)
        if self._own_id is not None and id_ == self._own_id:
            return
        d = distance(id_, self.target)
        if not force and len(self.closest_replies) >= self.k:
            worst = self.closest_replies[-1]
            if worst.id is not None and d >= distance(worst.id, self.target):
                return  # it would not rank among the k best
        self._seen.add(address)
        bisect.insort(self._candidates, (d, address))
        del self._candidates[MAX_CANDIDATES:]

    def next_nodes(self, slow: int = 0) -> list[Address]:
        """Whom to ask now: the closest candidates not asked yet, up to the concurrency plus
        one for each of the ``slow`` requests in flight (those that missed a 1 s cycle)."""
        chosen: list[Address] = []
        while self._candidates and len(self._in_flight) < self.concurrency + slow:
            _d, address = self._candidates.pop(0)
            self._in_flight.add(address)
            chosen.append(address)
        return chosen

    def replied(self, address: Address, response: Response, accepted_id: bytes | None) -> None:
        """A reply came from ``address``; with error 0 it counts and its closer nodes are offered."""
        self._in_flight.discard(address)
        self.replies += 1
        if response.error == 0 and accepted_id is not None:
            self._rank(Reply(address, accepted_id, response))
        for node in response.closer_nodes:
            self._offer(node)
            if node in self._seen and node not in self._in_flight:
                referrers = self._referrers.setdefault(node, [])
                if len(referrers) < 4 and address not in referrers:
                    referrers.append(address)

    def _rank(self, reply: Reply) -> None:
        assert reply.id is not None
        d = distance(reply.id, self.target)
        closest = self.closest_replies
        if any(r.id == reply.id for r in closest):
            return
        keys = [distance(r.id, self.target) for r in closest if r.id is not None]
        index = bisect.bisect_left(keys, d)
        if index >= self.k:
            return
        closest.insert(index, reply)
        del closest[self.k :]

    def timed_out(self, address: Address) -> list[Address]:
        """The request to ``address`` ran out of sends; returns the nodes that named it."""
        self._in_flight.discard(address)
        self.timeouts += 1
        return self._referrers.pop(address, [])

    @property
    def in_flight(self) -> int:
        """Requests of this query sent and not yet answered or timed out."""
        return len(self._in_flight)

    @property
    def done(self) -> bool:
        """Nothing left to ask and nothing in flight."""
        return not self._candidates and not self._in_flight

    def done_but_slow(self, slow: int) -> bool:
        """Nothing left to ask, every request in flight is slow, and k storing nodes answered:
        dht-rpc stops waiting for the slow ones then."""
        return not self._candidates and slow >= len(self._in_flight) and len(self.closest_replies) >= self.k
