"""What a persistent hyperdht node stores and answers (HYPERDHT.md 2.5), as a sans-I/O state machine.

:class:`RecordStore` is hyperdht 6.34.0's ``lib/persistent.js`` plus the
``forwards`` table of ``lib/router.js``, over the two-generation caches of
``record-cache`` 1.2.0 and ``xache`` 1.3.0. Each handler takes a request that
the caller has already decoded (``records.decode_*``) and whose token it has
already checked against its secrets (dht-rpc, HYPERDHT.md 1.4), plus ``now``,
and returns what to answer:

- ``None``: no reply at all, as JS does for a request that lacks its target,
  token or node id, or carries a bad signature or a wrong target (the asker
  times out). A request whose value did not decode gets no reply either: the
  caller drops it before it reaches the store.
- a :class:`Reply`: the response's value (or None), error code, and whether
  the response carries a token and closer nodes, as JS sends them.

Time: ``now`` is seconds on any clock that never goes back (``loop.time()``).
JS rotates each cache on a ``setInterval``; here each cache has its next
rotation time and every call first runs the rotations that are due, so
expiry is exact without a timer. :meth:`RecordStore.get_timer` and
:meth:`RecordStore.handle_timer` let an idle node free memory on time too.
The one use of wall-clock time, the bump limit, takes ``unix_ms`` (Unix time
in milliseconds, JavaScript's ``Date.now()``).

Expiry and bounds (the defaults of hyperdht's ``defaultCacheOpts``; pass
``max_size`` / ``max_age`` as hyperdht's ``maxSize`` / ``maxAge`` options):

===========  =====================  ===========  =========  =========================
table        key -> value           kind         max_size   max_age (rotation)
===========  =====================  ===========  =========  =========================
records      target, key -> record  record-cache 65536      20 min (every 800 s)
forwards     H(key) -> relay+record xache        65536      20 min (every 800 s)
bumps        target -> Unix ms      xache        65536      20 min (every 800 s)
refreshes    refresh -> record      xache        65536      20 min (every 800 s)
mutables     H(key) -> seq+value    xache        32768      48 h (every 32 h)
immutables   H(value) -> value      xache        32768      48 h (every 32 h)
===========  =====================  ===========  =========  =========================

A cache keeps a young and an old generation. A rotation drops the old one and
makes the young one old; a cache whose young generation fills up rotates at
once (and then skips its next timed rotation, as JS does). So an entry lives
between 2/3 and 4/3 of max_age after its last write (less while a flood
fills its table), or after its last read for the xache tables (reading an
old entry moves it to the young generation; record-cache reads do not). Sizes: ``records`` holds at most 2 * max_size + 1 records
in all (a young generation of max_size, an old one of max_size + 1), however
they spread over targets: record-cache has no per-target limit, so one
target's set is bounded by the total, and a LOOKUP reply by 20 of them. Each
record is at most 51 bytes (a key and at most 3 relay addresses: longer
announced lists are cut to 3). An xache table holds at most 2 * max_size - 1
entries; the value tables hold whole request values (each below one UDP
datagram). One deliberate difference from xache: reading an old entry that
fills the young generation rotates at once, as a write would (xache waits
for the next write), so a flood of reads cannot grow a table past its bound.

A node's own servers are not in ``forwards`` here (hyperdht keeps them in
the same table with ``retain``): the caller checks its listeners first.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ..errors import check_at_least
from ..wire.crypto import blake2b_256
from .records import (
    Address,
    Announce,
    HyperdhtErrorCode,
    MutableGetResponse,
    MutablePutRequest,
    PeerRecord,
    encode_mutable_get_response,
    encode_peer_record,
    encode_raw_lookup_reply,
    verify_announce,
    verify_mutable,
    verify_unannounce,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_VALUE_MAX_AGE",
    "LOOKUP_LIMIT",
    "MAX_BUMP_DRIFT_MS",
    "MAX_RELAY_ADDRESSES",
    "Forward",
    "RecordStore",
    "Reply",
]

DEFAULT_MAX_SIZE: Final = 65536
"""Entries per cache generation (hyperdht ``maxSize``); the value caches get half."""

DEFAULT_MAX_AGE: Final = 20 * 60.0
"""Seconds a record, forward, bump or refresh is kept (hyperdht ``maxAge``)."""

DEFAULT_VALUE_MAX_AGE: Final = 48 * 60 * 60.0
"""Seconds a mutable or immutable value is kept when no max_age is given."""

LOOKUP_LIMIT: Final = 20
"""Peer records in one LOOKUP reply, the forward's included."""

