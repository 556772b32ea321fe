"""The iterative query core (sans-I/O): order, ranking, concurrency and its slow allowance."""

from __future__ import annotations

import os

from peersockets.dht.messages import Response, node_id
from peersockets.dht.query import Query, distance


def addresses(count: int, first_port: int = 20000) -> list[tuple[str, int]]:
    return [("127.0.0.1", first_port + i) for i in range(count)]


def test_candidates_are_asked_closest_first_up_to_the_concurrency() -> None:
    target = os.urandom(32)
    seeds = addresses(30)
    query = Query(target, seeds, concurrency=10)
    asked = query.next_nodes()
    assert len(asked) == 10
    by_distance = sorted(seeds, key=lambda a: distance(node_id(a), target))
    assert asked == by_distance[:10]
    assert query.next_nodes() == []  # all ten still in flight


def test_each_slow_request_lets_one_more_go() -> None:
    query = Query(os.urandom(32), addresses(30), concurrency=10)
    query.next_nodes()
    assert len(query.next_nodes(slow=3)) == 3
    assert query.in_flight == 13


def test_replies_rank_the_k_closest_storing_nodes_and_offer_their_closer_nodes() -> None:
    target = os.urandom(32)
    query = Query(target, addresses(3), k=2, concurrency=3)
    asked = query.next_nodes()
    referred = addresses(2, first_port=30000)
    for address in asked:
        query.replied(address, Response(1, ("127.0.0.1", 9), closer_nodes=tuple(referred)), node_id(address))
    assert len(query.closest_replies) == 2
    ids = [r.id for r in query.closest_replies]
    assert [distance(i, target) for i in ids if i] == sorted(distance(i, target) for i in ids if i)
    query.next_nodes()  # the referred nodes that rank among the 2 best are asked


def test_a_timed_out_node_names_the_nodes_that_referred_it() -> None:
    query = Query(os.urandom(32), addresses(1), concurrency=5)
    (seed,) = query.next_nodes()
    ghost = ("127.0.0.1", 40000)
    query.replied(seed, Response(1, ("127.0.0.1", 9), closer_nodes=(ghost,)), node_id(seed))
    assert query.next_nodes() == [ghost]
    assert query.timed_out(ghost) == [seed]
    assert query.done


def test_done_but_slow_needs_k_storing_replies_and_only_slow_requests_left() -> None:
    query = Query(os.urandom(32), addresses(4), k=2, concurrency=4)
    asked = query.next_nodes()
    for address in asked[:2]:
        query.replied(address, Response(1, ("127.0.0.1", 9)), node_id(address))
    assert not query.done
    assert query.done_but_slow(slow=2)  # the two left are slow and 2 storing nodes answered
    assert not query.done_but_slow(slow=1)
