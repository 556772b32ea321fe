"""The Kademlia routing table of kademlia-routing-table 1.0.6, as dht-rpc 6.27.0 uses it (HYPERDHT.md 1.7).

256 rows keyed on our own 32-byte id: row i holds the nodes whose id shares
exactly i leading bits with ours (an id equal to ours lands in row 255). A row
keeps at most k nodes, sorted by id. ``closest`` walks rows from the target's
row down to row 0, then the rows above it, taking each row's nodes in id order:
the JavaScript order exactly, which approximates (but is not) XOR order.

When a row is full ``add`` returns False and changes nothing. dht-rpc then
re-pings one node of that row (``reping_candidate``) and, if the ping fails
(or the reply brings no news of it), removes that node and adds the new one;
the caller owns that ping, as it owns the clock: times here are dht-rpc's
5-second ticks, passed in.

Sans-I/O: no sockets, no clock.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidSetting
from .messages import Address

__all__ = [
    "ID_BITS",
    "ID_SIZE",
    "MAX_REPINGS",
    "OLD_NODE",
    "RECENT_NODE",
    "K",
    "Node",
    "RoutingTable",
]

K: Final = 20
"""Nodes per row (kademlia-routing-table's default k; dht-rpc does not change it)."""
ID_SIZE: Final = 32
ID_BITS: Final = 8 * ID_SIZE
"""One row per bit of the id: 256."""
RECENT_NODE: Final = 12
"""Ticks (~1 min): a node pinged this recently that is also old is not re-pinged for a full row."""
OLD_NODE: Final = 360
"""Ticks (~30 min): a node known this long counts as old (and is re-sampled for NAT)."""
MAX_REPINGS: Final = 3
"""dht-rpc runs at most this many full-row re-pings at once (the caller counts them)."""

_RNG: Final = _random.Random()


@dataclass(slots=True, eq=False)
class Node:
    """One routing-table entry: dht-rpc's node record.

    ``added``, ``seen`` (last heard from) and ``pinged`` (last interaction) are ticks.
    ``to`` is our address as this node reported it, ``sampled`` the tick it was last
    fed to the NAT sampler (0: never), ``down_hints`` how many DOWN_HINTs named it.
    Compared by identity, as JavaScript objects are."""

    id: bytes
    host: str
    port: int
    added: int = 0
    seen: int = 0
    pinged: int = 0
    to: Address | None = None
    sampled: int = 0
    down_hints: int = 0

    @property
    def address(self) -> Address:
        """(host, port)."""
        return self.host, self.port


class _Row:
    """The nodes of one row, sorted by id, with their ids alongside for bisection."""

    __slots__ = ("ids", "nodes")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.nodes: list[Node] = []

    def find(self, id_: bytes) -> tuple[int, bool]:
        """Where ``id_`` is (True) or would go (False)."""
        ids = self.ids
        lo, hi = 0, len(ids)
        while lo < hi:
            mid = (lo + hi) >> 1
            if ids[mid] < id_:
                lo = mid + 1
            else:
                hi = mid
        return lo, lo < len(ids) and ids[lo] == id_


def _check_id(id_: bytes, name: str = "id") -> None:
    if len(id_) != ID_SIZE:
        raise InvalidSetting(f"{name} must be {ID_SIZE} bytes, got {len(id_)}: {bytes(id_).hex()}")


class RoutingTable:
    """kademlia-routing-table: at most ``k`` nodes in each of 256 rows, so at most 256*k in all."""

    def __init__(self, id: bytes, k: int = K) -> None:
        _check_id(id)
        if not (isinstance(k, int) and k >= 1):
            raise InvalidSetting(f"k must be an int >= 1, got {k!r}")
        self.id: Final = bytes(id)
        self.k: Final = k
        self._id_int: Final = int.from_bytes(self.id, "big")
        self._rows: list[_Row | None] = [None] * ID_BITS
        self._size = 0

    def row_index(self, id: bytes) -> int:
        """The row of ``id``: how many leading bits it shares with ours (255 for our own id)."""
        _check_id(id)
        diff = int.from_bytes(id, "big") ^ self._id_int
        return ID_BITS - diff.bit_length() if diff else ID_BITS - 1

    def add(self, node: Node) -> bool:
        """Add ``node``, or replace the entry with its id (True); False when its row is full.

        Like kademlia-routing-table, this does not refuse our own id: dht-rpc never offers it."""
        index = self.row_index(node.id)
        row = self._rows[index]
        if row is None:
            row = self._rows[index] = _Row()
        i, found = row.find(node.id)
        if found:
            row.nodes[i] = node
            return True
        if len(row.nodes) >= self.k:
            return False
        row.ids.insert(i, node.id)
        row.nodes.insert(i, node)
        self._size += 1
        return True

    def remove(self, id: bytes) -> bool:
        """Remove the node with ``id``; False if there was none."""
        row = self._rows[self.row_index(id)]
        if row is None:
            return False
        i, found = row.find(id)
        if not found:
            return False
        del row.ids[i]
        del row.nodes[i]
        self._size -= 1
        return True

    def get(self, id: bytes) -> Node | None:
        """The node with ``id``, or None."""
        row = self._rows[self.row_index(id)]
        if row is None:
            return None
        i, found = row.find(id)
        return row.nodes[i] if found else None

    def __contains__(self, id: object) -> bool:
        return isinstance(id, bytes | bytearray) and len(id) == ID_SIZE and self.get(bytes(id)) is not None

    def __len__(self) -> int:
        return self._size

    def row(self, id: bytes) -> Sequence[Node]:
        """The nodes (sorted by id) of the row ``id`` falls in: after a False ``add``, the full row."""
        row = self._rows[self.row_index(id)]
        return tuple(row.nodes) if row is not None else ()

    def closest(self, target: bytes, k: int | None = None) -> list[Node]:
        """Up to ``k`` (default: the table's k) nodes, in kademlia-routing-table's order:
        the target's row, then each row below it down to 0, then the rows above it;
        within a row, by id."""
        limit = self.k if k is None else k
        result: list[Node] = []
        if limit <= 0:
            return result
        d = self.row_index(target)
        rows = self._rows
        for i in (*range(d, -1, -1), *range(d + 1, ID_BITS)):
            row = rows[i]
            if row is None:
                continue
            missing = limit - len(result)
            result.extend(row.nodes[:missing])
            if len(result) >= limit:
                break
        return result

    def to_list(self) -> list[Node]:
        """Every node, in JavaScript's ``toArray`` order: row 255 down to row 0, each by id."""
        return [node for row in reversed(self._rows) if row is not None for node in row.nodes]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.to_list())

    def random(self, rng: _random.Random | None = None) -> Node | None:
        """A uniformly random node (None when empty); dht-rpc refreshes towards one."""
        if not self._size:
            return None
        n = (rng or _RNG).randrange(self._size)
        for row in self._rows:
            if row is None:
                continue
            if n < len(row.nodes):
                return row.nodes[n]
            n -= len(row.nodes)
        raise AssertionError("unreachable: size counts every row's nodes")  # pragma: no cover

    def reping_candidate(self, id: bytes, tick: int) -> Node | None:
        """The node of ``id``'s (full) row that dht-rpc would ping before replacing it, or None.

        dht-rpc's ``_onfullrow``: the least recently pinged node not pinged this tick (ties:
        the least recently added); none if that node was pinged under RECENT_NODE ticks ago
        and has been known for over OLD_NODE ticks. The caller also skips this while it is
        not bootstrapped or already runs MAX_REPINGS re-pings. Then, as ``_repingAndSwap``:
        set ``candidate.pinged = tick``, remember ``candidate.seen``, ping it; if the ping
        fails, or succeeds without ``seen`` having moved (no accepted id in the reply),
        ``remove(candidate.id)`` and ``add`` the new node."""
        oldest: Node | None = None
        for node in self.row(id):
            if node.pinged == tick:
                continue
            if (
                oldest is None
                or oldest.pinged > node.pinged
                or (oldest.pinged == node.pinged and oldest.added > node.added)
            ):
                oldest = node
        if oldest is None:
            return None
        if tick - oldest.pinged < RECENT_NODE and tick - oldest.added > OLD_NODE:
            return None
        return oldest

    def with_id(self, id: bytes) -> tuple[RoutingTable, list[Node]]:
        """A table keyed on a new id (a node turning persistent) holding this table's nodes,
        re-added in ``to_list`` order, and the nodes that did not fit (their row was full, or
        they have the new id: dht-rpc skips those without forgetting them)."""
        table = RoutingTable(id, self.k)
        dropped = [node for node in self.to_list() if node.id == table.id or not table.add(node)]
        return table, dropped
