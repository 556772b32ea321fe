"""peersockets.dht.routing: kademlia-routing-table 1.0.6 as dht-rpc 6.27.0 uses it (HYPERDHT.md 1.7)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peersockets.dht.routing import OLD_NODE, RECENT_NODE, K, Node, RoutingTable
from peersockets.errors import InvalidSetting

ZERO = bytes(32)


def ident(row: int, low: int = 0) -> bytes:
    """An id sharing exactly ``row`` leading bits with ZERO: bit ``row`` set, plus ``low``."""
    assert low < 1 << (255 - row) or row == 255
    value = (1 << (255 - row)) | low if row < 256 else low
    return value.to_bytes(32, "big")


def node(id_: bytes, added: int = 0, pinged: int = 0) -> Node:
    return Node(id_, "10.0.0.1", 1000 + id_[-1], added=added, pinged=pinged)


def ids(nodes: list[Node]) -> list[bytes]:
    return [n.id for n in nodes]


def test_row_index_counts_shared_leading_bits() -> None:
    table = RoutingTable(ZERO)
    assert table.row_index(ZERO) == 255
    assert table.row_index(b"\x80" + bytes(31)) == 0
    assert table.row_index(b"\x40" + bytes(31)) == 1
    assert table.row_index(b"\x01" + bytes(31)) == 7
    assert table.row_index(b"\x00\x80" + bytes(30)) == 8
    assert table.row_index(bytes(31) + b"\x01") == 255  # differs in the last bit only: row 255 too
    assert table.row_index(bytes(31) + b"\x02") == 254
    other = RoutingTable(b"\xc3" + bytes(31))
    assert other.row_index(b"\x43" + bytes(31)) == 0
    assert other.row_index(b"\xc2" + bytes(31)) == 7
    assert other.row_index(b"\xc3" + bytes(31)) == 255


def test_row_255_holds_only_our_id_and_its_last_bit_twin() -> None:
    table = RoutingTable(ZERO)
    for row in range(256):
        assert table.row_index(ident(row) if row < 255 else bytes(31) + b"\x01") == min(row, 255)


def test_add_get_remove_len_contains() -> None:
    table = RoutingTable(ZERO)
    a, b = node(ident(3, 1)), node(ident(7))
    assert len(table) == 0 and table.get(a.id) is None
    assert table.add(a) and table.add(b)
    assert len(table) == 2
    assert table.get(a.id) is a and a.id in table and ident(3, 2) not in table
    assert b"short" not in table and "text" not in table
    assert table.remove(a.id)
    assert not table.remove(a.id) and not table.remove(ident(100))
    assert len(table) == 1 and table.get(a.id) is None


def test_adding_a_known_id_replaces_the_entry_in_place() -> None:
    table = RoutingTable(ZERO, k=2)
    first, second = node(ident(0, 1)), node(ident(0, 2))
    assert table.add(first) and table.add(second)
    again = Node(first.id, "10.9.9.9", 9)
    assert table.add(again)  # even in a full row
    assert len(table) == 2 and table.get(first.id) is again
    assert ids(list(table.row(first.id))) == [first.id, second.id]


def test_rows_are_kept_sorted_by_id() -> None:
    table = RoutingTable(ZERO)
    lows = [9, 3, 250, 0, 17, 4, 100]
    for low in lows:
        table.add(node(ident(5, low)))
    assert ids(list(table.row(ident(5)))) == [ident(5, low) for low in sorted(lows)]


def test_a_full_row_refuses_and_changes_nothing() -> None:
    table = RoutingTable(ZERO)
    row = [node(ident(0, i)) for i in range(K)]
    for n in reversed(row):
        assert table.add(n)
    newcomer = node(ident(0, 1000))
    assert not table.add(newcomer)
    assert len(table) == K and table.get(newcomer.id) is None
    assert list(table.row(newcomer.id)) == row
    assert table.add(node(ident(1)))  # other rows are not affected
    assert len(table) == K + 1


def test_the_table_is_bounded_by_k_per_row() -> None:
    table = RoutingTable(ZERO)
    for row in range(255):
        for low in range(K + 5):
            if row == 255 or low < 1 << (255 - row):
                table.add(node(ident(row, low)))
    table.add(node(ZERO))
    table.add(node(bytes(31) + b"\x01"))
    # rows 251..254 hold 16, 8, 4, 2 ids at most; row 255 our id and its twin
    expected = 251 * K + 16 + 8 + 4 + 2 + 2
    assert len(table) == expected <= 256 * K
    assert len(table.to_list()) == expected


# -- closest: the JavaScript order ----------------------------------------------------------------


def example_table() -> RoutingTable:
    """Rows 0, 1, 3 and 5, two nodes each, added out of order."""
    table = RoutingTable(ZERO)
    for row, low in [(5, 2), (0, 9), (3, 1), (1, 4), (0, 3), (5, 1), (3, 7), (1, 2)]:
        table.add(node(ident(row, low)))
    return table


def test_closest_walks_down_from_the_target_row_then_up() -> None:
    table = example_table()
    # target in row 3: row 3, row 1, row 0, then row 5
    assert ids(table.closest(ident(3, 5))) == [
        ident(3, 1), ident(3, 7), ident(1, 2), ident(1, 4), ident(0, 3), ident(0, 9), ident(5, 1), ident(5, 2),
    ]
    # target in an empty row 2: rows 1, 0, then 3, 5
    assert ids(table.closest(ident(2))) == [
        ident(1, 2), ident(1, 4), ident(0, 3), ident(0, 9), ident(3, 1), ident(3, 7), ident(5, 1), ident(5, 2),
    ]
    # our own id (row 255): every row from the top down
    assert ids(table.closest(ZERO)) == [
        ident(5, 1), ident(5, 2), ident(3, 1), ident(3, 7), ident(1, 2), ident(1, 4), ident(0, 3), ident(0, 9),
    ]
    assert table.to_list() == table.closest(ZERO) == list(table)


def test_closest_is_row_order_not_xor_order() -> None:
    table = example_table()
    target = ident(3, 7)  # XOR-closest is ident(3, 7) itself, but row order puts ident(3, 1) first
    assert ids(table.closest(target, 2)) == [ident(3, 1), ident(3, 7)]
    by_xor = sorted(table.to_list(), key=lambda n: int.from_bytes(n.id, "big") ^ int.from_bytes(target, "big"))
    assert ids(by_xor)[:2] == [ident(3, 7), ident(3, 1)]


def test_closest_k() -> None:
    table = example_table()
    target = ident(1, 3)
    assert ids(table.closest(target, 1)) == [ident(1, 2)]
    assert ids(table.closest(target, 3)) == [ident(1, 2), ident(1, 4), ident(0, 3)]
    assert ids(table.closest(target, 5)) == [ident(1, 2), ident(1, 4), ident(0, 3), ident(0, 9), ident(3, 1)]
    assert len(table.closest(target, 100)) == 8
    assert table.closest(target, 0) == []
    assert RoutingTable(ZERO).closest(target) == []


def test_closest_defaults_to_the_tables_k() -> None:
    table = RoutingTable(ZERO, k=3)
    for row in range(4):
        for low in range(3):
            table.add(node(ident(row, low)))
    assert ids(table.closest(ident(1))) == [ident(1, 0), ident(1, 1), ident(1, 2)]
    big = RoutingTable(ZERO)
    for row in range(30):
        big.add(node(ident(row)))
    assert len(big.closest(ZERO)) == K
    assert ids(big.closest(ZERO)) == [ident(row) for row in range(29, 9, -1)]


def js_order_reference(table: RoutingTable, nodes: list[Node], target: bytes, k: int) -> list[bytes]:
    """The same order stated another way: sort by (rows at or below the target's, by distance
    down; then rows above, upwards), then by id."""
    d = table.row_index(target)

    def key(n: Node) -> tuple[int, int, bytes]:
        r = table.row_index(n.id)
        return (0, d - r, n.id) if r <= d else (1, r, n.id)

    return [n.id for n in sorted(nodes, key=key)][:k]


@settings(max_examples=150, deadline=None)
@given(
    own=st.binary(min_size=32, max_size=32),
    k=st.integers(1, 4),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(0, 7)), max_size=120),
    targets=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255), st.integers(1, 30)), min_size=1, max_size=5),
)
def test_table_against_a_model(
    own: bytes, k: int, ops: list[tuple[bool, int, int]], targets: list[tuple[int, int, int]]
) -> None:
    table = RoutingTable(own, k)
    own_int = int.from_bytes(own, "big")

    def near(row: int, low: int) -> bytes:  # an id in ``row`` (for row < 255) of our table
        flipped = own_int ^ (1 << (255 - row)) if row < 255 else own_int
        return (flipped ^ low).to_bytes(32, "big") if row < 252 else flipped.to_bytes(32, "big")

    model: dict[bytes, Node] = {}
    for add, row, low in ops:
        id_ = near(row, low)
        if add:
            entry = node(id_)
            same_row = [n for n in model.values() if table.row_index(n.id) == table.row_index(id_)]
            expected = id_ in model or len(same_row) < k
            assert table.add(entry) == expected
            if expected:
                model[id_] = entry
        else:
            assert table.remove(id_) == (id_ in model)
            model.pop(id_, None)
        assert len(table) == len(model)
    for row in range(256):
        nodes = [n for n in model.values() if table.row_index(n.id) == row]
        assert len(nodes) <= k
    for row, low, count in targets:
        target = near(row, low)
        assert ids(table.closest(target, count)) == js_order_reference(table, list(model.values()), target, count)
    assert set(ids(table.to_list())) == set(model)


# -- random, full rows, re-keying -----------------------------------------------------------------


def test_random_is_uniform_over_rows_in_ascending_order() -> None:
    table = example_table()
    assert RoutingTable(ZERO).random() is None

    class Fixed(random.Random):
        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

        def randrange(self, *args: object, **kwargs: object) -> int:
            return self.value

    order = [ident(0, 3), ident(0, 9), ident(1, 2), ident(1, 4), ident(3, 1), ident(3, 7), ident(5, 1), ident(5, 2)]
    assert [table.random(Fixed(i)).id for i in range(8)] == order  # type: ignore[union-attr]
    rng = random.Random(7)
    seen = {table.random(rng).id for _ in range(400)}  # type: ignore[union-attr]
    assert seen == set(order)


def full_row(table: RoutingTable, ticks: list[tuple[int, int]]) -> list[Node]:
    """Fill row 0 with nodes having (added, pinged) ticks."""
    nodes = [node(ident(0, i), added=added, pinged=pinged) for i, (added, pinged) in enumerate(ticks)]
    for n in nodes:
        assert table.add(n)
    return nodes


def test_reping_candidate_is_the_least_recently_pinged() -> None:
    table = RoutingTable(ZERO, k=4)
    nodes = full_row(table, [(0, 50), (0, 40), (0, 45), (0, 60)])
    newcomer = ident(0, 99)
    assert not table.add(node(newcomer))
    assert table.reping_candidate(newcomer, 100) is nodes[1]


def test_reping_candidate_breaks_ties_by_earliest_added() -> None:
    table = RoutingTable(ZERO, k=3)
    nodes = full_row(table, [(30, 40), (10, 40), (20, 40)])
    assert table.reping_candidate(ident(0, 99), 100) is nodes[1]


def test_reping_candidate_skips_nodes_pinged_this_tick() -> None:
    table = RoutingTable(ZERO, k=3)
    nodes = full_row(table, [(0, 100), (0, 100), (0, 90)])
    assert table.reping_candidate(ident(0, 99), 100) is nodes[2]
    nodes[2].pinged = 100
    assert table.reping_candidate(ident(0, 99), 100) is None


def test_reping_candidate_spares_an_old_node_pinged_recently() -> None:
    tick = 1000
    table = RoutingTable(ZERO, k=1)
    (old,) = full_row(table, [(tick - OLD_NODE - 1, tick - RECENT_NODE + 1)])
    assert table.reping_candidate(ident(0, 99), tick) is None
    old.pinged = tick - RECENT_NODE  # not recent any more
    assert table.reping_candidate(ident(0, 99), tick) is old
    old.pinged, old.added = tick - 1, tick - OLD_NODE  # recent, but not old
    assert table.reping_candidate(ident(0, 99), tick) is old


def test_reping_candidate_of_an_empty_row_is_none() -> None:
    assert RoutingTable(ZERO).reping_candidate(ident(9), 5) is None


def test_reping_then_swap() -> None:
    """The caller's side of a full row, as dht-rpc's _repingAndSwap does it."""
    table = RoutingTable(ZERO, k=2)
    nodes = full_row(table, [(0, 1), (0, 2)])
    newcomer = node(ident(0, 50))
    assert not table.add(newcomer)
    candidate = table.reping_candidate(newcomer.id, 10)
    assert candidate is nodes[0]
    candidate.pinged = 10  # ... the ping fails:
    assert table.remove(candidate.id) and table.add(newcomer)
    assert ids(list(table.row(newcomer.id))) == [nodes[1].id, newcomer.id]


def test_with_id_rekeys_and_reports_what_did_not_fit() -> None:
    table = RoutingTable(ZERO, k=2)
    a, b, c = node(ident(0, 1)), node(ident(0, 2)), node(ident(4))
    for n in (a, b, c):
        table.add(n)
    new_id = b"\xff" * 32  # a and b (0x80...) now share 1 bit with us, c (0x08...) none
    rekeyed, dropped = table.with_id(new_id)
    assert rekeyed.id == new_id and rekeyed.k == 2
    assert dropped == [] and len(rekeyed) == 3
    assert rekeyed.row_index(a.id) == 1 and rekeyed.row_index(c.id) == 0

    crowded = RoutingTable(ZERO, k=1)
    d, e = node(ident(1, 1)), node(ident(2, 1))
    assert crowded.add(d) and crowded.add(e)
    rekeyed, dropped = crowded.with_id(b"\x80" + bytes(31))  # both land in row 0 now
    assert ids(rekeyed.to_list()) == [e.id] and dropped == [d]  # re-added in to_list order: e first
    rekeyed, dropped = crowded.with_id(e.id)
    assert dropped == [e] and rekeyed.to_list() == [d]


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_ids_must_be_32_bytes(bad: bytes) -> None:
    with pytest.raises(InvalidSetting, match="32 bytes"):
        RoutingTable(bad)
    table = RoutingTable(ZERO)
    with pytest.raises(InvalidSetting, match=f"got {len(bad)}"):
        table.add(Node(bad, "1.2.3.4", 1))
    with pytest.raises(InvalidSetting):
        table.closest(bad)
    with pytest.raises(InvalidSetting):
        table.get(bad)


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_k_must_be_positive(k: object) -> None:
    with pytest.raises(InvalidSetting, match="k must be"):
        RoutingTable(ZERO, k)  # type: ignore[arg-type]


def test_node_address() -> None:
    assert Node(ZERO, "1.2.3.4", 5).address == ("1.2.3.4", 5)
    assert Node(ZERO, "1.2.3.4", 5) != Node(ZERO, "1.2.3.4", 5)  # identity, like JS objects
