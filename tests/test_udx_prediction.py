"""Header prediction in the UDX stream core changes nothing but speed.

Each scenario runs twice on the deterministic network of ``udxsim`` (same seed,
same losses, reordering and duplicates): once with ``PREDICTION`` on, once with
every packet on the general path. Every datagram either side sent, every byte
and event delivered, both cores' state after every step of the network, the
statistics and the virtual time taken must be the same in both runs; and the predicted path must have taken a share of the packets, or
the comparison would prove nothing.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from udxsim import Sim

from peersockets.udx import stream as stream_module
from peersockets.udx.stream import StreamCore

Trace = dict[str, Any]


def _state(core: StreamCore) -> tuple[object, ...]:
    """Every plain attribute of a core, and the sizes of its tables (its whole state, but
    for the contents of its queues, which the datagrams and bytes already show)."""
    values: list[object] = []
    for name in sorted(vars(core)):
        value = getattr(core, name)
        if value is None or isinstance(value, (bool, int, float, str, enum.Enum)):
            values.append((name, value))
        elif isinstance(value, (list, dict, set, deque)):
            values.append((name, len(value)))
    values.append(("cwnd", core._cc.cwnd))
    return tuple(values)


def _trace(net: Sim) -> Trace:
    return {
        "states": list(net.states),  # type: ignore[attr-defined]
        "sent": {direction: list(datagrams) for direction, datagrams in net.sent.items()},
        "received": {name: bytes(data) for name, data in net.received.items()},
        "events": {name: [repr(e) for e in events] for name, events in net.events.items()},
        "stats": {name: repr(core.stats) for name, core in (("a", net.a), ("b", net.b))},
        "rto": (net.a.rto, net.b.rto),
        "now": net.now,
    }


def _network(seed: int, loss: float, jitter: float, duplicate: float, **options: object) -> Sim:
    chance = random.Random(seed)
    return Sim(
        delay=0.002,
        jitter=jitter,
        duplicate=duplicate,
        seed=seed,
        drop=lambda _direction, _datagram: chance.random() < loss,
        **options,
    )


def _ping_pong(net: Sim) -> None:
    """a writes, b echoes what it got, 300 times, with sizes from 1 byte to 3 packets."""
    sizes = random.Random(7)
    expected = 0
    for _ in range(300):
        payload = bytes(sizes.randrange(256) for _ in range(sizes.choice([1, 1, 64, 1400, 3000])))
        expected += len(payload)
        net.a.write(payload)
        net.flush(net.a)
        net.run_until(lambda n=expected: len(net.received["b"]) >= n, limit=net.now + 60)
        echoed = len(net.received["a"])
        net.b.write(bytes(net.received["b"][echoed:expected]))
        net.flush(net.b)
        net.run_until(lambda n=expected: len(net.received["a"]) >= n, limit=net.now + 60)
    assert net.received["a"] == net.received["b"]


def _bulk(net: Sim) -> None:
    """512 KiB from a to b, then END both ways."""
    data = random.Random(3).randbytes(512 * 1024)
    net.a.write(data)
    net.a.end()
    net.flush(net.a)
    net.run_until(lambda: len(net.received["b"]) == len(data), limit=net.now + 120)
    net.b.end()
    net.flush(net.b)
    net.run_until(lambda: net.a.closed and net.b.closed, limit=net.now + 120)
    assert bytes(net.received["b"]) == data


def _both_ways(net: Sim) -> None:
    """256 KiB each way at once: data packets carry acks of the other direction."""
    ab = random.Random(4).randbytes(256 * 1024)
    ba = random.Random(5).randbytes(256 * 1024)
    net.a.write(ab)
    net.b.write(ba)
    net.flush(net.a)
    net.flush(net.b)
    net.run_until(
        lambda: len(net.received["b"]) == len(ab) and len(net.received["a"]) == len(ba),
        limit=net.now + 120,
    )
    assert bytes(net.received["b"]) == ab and bytes(net.received["a"]) == ba


def _slow_readers(net: Sim) -> None:
    """Both write 192 KiB through 32 KiB windows; the readers stop reading for a while
    (the windows shut, the senders probe them), then read on: rwnd moves in every ack."""
    ab = random.Random(8).randbytes(192 * 1024)
    ba = random.Random(9).randbytes(192 * 1024)
    net.consume = False
    net.a.write(ab)
    net.b.write(ba)
    net.flush(net.a)
    net.flush(net.b)
    net.run_for(0.3)
    assert len(net.received["b"]) < len(ab)  # the window held the sender back
    net.consume = True
    for core, name in ((net.a, "a"), (net.b, "b")):
        core.consumed(len(net.received[name]))
        net.flush(core)
    net.run_until(
        lambda: len(net.received["b"]) == len(ab) and len(net.received["a"]) == len(ba),
        limit=net.now + 120,
    )
    assert bytes(net.received["b"]) == ab and bytes(net.received["a"]) == ba


SCENARIOS: dict[str, tuple[Callable[[Sim], None], dict[str, object]]] = {
    "ping-pong": (_ping_pong, {}),
    "bulk": (_bulk, {}),
    "both-ways": (_both_ways, {}),
    "slow-readers": (_slow_readers, {"receive_window": 32 * 1024}),
}
NETWORKS = {
    "clean": (0.0, 0.0, 0.0),
    "lossy": (0.03, 0.0, 0.0),
    "reordering": (0.01, 0.003, 0.02),
}


def _run(
    monkeypatch: pytest.MonkeyPatch, predict: bool, scenario: str, network: str, seed: int
) -> tuple[Trace, int, int]:
    """The trace of one run, how many DATA packets arrived and how many were predicted."""
    monkeypatch.setattr(stream_module, "PREDICTION", predict)
    general = StreamCore._receive_predicted
    counts = [0, 0]

    def counted(self: StreamCore, *args: Any) -> bool:
        counts[0] += 1
        taken = general(self, *args)
        counts[1] += taken
        return taken

    monkeypatch.setattr(StreamCore, "_receive_predicted", counted)
    run, options = SCENARIOS[scenario]
    net = _network(seed, *NETWORKS[network], **options)
    net.states = []  # type: ignore[attr-defined]
    step = net.step

    def recorded() -> bool:
        moved = step()
        net.states.append((_state(net.a), _state(net.b)))  # type: ignore[attr-defined]
        return moved

    net.step = recorded  # type: ignore[method-assign]
    run(net)
    monkeypatch.undo()
    return _trace(net), counts[0], counts[1]


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_predicted_and_general_paths_send_and_deliver_the_same(
    monkeypatch: pytest.MonkeyPatch, scenario: str, network: str
) -> None:
    for seed in (1, 2):
        predicted, candidates, taken = _run(monkeypatch, True, scenario, network, seed)
        general, _, never = _run(monkeypatch, False, scenario, network, seed)
        assert never == 0  # off means off
        assert candidates and taken >= candidates // 4, (candidates, taken)
        for key in predicted:
            assert predicted[key] == general[key], f"{scenario}/{network}/seed {seed}: {key} differ"
