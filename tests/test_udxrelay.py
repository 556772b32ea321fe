"""The lossy UDP relay of the UDX tests (tests/udxrelay.py), with plain asyncio UDP sockets."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

import pytest
from udxrelay import A_TO_B, B_TO_A, Address, Direction, LossyRelay

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0


class Endpoint(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that records what it receives: (data, source, loop time)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[bytes, Address, float]] = []
        self._changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
        loop = asyncio.get_running_loop()
        self.received.append((data, (str(addr[0]), int(addr[1])), loop.time()))
        self._changed.set()

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    @property
    def payloads(self) -> list[bytes]:
        return [data for data, _, _ in self.received]

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def wait_count(self, count: int, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def endpoints(count: int = 2) -> AsyncIterator[list[Endpoint]]:
    loop = asyncio.get_running_loop()
    made: list[Endpoint] = []
    try:
        for _ in range(count):
            _, proto = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
            made.append(proto)
        yield made
    finally:
        for proto in made:
            if proto.transport is not None:
                proto.transport.close()
        await asyncio.sleep(0)


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


async def pump(
    sender: Endpoint,
    to: Address,
    relay: LossyRelay,
    direction: Direction,
    count: int,
    batch: int = 50,
) -> None:
    """Send datagrams b'<index>' in batches, letting the relay take each batch
    before the next, so no kernel socket buffer overflows."""
    counters = relay.counters[direction]
    start = counters.received
    for first in range(0, count, batch):
        for index in range(first, min(first + batch, count)):
            sender.send(str(index).encode(), to)
        sent = min(first + batch, count)
        await wait_until(lambda sent=sent: counters.received - start >= sent)  # type: ignore[misc]


def indices(endpoint: Endpoint) -> list[int]:
    return [int(data) for data in endpoint.payloads]


# ---------------------------------------------------------------------- forwarding


async def test_forwards_both_ways_and_learns_a() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address) as relay:
        assert relay.target_a is None
        assert relay.target_b == b.address
        a.send(b"ping", relay.address_for_a)
        await b.wait_count(1)
        assert b.received[0][:2] == (b"ping", relay.address_for_b)
        assert relay.target_a == a.address  # learned from RA
        b.send(b"pong", relay.address_for_b)
        await a.wait_count(1)
        assert a.received[0][:2] == (b"pong", relay.address_for_a)
        assert relay.a_to_b.as_dict() == {**relay.a_to_b.as_dict(), "received": 1, "forwarded": 1}
        assert relay.b_to_a.forwarded == 1 and relay.b_to_a.dropped == 0


async def test_fixed_targets_and_unroutable() -> None:
    async with endpoints(3) as (a, b, stranger):
        async with await LossyRelay.start() as relay:
            # neither side known: nothing can be routed
            b.send(b"early", relay.address_for_b)
            await wait_until(lambda: relay.b_to_a.received == 1)
            assert relay.b_to_a.unroutable == 1 and relay.b_to_a.dropped == 1
        async with await LossyRelay.start(target_a=a.address, target_b=b.address) as relay:
            b.send(b"to a", relay.address_for_b)
            await a.wait_count(1)
            # a stranger sending on RA does not hijack the fixed target_a
            stranger.send(b"from stranger", relay.address_for_a)
            await b.wait_count(1)
            b.send(b"to a again", relay.address_for_b)
            await a.wait_count(2)
            assert a.payloads == [b"to a", b"to a again"]
            assert stranger.received == []
            assert relay.target_a == a.address


async def test_ipv6_loopback() -> None:
    loop = asyncio.get_running_loop()
    try:
        t_a, a = await loop.create_datagram_endpoint(Endpoint, local_addr=("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    t_b, b = await loop.create_datagram_endpoint(Endpoint, local_addr=("::1", 0))
    try:
        async with LossyRelay(target_b=b.address, host="::1") as relay:
            a.send(b"six", relay.address_for_a)
            await b.wait_count(1)
            b.send(b"back", relay.address_for_b)
            await a.wait_count(1)
            assert a.payloads == [b"back"] and b.payloads == [b"six"]
    finally:
        t_a.close()
        t_b.close()


async def test_carries_a_burst_fast() -> None:
    """Cheap enough for UDX bulk traffic: 20k 1200-byte datagrams, paced in batches."""
    async with endpoints() as (a, b), LossyRelay(target_b=b.address) as relay:
        loop = asyncio.get_running_loop()
        started = loop.time()
        payload = bytes(1180)
        counters = relay.a_to_b
        for _ in range(200):
            for _ in range(100):
                a.send(payload, relay.address_for_a)
            sent = counters.received + 100
            await wait_until(lambda sent=sent: counters.received >= sent)  # type: ignore[misc]
        await b.wait_count(20_000, timeout=10)
        elapsed = loop.time() - started
        assert counters.forwarded == 20_000
        assert elapsed < 10, elapsed


# ---------------------------------------------------------------------- impairments


async def test_seeded_loss_rate() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address, loss=0.1, seed=7) as relay:
        await pump(a, relay.address_for_a, relay, A_TO_B, 2000)
        await b.wait_count(relay.a_to_b.forwarded)
        lost = relay.a_to_b.lost
        assert 120 <= lost <= 280, lost  # 200 expected
        assert relay.a_to_b.forwarded == 2000 - lost == len(b.received)
        assert relay.a_to_b.dropped == lost
        assert relay.b_to_a.received == 0


async def test_loss_is_reproducible_and_per_direction() -> None:
    kept: list[list[int]] = []
    for _ in range(2):
        async with endpoints() as (a, b), LossyRelay(target_b=b.address, loss=0.3, seed=3) as relay:
            await pump(a, relay.address_for_a, relay, A_TO_B, 300)
            await b.wait_count(relay.a_to_b.forwarded)
            kept.append(sorted(indices(b)))
    assert kept[0] == kept[1]
    assert 150 < len(kept[0]) < 270
    async with endpoints() as (a, b), LossyRelay(target_b=b.address, loss=0.3, seed=4) as relay:
        await pump(a, relay.address_for_a, relay, A_TO_B, 300)
        await b.wait_count(relay.a_to_b.forwarded)
        assert sorted(indices(b)) != kept[0]


async def test_duplicate() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address, duplicate=1.0) as relay:
        await pump(a, relay.address_for_a, relay, A_TO_B, 20)
        await b.wait_count(40)
        assert indices(b) == [i for i in range(20) for _ in range(2)]
        assert relay.a_to_b.duplicated == 20 and relay.a_to_b.forwarded == 40
    async with endpoints() as (a, b), LossyRelay(target_b=b.address, duplicate=0.25) as relay:
        await pump(a, relay.address_for_a, relay, A_TO_B, 1000)
        await b.wait_count(1000 + relay.a_to_b.duplicated)
        assert 170 <= relay.a_to_b.duplicated <= 330
        assert sorted(set(indices(b))) == list(range(1000))


async def test_reorder_swaps_with_the_next_datagram() -> None:
    async with (
        endpoints() as (a, b),
        LossyRelay(target_b=b.address, reorder=1.0, reorder_delay=5.0) as relay,
    ):
        for i in range(6):
            a.send(str(i).encode(), relay.address_for_a)
            await wait_until(lambda i=i: relay.a_to_b.received == i + 1)  # type: ignore[misc]
        await b.wait_count(6)
        assert indices(b) == [1, 0, 3, 2, 5, 4]
        assert relay.a_to_b.reordered == 3


async def test_reorder_releases_after_the_delay() -> None:
    async with (
        endpoints() as (a, b),
        LossyRelay(target_b=b.address, reorder=1.0, reorder_delay=0.1) as relay,
    ):
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        a.send(b"alone", relay.address_for_a)
        await b.wait_count(1)
        waited = b.received[0][2] - sent_at
        assert 0.08 <= waited < 1.0, waited
        assert relay.a_to_b.reordered == 1


async def test_reorder_at_a_rate_actually_reorders() -> None:
    async with (
        endpoints() as (a, b),
        LossyRelay(target_b=b.address, reorder=0.2, reorder_delay=0.3, seed=11) as relay,
    ):
        await pump(a, relay.address_for_a, relay, A_TO_B, 1000, batch=10)
        await b.wait_count(1000)  # a last held one comes after reorder_delay
        got = indices(b)
        assert sorted(got) == list(range(1000))
        inversions = sum(1 for x, y in itertools.pairwise(got) if x > y)
        # each held datagram swaps with the next, except a last one released by its timer
        assert relay.a_to_b.reordered - 1 <= inversions <= relay.a_to_b.reordered
        assert 100 <= inversions <= 300


async def test_constant_delay_keeps_order() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address, delay=0.05) as relay:
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await pump(a, relay.address_for_a, relay, A_TO_B, 200)
        await b.wait_count(200)
        assert indices(b) == list(range(200))
        assert b.received[0][2] - sent_at >= 0.045


async def test_drop_if_predicate() -> None:
    seen: list[tuple[Direction, bytes]] = []

    def drop(direction: Direction, data: bytes) -> bool:
        seen.append((direction, data))
        return direction == A_TO_B and data.startswith(b"x")

    async with endpoints() as (a, b), LossyRelay(target_b=b.address, drop_if=drop) as relay:
        for data in (b"x1", b"ok1", b"x2", b"ok2"):
            a.send(data, relay.address_for_a)
        await b.wait_count(2)
        b.send(b"xback", relay.address_for_b)
        await a.wait_count(1)
        assert b.payloads == [b"ok1", b"ok2"]
        assert a.payloads == [b"xback"]
        assert relay.a_to_b.filtered == 2 and relay.a_to_b.dropped == 2
        assert seen[-1] == (B_TO_A, b"xback") and len(seen) == 5


async def test_stall_drops_during_and_forwards_after() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address) as relay:
        loop = asyncio.get_running_loop()
        a.send(b"before", relay.address_for_a)
        await b.wait_count(1)
        b.send(b"hello a", relay.address_for_b)
        await a.wait_count(1)
        relay.stall(0.1)
        stalled_at = loop.time()
        assert relay.stalled() and relay.stalled(A_TO_B) and relay.stalled(B_TO_A)
        a.send(b"during", relay.address_for_a)
        b.send(b"during", relay.address_for_b)
        await wait_until(lambda: relay.a_to_b.stalled == 1 and relay.b_to_a.stalled == 1)
        await wait_until(lambda: not relay.stalled())
        assert loop.time() - stalled_at >= 0.09
        a.send(b"after", relay.address_for_a)
        b.send(b"after", relay.address_for_b)
        await b.wait_count(2)
        await a.wait_count(2)
        await asyncio.sleep(0.05)
        assert b.payloads == [b"before", b"after"]
        assert a.payloads == [b"hello a", b"after"]
        assert relay.a_to_b.dropped == 1 and relay.b_to_a.dropped == 1


async def test_stall_hold_releases_in_order() -> None:
    async with endpoints() as (a, b), LossyRelay(target_b=b.address) as relay:
        loop = asyncio.get_running_loop()
        relay.stall(0.1, hold=True, direction=A_TO_B)
        assert relay.stalled(A_TO_B) and not relay.stalled(B_TO_A)
        stalled_at = loop.time()
        await pump(a, relay.address_for_a, relay, A_TO_B, 10, batch=5)
        assert b.received == []
        await b.wait_count(10)
        assert indices(b) == list(range(10))
        assert b.received[0][2] - stalled_at >= 0.09
        assert relay.a_to_b.stalled == 10 and relay.a_to_b.dropped == 0


async def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        LossyRelay(loss=1.5)
    with pytest.raises(ValueError):
        LossyRelay(delay=-1)
    relay = LossyRelay()
    with pytest.raises(RuntimeError):
        _ = relay.address_for_a
    with pytest.raises(RuntimeError):
        relay.stall(0.1)


# ---------------------------------------------------------------------- close


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
async def test_close_leaves_no_tasks_sockets_or_timers() -> None:
    async with endpoints() as (a, b):
        tasks_before = asyncio.all_tasks()
        fds_before = _open_fds()
        relay = await LossyRelay.start(target_b=b.address, delay=0.2, reorder=0.5)
        assert _open_fds() == fds_before + 2
        assert asyncio.all_tasks() == tasks_before
        for i in range(20):
            a.send(str(i).encode(), relay.address_for_a)
        await wait_until(lambda: relay.a_to_b.received == 20)
        relay.stall(5, hold=True)
        await relay.close()
        assert relay.closed
        assert _open_fds() == fds_before
        assert asyncio.all_tasks() == tasks_before
        await relay.close()  # idempotent
        await asyncio.sleep(0.3)  # the delay has passed: nothing was left scheduled
        assert b.received == []
        assert relay.a_to_b.forwarded == 0