MAX_RELAY_ADDRESSES: Final = 3
"""Relay addresses kept of an announced peer record."""

MAX_BUMP_DRIFT_MS: Final = 60_000
"""A bump more than this many milliseconds in the future is ignored."""

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Reply:
    """A response to send: ``value`` (None for no value field), ``error`` (0 for none),
    and whether it carries a fresh token and the closer nodes to the target."""

    value: bytes | None = None
    error: int = 0
    token: bool = True
    closer_nodes: bool = True


_ACK: Final = Reply(token=False, closer_nodes=False)
"""ANNOUNCE and UNANNOUNCE replies: no value, no token, no closer nodes (only the id)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """A self-announced server: the node it announced from (its relay for PEER_HANDSHAKE
    routing, HYPERDHT.md 3.3) and its encoded peer record."""

    relay: Address
    record: bytes


@dataclass(frozen=True, slots=True)
class _Refresh:
    """What a refresh link re-adds: the record, where, and whether as a forward."""

    target: bytes
    record: bytes
    announce_self: bool


def _rotation_interval(max_age: float) -> float:
    """JS rotates every ``Math.ceil(2 / 3 * maxAge)`` milliseconds."""
    return math.ceil(2 / 3 * max_age * 1000) / 1000


class _Rotation:
    """The timed rotation both cache kinds share: JS's ``setInterval(_gcAuto, tick)``."""

    __slots__ = ("_gced", "_interval", "next_rotation")

    def __init__(self, max_age: float, now: float) -> None:
        self._interval = _rotation_interval(max_age)
        self.next_rotation = now + self._interval
        self._gced = False

    def advance(self, now: float) -> None:
        """Run the rotations due by ``now``; three in a row leave nothing, so stop there."""
        if now < self.next_rotation:
            return
        due = int((now - self.next_rotation) // self._interval) + 1
        for _ in range(min(due, 3)):
            if not self._gced:
                self._rotate()
            self._gced = False
        self.next_rotation += due * self._interval

    def _rotate(self) -> None:
        self._gced = True


class _Cache(_Rotation, Generic[K, V]):
    """xache's MaxCache (without ``retain``): a young and an old dict."""

    __slots__ = ("_latest", "_max_size", "_oldest")

    def __init__(self, max_size: int, max_age: float, now: float) -> None:
        super().__init__(max_age, now)
        self._max_size = max_size
        self._latest: dict[K, V] = {}
        self._oldest: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._latest) + len(self._oldest)

    def _rotate(self) -> None:
        super()._rotate()
        self._oldest = self._latest
        self._latest = {}

    def set(self, key: K, value: V) -> None:
        self._latest[key] = value
        self._oldest.pop(key, None)
        if len(self._latest) >= self._max_size:
            self._rotate()

    def get(self, key: K) -> V | None:
        """The value, moving an old entry to the young generation (it lives on)."""
        if key in self._latest:
            return self._latest[key]
        if key not in self._oldest:
            return None
        value = self._latest[key] = self._oldest.pop(key)
        if len(self._latest) >= self._max_size:  # not in xache: keeps the bound under reads
            self._rotate()
        return value

    def delete(self, key: K) -> None:
        if self._latest.pop(key, None) is None:
            self._oldest.pop(key, None)


