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
    referred = addresses(40, first_port=30000)
    for address in asked[:2]:  # k replies first: the best two so far
        query.replied(address, Response(1, ("127.0.0.1", 9)), node_id(address))
    query.replied(asked[2], Response(1, ("127.0.0.1", 9), closer_nodes=tuple(referred)), node_id(asked[2]))
    assert len(query.closest_replies) == 2
    ids = [r.id for r in query.closest_replies]
    assert [distance(i, target) for i in ids if i] == sorted(distance(i, target) for i in ids if i)
    worst = distance(query.closest_replies[-1].id or b"", target)
    better = {a for a in referred if distance(node_id(a), target) < worst}
    assert better and len(better) < len(referred)
    assert set(query.next_nodes(slow=40)) == better  # only referred nodes that rank among the 2 best


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


def test_the_window_bounds_requests_outstanding_not_requests_sent() -> None:
    """dht-rpc's congestion window: each reply gives its send back."""
    from peersockets.dht.messages import InternalCommand, Request
    from peersockets.dht.rpc import Requests

    requests = Requests(0)
    answered = 0
    for i in range(400):
        requests.send(Request(0, ("127.0.0.1", 9), InternalCommand.PING, internal=True), ("127.0.0.1", 9), 0.0)
        for datagram, _address, _context in requests.outgoing:
            tid = int.from_bytes(datagram[2:4], "little")
            assert requests.response(Response(tid, ("127.0.0.1", 9))) is not None
            answered += 1
        requests.outgoing.clear()
        assert len(requests) == 0, i
    assert answered == 400  # all at time 0: none waited for a slot


def test_a_late_reply_to_an_earlier_send_counts_while_the_request_waits_to_be_resent() -> None:
    from peersockets.dht.messages import InternalCommand, Request
    from peersockets.dht.rpc import SENDS_PER_SLOT, Requests

    requests = Requests(0)
    for _ in range(SENDS_PER_SLOT):  # fill this slot
        requests.send(Request(0, ("127.0.0.1", 9), InternalCommand.PING, internal=True), ("127.0.0.1", 9), 0.0)
    first_tid = int.from_bytes(requests.outgoing[0][0][2:4], "little")
    requests.outgoing.clear()
    requests.handle_timer(0.5)  # not yet due
    requests.handle_timer(1.0)  # due: queued for a resend, but the slot is still full (same slot)
    assert requests.response(Response(first_tid, ("127.0.0.1", 9))) is not None
