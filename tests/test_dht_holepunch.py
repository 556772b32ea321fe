"""The puncher's NAT classification (hyperdht's lib/nat.js rules) and the address rules of the
path decision (bogon ranges, the LAN match), sans-I/O."""

from __future__ import annotations

import pytest

from peersockets.dht.addresses import is_bogon, is_private, is_reserved, match_address
from peersockets.dht.holepunch import PunchNat
from peersockets.dht.peer_messages import Firewall

Sample = tuple[tuple[str, int], tuple[str, int]]


def classify(samples: list[tuple[str, int]], firewalled: bool = True) -> PunchNat:
    nat = PunchNat(firewalled)
    for i, seen_as in enumerate(samples):
        nat.add(seen_as, ("10.9.9.9", 1000 + i))  # each from another node
    return nat


def test_an_unfirewalled_node_is_open_from_its_first_sample() -> None:
    nat = classify([("1.2.3.4", 5)], firewalled=False)
    assert nat.firewall == Firewall.OPEN and nat.addresses == (("1.2.3.4", 5),)


def test_fewer_than_three_samples_stay_unknown() -> None:
    nat = classify([("1.2.3.4", 5), ("1.2.3.4", 5)])
    assert nat.firewall == Firewall.UNKNOWN and nat.addresses is None and not nat.settled()


def test_three_equal_samples_are_consistent_and_settle() -> None:
    nat = classify([("1.2.3.4", 5)] * 3)
    assert nat.firewall == Firewall.CONSISTENT and nat.settled()
    assert nat.addresses == (("1.2.3.4", 5),)


def test_three_different_ports_are_random_with_port_zero() -> None:
    nat = classify([("1.2.3.4", 5), ("1.2.3.4", 6), ("1.2.3.4", 7)])
    assert nat.firewall == Firewall.RANDOM and nat.addresses == (("1.2.3.4", 0),)


def test_two_hits_of_one_host_among_four_samples_is_random() -> None:
    nat = classify([("1.2.3.4", 5), ("1.2.3.4", 5), ("1.2.3.4", 6), ("1.2.3.4", 7)])
    assert nat.firewall == Firewall.RANDOM


def test_double_hits_on_two_hosts_are_consistent_with_both_addresses() -> None:
    nat = classify([("1.2.3.4", 5), ("5.6.7.8", 9), ("1.2.3.4", 5), ("5.6.7.8", 9)])
    assert nat.firewall == Firewall.CONSISTENT
    assert set(nat.addresses or ()) == {("1.2.3.4", 5), ("5.6.7.8", 9)}


def test_a_node_counts_once_and_a_frozen_nat_keeps_its_answer() -> None:
    nat = PunchNat(True)
    for _ in range(5):
        nat.add(("1.2.3.4", 5), ("10.0.0.1", 1))  # the same node five times
    assert nat.sampled == 1 and nat.firewall == Firewall.UNKNOWN
    nat = classify([("1.2.3.4", 5)] * 3)
    nat.freeze()
    for i in range(5):
        nat.add(("1.2.3.4", 100 + i), ("10.1.1.1", i + 1))
    assert nat.firewall == Firewall.CONSISTENT and nat.addresses == (("1.2.3.4", 5),)


@pytest.mark.parametrize(
    ("host", "private", "reserved"),
    [
        ("10.1.2.3", True, False),
        ("100.64.0.1", True, False),
        ("127.0.0.1", True, False),
        ("169.254.1.1", True, False),
        ("172.16.0.1", True, False),
        ("172.32.0.1", False, False),
        ("192.168.0.1", True, False),
        ("0.1.2.3", False, True),
        ("192.0.2.1", False, True),
        ("198.18.0.1", False, True),
        ("198.51.100.7", False, True),
        ("203.0.113.9", False, True),
        ("224.0.0.1", False, True),
        ("255.255.255.255", False, True),
        ("8.8.8.8", False, False),
        ("not an address", False, True),
    ],
)
def test_bogon_ranges_as_hyperdht(host: str, private: bool, reserved: bool) -> None:
    assert is_private(host) is private
    assert is_reserved(host) is reserved
    assert is_bogon(host) is (private or reserved)


def test_the_lan_match_prefers_the_longest_common_prefix() -> None:
    mine = [("192.168.122.238", 1)]
    theirs = [("10.0.0.5", 2), ("192.168.0.23", 3), ("192.168.122.1", 4)]
    assert match_address(mine, theirs) == ("192.168.122.1", 4)
    assert match_address(mine, theirs[:2]) == ("192.168.0.23", 3)
    assert match_address(mine, [("10.0.0.5", 2)]) is None
    assert match_address(mine, []) is None