class _RecordSet:
    """One target's records in one generation: record-cache's RecordSet (a list and an index,
    so removal and random picks are O(1) each)."""

    __slots__ = ("index", "keys", "records")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.records: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def add(self, key: bytes, record: bytes) -> bool:
        if key in self.index:
            return False  # the first record stays until the key is removed
        self.index[key] = len(self.keys)
        self.keys.append(key)
        self.records.append(record)
        return True

    def remove(self, key: bytes) -> bool:
        i = self.index.pop(key, None)
        if i is None:
            return False
        last = len(self.keys) - 1
        if i != last:
            self.keys[i] = self.keys[last]
            self.records[i] = self.records[last]
            self.index[self.keys[i]] = i
        self.keys.pop()
        self.records.pop()
        return True

    def swap(self, a: int, b: int) -> None:
        keys, records = self.keys, self.records
        keys[a], keys[b] = keys[b], keys[a]
        records[a], records[b] = records[b], records[a]
        self.index[keys[a]] = a
        self.index[keys[b]] = b


class _RecordGeneration:
    """record-cache's RecordStore: every target's set, and the total count."""

    __slots__ = ("sets", "size")

    def __init__(self) -> None:
        self.sets: dict[bytes, _RecordSet] = {}
        self.size = 0

    def add(self, target: bytes, key: bytes, record: bytes) -> bool:
        records = self.sets.get(target)
        if records is None:
            records = self.sets[target] = _RecordSet()
        if records.add(key, record):
            self.size += 1
            return True
        return False

    def remove(self, target: bytes, key: bytes) -> None:
        records = self.sets.get(target)
        if records is not None and records.remove(key):
            self.size -= 1
            if not records.keys:
                del self.sets[target]


_EMPTY_SET: Final = _RecordSet()


class _RecordCache(_Rotation):
    """record-cache's RecordCache: per-target sets of records, fresh and stale."""

    __slots__ = ("_fresh", "_max_size", "_stale")

    def __init__(self, max_size: int, max_age: float, now: float) -> None:
        super().__init__(max_age, now)
        self._max_size = max_size
        self._fresh = _RecordGeneration()
        self._stale = _RecordGeneration()

    def __len__(self) -> int:
        return self._fresh.size + self._stale.size

    def targets(self) -> int:
        return len(self._fresh.sets.keys() | self._stale.sets.keys())

    def _rotate(self) -> None:
        super()._rotate()
        self._stale = self._fresh
        self._fresh = _RecordGeneration()

    def add(self, target: bytes, key: bytes, record: bytes) -> None:
        self._stale.remove(target, key)
        if self._fresh.add(target, key, record) and self._fresh.size > self._max_size:
            self._rotate()

    def remove(self, target: bytes, key: bytes) -> None:
        self._fresh.remove(target, key)
        self._stale.remove(target, key)

    def get(self, target: bytes, limit: int, random: Callable[[], float]) -> list[bytes]:
        """Up to ``limit`` records picked at random, without repeats: record-cache's draw,
        which swaps each pick to the end of its list."""
        a = self._fresh.sets.get(target, _EMPTY_SET)
        b = self._stale.sets.get(target, _EMPTY_SET)
        a_len, b_len = len(a.keys), len(b.keys)
        count = min(limit, a_len + b_len)
        result = []
        for _ in range(count):
            j = math.floor(random() * (a_len + b_len))
            if j < a_len:
                result.append(a.records[j])
                a_len -= 1
                a.swap(j, a_len)
            else:
                j -= a_len
                result.append(b.records[j])
                b_len -= 1
                b.swap(j, b_len)
        return result


