"""peersockets.dht.nat: nat-sampler 1.0.1, quirks included (HYPERDHT.md 1.10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peersockets.dht.nat import LOOKBACK, WINDOW, NatSampler, threshold_for

H, G = "1.2.3.4", "5.6.7.8"

SEQUENCES: dict[str, list[tuple[str, int]]] = {
    "one": [(H, 1000)],
    "same_host_two_ports": [(H, 1000), (H, 1001)],
    "two_hosts": [(H, 1000), (G, 1000)],
    "consistent_20": [(H, 1000)] * 20,
    "random_ports": [(H, 2000 + i) for i in range(20)],
    "one_outlier": [(H, 1)] * 4 + [(G, 9)] + [(H, 1)] * 3,
    "alternating_5": [(H, 1000 + i % 5) for i in range(12)],
    "alternating_2": [(H, 1000 + i % 2) for i in range(12)],
    "switch_address": [(H, 1)] * 16 + [(G, 2)] * 16,
    "mostly_then_noise": [(H, 1)] * 10 + [(G, 3), (H, 4), (G, 5), (H, 1), (G, 6), (H, 7), (H, 1), (H, 1)],
}

# What the JavaScript nat-sampler 1.0.1 returned and reported after each add of the
# sequences above: (add's return value, host, port, size).
JS_ANSWERS: dict[str, list[tuple[int, str | None, int, int]]] = {
    "one": [(1, H, 1000, 1)],
    "same_host_two_ports": [(1, H, 1000, 1), (1, H, 0, 2)],
    "two_hosts": [(1, H, 1000, 1), (1, None, 0, 2)],
    "consistent_20": [(1, H, 1000, 1), (2, H, 1000, 2), (3, H, 1000, 3), (4, H, 1000, 4), (5, H, 1000, 5), (6, H, 1000, 6), (7, H, 1000, 7), (8, H, 1000, 8), (9, H, 1000, 9), (10, H, 1000, 10), (11, H, 1000, 11), (12, H, 1000, 12), (13, H, 1000, 13), (14, H, 1000, 14), (15, H, 1000, 15), (16, H, 1000, 16), (16, H, 1000, 16), (16, H, 1000, 16), (16, H, 1000, 16), (16, H, 1000, 16)],
    "random_ports": [(1, H, 2000, 1), (1, H, 0, 2), (1, H, 0, 3), (1, H, 0, 4), (1, H, 0, 5), (1, H, 0, 6), (1, H, 0, 7), (1, H, 0, 8), (1, H, 0, 9), (1, H, 0, 10), (1, H, 0, 11), (1, H, 0, 12), (1, H, 0, 13), (1, H, 0, 14), (1, H, 0, 15), (1, H, 0, 16), (1, H, 0, 16), (1, H, 0, 16), (1, H, 0, 16), (1, H, 0, 16)],
    "one_outlier": [(1, H, 1, 1), (2, H, 1, 2), (3, H, 1, 3), (4, H, 1, 4), (1, H, 1, 5), (5, H, 1, 6), (6, H, 1, 7), (7, H, 1, 8)],
    "alternating_5": [(1, H, 1000, 1), (1, H, 0, 2), (1, H, 0, 3), (1, H, 0, 4), (1, H, 0, 5), (1, H, 0, 6), (1, H, 0, 7), (1, H, 0, 8), (1, H, 0, 9), (1, H, 0, 10), (1, H, 0, 11), (1, H, 0, 12)],
    "alternating_2": [(1, H, 1000, 1), (1, H, 0, 2), (2, H, 0, 3), (2, H, 0, 4), (3, H, 0, 5), (3, H, 0, 6), (4, H, 0, 7), (4, H, 0, 8), (5, H, 0, 9), (5, H, 0, 10), (6, H, 0, 11), (6, H, 0, 12)],
    "switch_address": [(1, H, 1, 1), (2, H, 1, 2), (3, H, 1, 3), (4, H, 1, 4), (5, H, 1, 5), (6, H, 1, 6), (7, H, 1, 7), (8, H, 1, 8), (9, H, 1, 9), (10, H, 1, 10), (11, H, 1, 11), (12, H, 1, 12), (13, H, 1, 13), (14, H, 1, 14), (15, H, 1, 15), (16, H, 1, 16), (1, H, 1, 16), (2, H, 1, 16), (3, H, 1, 16), (4, None, 0, 16), (5, None, 0, 16), (6, None, 0, 16), (7, None, 0, 16), (8, None, 0, 16), (9, None, 0, 16), (10, None, 0, 16), (11, None, 0, 16), (12, None, 0, 16), (13, G, 2, 16), (14, G, 2, 16), (15, G, 2, 16), (16, G, 2, 16)],
    "mostly_then_noise": [(1, H, 1, 1), (2, H, 1, 2), (3, H, 1, 3), (4, H, 1, 4), (5, H, 1, 5), (6, H, 1, 6), (7, H, 1, 7), (8, H, 1, 8), (9, H, 1, 9), (10, H, 1, 10), (1, H, 1, 11), (1, H, 1, 12), (1, H, 1, 13), (11, H, 1, 14), (1, H, 0, 15), (1, H, 0, 16), (11, H, 0, 16), (11, H, 0, 16)],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_known_answers_from_the_javascript_sampler(name: str) -> None:
    sampler = NatSampler()
    got = [(sampler.add(host, port), sampler.host, sampler.port, sampler.size) for host, port in SEQUENCES[name]]
    assert got == JS_ANSWERS[name]


def test_a_new_sampler_reports_nothing() -> None:
    sampler = NatSampler()
    assert (sampler.host, sampler.port, sampler.size, sampler.threshold) == (None, 0, 0, 0)
    assert not sampler.randomized


def test_one_consistent_answer_is_reported_at_once() -> None:
    sampler = NatSampler()
    assert sampler.add(H, 1000) == 1
    assert (sampler.host, sampler.port) == (H, 1000) and not sampler.randomized


def test_a_port_randomizing_nat_reports_the_host_with_port_0() -> None:
    sampler = NatSampler()
    for port in range(3000, 3010):
        sampler.add(H, port)
    assert (sampler.host, sampler.port) == (H, 0) and sampler.randomized


def test_disagreeing_hosts_report_nothing() -> None:
    sampler = NatSampler()
    sampler.add(H, 1)
    sampler.add(G, 1)
    assert (sampler.host, sampler.port) == (None, 0)


def test_thresholds() -> None:
    assert [threshold_for(n) for n in range(17)] == [0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11, 12, 13]
    sampler = NatSampler()
    for n in range(1, 25):
        sampler.add(H, 1)
        assert sampler.size == min(n, WINDOW)
        assert sampler.threshold == threshold_for(min(n, WINDOW))
    assert sampler.threshold == 13


def test_the_window_keeps_16_samples() -> None:
    sampler = NatSampler()
    for _ in range(WINDOW):
        sampler.add(H, 1)
    # the old answer holds while it keeps 13 (the threshold) of the 16; then nothing is
    # consistent until the new answer has 13
    for i in range(12):
        sampler.add(G, 2)
        assert sampler.host == (H if i < 3 else None), i
    sampler.add(G, 2)
    assert (sampler.host, sampler.port) == (G, 2)


def test_only_the_last_4_answers_are_compared() -> None:
    """An answer counts with an equal earlier one only within LOOKBACK samples: five ports in
    turn never add up, two ports in turn do."""
    assert LOOKBACK == 4
    five, two = NatSampler(), NatSampler()
    assert [five.add(H, 1000 + i % 5) for i in range(10)] == [1] * 10
    assert [two.add(H, 1000 + i % 2) for i in range(6)] == [1, 1, 2, 2, 3, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([H, G, "9.9.9.9"]), st.sampled_from([1, 2, 3])), max_size=80))
def test_invariants(samples: list[tuple[str, int]]) -> None:
    sampler = NatSampler()
    for n, (host, port) in enumerate(samples, 1):
        hits = sampler.add(host, port)
        assert 1 <= hits <= min(n, WINDOW)
        assert sampler.size == min(n, WINDOW)
        assert sampler.host in (None, H, G, "9.9.9.9")
        assert sampler.port in (0, 1, 2, 3)
        if sampler.host is None:
            assert sampler.port == 0
        tail = samples[max(0, n - WINDOW) : n]
        if sampler.port:  # a reported address is among the answers held
            assert (sampler.host, sampler.port) in tail
        if sampler.host is not None:
            assert any(h == sampler.host for h, _ in tail)