class RecordStore:
    """A persistent node's records, forwards and values; see the module docstring for the
    expiry and the bound of every table."""

    __slots__ = (
        "_bumps",
        "_caches",
        "_forwards",
        "_immutables",
        "_mutables",
        "_records",
        "_refreshes",
    )

    def __init__(
        self, now: float, *, max_size: int = DEFAULT_MAX_SIZE, max_age: float | None = None
    ) -> None:
        """Empty tables whose rotations count from ``now``.

        ``max_age`` (seconds) applies to every table when given; otherwise 20 min for
        records, forwards, bumps and refreshes and 48 h for values, as in hyperdht.
        """
        check_at_least("max_size", max_size, 2)
        if max_age is not None:
            check_at_least("max_age", max_age, 0.001)
        age = DEFAULT_MAX_AGE if max_age is None else max_age
        value_age = DEFAULT_VALUE_MAX_AGE if max_age is None else max_age
        self._records = _RecordCache(max_size, age, now)
        self._forwards: _Cache[bytes, Forward] = _Cache(max_size, age, now)
        self._bumps: _Cache[bytes, int] = _Cache(max_size, age, now)
        self._refreshes: _Cache[bytes, _Refresh] = _Cache(max_size, age, now)
        self._mutables: _Cache[bytes, MutableGetResponse] = _Cache(max_size // 2, value_age, now)
        self._immutables: _Cache[bytes, bytes] = _Cache(max_size // 2, value_age, now)
        self._caches: tuple[_Rotation, ...] = (
            self._records,
            self._forwards,
            self._bumps,
            self._refreshes,
            self._mutables,
            self._immutables,
        )

    # -- time ------------------------------------------------------------------------------------

    def get_timer(self) -> float:
        """When the next rotation is due (calling earlier does nothing)."""
        return min(cache.next_rotation for cache in self._caches)

    def handle_timer(self, now: float) -> None:
        """Run the rotations due by ``now``; every handler does this first anyway."""
        for cache in self._caches:
            cache.advance(now)

    def sizes(self) -> dict[str, int]:
        """Entries per table, and the number of targets that have records."""
        return {
            "records": len(self._records),
            "targets": self._records.targets(),
            "forwards": len(self._forwards),
            "bumps": len(self._bumps),
            "refreshes": len(self._refreshes),
            "mutables": len(self._mutables),
            "immutables": len(self._immutables),
        }

    # -- announce ---------------------------------------------------------------------------------

    def announce(
        self,
        target: bytes | None,
        node_id: bytes | None,
        token: bytes | None,
        from_address: Address,
        announce: Announce,
        now: float,
        *,
        unix_ms: int,
    ) -> Reply | None:
        """ANNOUNCE from ``from_address``, signed for this node's ``node_id`` and ``token``.

        A self-announce (target = H(key)) becomes the key's forward, relayed via
        ``from_address``; any other adds the record to the target's set (a key
        already in the young generation keeps its first record) and may raise the
        target's bump (to at most ``unix_ms`` + 60 s). Without a peer, a
        ``refresh`` whose hash was remembered re-adds that record, unsigned.
        """
        if target is None or token is None or node_id is None:
            return None
        self.handle_timer(now)
        peer = announce.peer
        if peer is None:
            return (
                None if announce.refresh is None else self._refresh(announce.refresh, from_address)
            )
        if announce.signature is None or not verify_announce(
            announce.signature, target, node_id, token, peer, announce.refresh
        ):
            return None
        if len(peer.relay_addresses) > MAX_RELAY_ADDRESSES:
            peer = PeerRecord(peer.public_key, peer.relay_addresses[:MAX_RELAY_ADDRESSES])
        record = encode_peer_record(peer)
        announce_self = blake2b_256(peer.public_key) == target
        if announce_self:
            self._forwards.set(target, Forward(from_address, record))
            self._records.remove(target, peer.public_key)
        else:
            bump = announce.bump
            if bump > (self._bumps.get(target) or 0) and bump <= unix_ms + MAX_BUMP_DRIFT_MS:
                self._bumps.set(target, bump)
            self._records.add(target, peer.public_key, record)
        if announce.refresh is not None:
            self._refreshes.set(announce.refresh, _Refresh(target, record, announce_self))
        return _ACK

    def _refresh(self, link: bytes, from_address: Address) -> Reply | None:
        """Re-add the record stored under H(link), then remember it under ``link``."""
        hashed = blake2b_256(link)
        refresh = self._refreshes.get(hashed)
        if refresh is None:
            return None
        public_key = refresh.record[:32]
        if refresh.announce_self:
            self._forwards.set(refresh.target, Forward(from_address, refresh.record))
            self._records.remove(refresh.target, public_key)
        else:
            self._records.add(refresh.target, public_key, refresh.record)
        self._refreshes.delete(hashed)
        self._refreshes.set(link, refresh)
        return _ACK

    def unannounce(
        self,
        target: bytes | None,
        node_id: bytes | None,
        token: bytes | None,
        announce: Announce,
        now: float,
    ) -> Reply | None:
        """UNANNOUNCE: remove the signer's record from the target (and its forward, when
        target = H(key))."""
        if target is None or token is None or node_id is None:
            return None
        self.handle_timer(now)
        peer, signature = announce.peer, announce.signature
        if peer is None or signature is None:
            return None
        if not verify_unannounce(signature, target, node_id, token, peer, announce.refresh):
            return None
        if blake2b_256(peer.public_key) == target:
            self._forwards.delete(target)
        self._records.remove(target, peer.public_key)
        return _ACK

    # -- queries ----------------------------------------------------------------------------------

    def lookup(
        self,
        target: bytes | None,
        now: float,
        random: Callable[[], float] = _random.random,
    ) -> Reply | None:
        """LOOKUP: up to 20 of the target's records drawn with ``random`` (floats in [0, 1)),
        then the forward's record if the target is a forwarded key and there is room, and
        the target's bump; no value when there is no record."""
        if target is None:
            return None
        self.handle_timer(now)
        records = self._records.get(target, LOOKUP_LIMIT, random)
        bump = self._bumps.get(target) or 0
        forward = self._forwards.get(target)
        if forward is not None and len(records) < LOOKUP_LIMIT:
            records.append(forward.record)
        return Reply(encode_raw_lookup_reply(records, bump) if records else None)

    def find_peer(self, target: bytes | None, now: float) -> Reply | None:
        """FIND_PEER: the record a server self-announced on this node, or no value."""
        if target is None:
            return None
        forward = self.forward(target, now)
        return Reply(None if forward is None else forward.record)

    def forward(self, target: bytes, now: float) -> Forward | None:
        """The forward of a self-announced key (for FIND_PEER and PEER_HANDSHAKE routing);
        reading it keeps it alive, as in JS."""
        self.handle_timer(now)
        return self._forwards.get(target)

    # -- mutable and immutable values ------------------------------------------------------------

    def mutable_put(
        self,
        target: bytes | None,
        token: bytes | None,
        request: MutablePutRequest,
        now: float,
    ) -> Reply | None:
        """MUTABLE_PUT: store a value signed by the key whose hash is the target.

        The same seq with another value is error SEQ_REUSED, a lower seq SEQ_TOO_LOW
        (error replies carry no token). A wrong target or signature gets no reply.
        """
        if target is None or token is None:
            return None
        self.handle_timer(now)
        if blake2b_256(request.public_key) != target:
            return None
        if not verify_mutable(request.signature, request.seq, request.value, request.public_key):
            return None
        local = self._mutables.get(target)
        if local is not None:
            if local.seq == request.seq and local.value != request.value:
                return Reply(error=HyperdhtErrorCode.SEQ_REUSED, token=False)
            if request.seq < local.seq:
                return Reply(error=HyperdhtErrorCode.SEQ_TOO_LOW, token=False)
        self._mutables.set(
            target, MutableGetResponse(request.seq, request.value, request.signature)
        )
        return Reply()

    def mutable_get(self, target: bytes | None, seq: int | None, now: float) -> Reply | None:
        """MUTABLE_GET: the stored value if its seq is at least ``seq`` (the decoded request
        value; None when it was missing), else no value."""
        if target is None or seq is None:
            return None
        self.handle_timer(now)
        local = self._mutables.get(target)
        if local is None or local.seq < seq:
            return Reply()
        return Reply(encode_mutable_get_response(local))

    def immutable_put(
        self, target: bytes | None, token: bytes | None, value: bytes | None, now: float
    ) -> Reply | None:
        """IMMUTABLE_PUT: store ``value`` under its hash; any other target gets no reply."""
        if target is None or token is None or value is None:
            return None
        self.handle_timer(now)
        if blake2b_256(value) != target:
            return None
        self._immutables.set(target, value)
        return Reply()

    def immutable_get(self, target: bytes | None, now: float) -> Reply | None:
        """IMMUTABLE_GET: the value stored under the target, or no value."""
        if target is None:
            return None
        self.handle_timer(now)
        return Reply(self._immutables.get(target))
