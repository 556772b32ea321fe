"""A DHT node answers strangers: per-source rates, bounded tables, junk refused quietly."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from peersockets.dht import DHT
from peersockets.dht.messages import InternalCommand, Request, Response, decode
from peersockets.dht.ratelimit import RateLimiter
from peersockets.errors import DecodeError, DHTTimeout, InvalidSetting
from peersockets.testing import DHTTestnet

pytestmark = pytest.mark.timeout(60)


def test_a_source_gets_its_burst_then_its_rate() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    source = ("127.0.0.1", 4000)
    assert sum(limiter.allow(source, 0.0) for _ in range(100)) == 20
    assert sum(limiter.allow(source, 1.0) for _ in range(100)) == 10  # one second refills 10
    assert limiter.allow(("127.0.0.1", 4001), 1.0)  # another source has its own bucket
    assert limiter.refused == 170


def test_the_table_of_sources_is_bounded() -> None:
    limiter = RateLimiter(rate=10, burst=20, max_sources=100)
    for port in range(1, 10_001):
        limiter.allow(("127.0.0.1", port), 0.0)
    assert len(limiter) == 100


@pytest.mark.parametrize("setting", [{"rate": 0}, {"burst": 0}, {"max_sources": 0}])
def test_bad_limits_are_refused(setting: dict[str, float]) -> None:
    with pytest.raises(InvalidSetting):
        RateLimiter(**setting)  # type: ignore[arg-type]


async def test_a_flooding_socket_is_cut_to_its_rate_and_others_are_still_answered() -> None:
    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False, request_rate=50) as node:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood, socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM
        ) as other:
            for sock in (flood, other):
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(0.5)
            for tid in range(1000):
                flood.sendto(Request(tid, node.address, InternalCommand.PING, internal=True).encode(), node.address)
            await asyncio.sleep(0.5)
            answered = 0
            flood.setblocking(False)
            while True:
                try:
                    data = flood.recv(2048)
                except BlockingIOError:
                    break
                assert isinstance(decode(data), Response)
                answered += 1
            assert 100 <= answered <= 140  # the burst (2 x 50) and what 50 a second refilled
            other.sendto(Request(1, node.address, InternalCommand.PING, internal=True).encode(), node.address)
            reply = await asyncio.get_running_loop().run_in_executor(None, other.recv, 2048)
            assert isinstance(decode(reply), Response)
            assert node.node.limiter.refused >= 850


async def test_junk_datagrams_get_no_answer_and_break_nothing() -> None:
    async with DHTTestnet(2) as testnet:
        target = testnet.nodes[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.bind(("127.0.0.1", 0))
            junk.setblocking(False)
            rng = os.urandom
            for _ in range(300):
                kind = rng(1)[0] % 3
                data = (b"\x03", b"\x13", b"")[kind] + rng(rng(1)[0] % 120)
                try:
                    message = decode(data)
                except DecodeError:
                    message = None
                if message is not None:
                    continue  # a well-formed request may rightly be answered: only junk here
                junk.sendto(data, target.address)
            await asyncio.sleep(0.3)
            answers = 0
            while True:
                try:
                    junk.recv(2048)
                    answers += 1
                except BlockingIOError:
                    break
        assert answers == 0  # junk gets no answer, and the node still works
        client = await testnet.client()
        key = await asyncio.wait_for(client.immutable_put(b"still serving"), 20)
        assert await asyncio.wait_for(client.immutable_get(key), 20) == b"still serving"


@pytest.mark.parametrize("value", [None, b"", b"\x7f\x00\x00\x01\x01"], ids=["none", "empty", "five-bytes"])
async def test_a_down_hint_without_an_address_gets_no_answer(value: bytes | None) -> None:
    """As dht-rpc: a DOWN_HINT whose value is not a 6-byte address is dropped unanswered."""
    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False) as node:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as asker:
            asker.bind(("127.0.0.1", 0))
            asker.setblocking(False)
            hint = Request(7, node.address, InternalCommand.DOWN_HINT, internal=True, value=value)
            ping = Request(8, node.address, InternalCommand.PING, internal=True)
            asker.sendto(hint.encode(), node.address)
            asker.sendto(ping.encode(), node.address)
            await asyncio.sleep(0.2)
            tids = []
            while True:
                try:
                    tids.append(decode(asker.recv(2048)).tid)
                except BlockingIOError:
                    break
            assert tids == [8]  # the ping is answered, the hint is not


def test_one_host_on_many_ports_is_bounded_too() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    allowed = sum(limiter.allow(("127.0.0.1", port), 0.0) for port in range(1, 2001) for _ in range(3))
    assert allowed == 20 * 20  # the host's bucket: 20 x one source's burst
    assert limiter.allow(("198.51.100.7", 1), 0.0)  # a bucket per host: another host is untouched


async def test_delayed_pings_waiting_at_once_are_bounded_and_cancelled_on_close() -> None:
    from peersockets.dht.messages import delayed_ping_value
    from peersockets.dht.node import MAX_DELAYED_REPLIES

    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False, request_rate=10_000) as node:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as asker:
            asker.bind(("127.0.0.1", 0))
            value = delayed_ping_value(10_000)
            for tid in range(MAX_DELAYED_REPLIES + 200):
                request = Request(tid, node.address, InternalCommand.DELAYED_PING, internal=True, value=value)
                asker.sendto(request.encode(), node.address)
            await asyncio.sleep(0.3)
            assert len(node.node._delayed) == MAX_DELAYED_REPLIES
    assert not node.node._delayed  # closing cancelled them: no reply from a closed socket later



async def test_a_refused_request_costs_no_table_entry() -> None:
    """The rate limit comes first: a refused request does not add its sender to the table."""
    async with (
        DHT(bootstrap=[], host="127.0.0.1", ephemeral=False, request_rate=1) as node,
        DHT(bootstrap=[], host="127.0.0.1", ephemeral=False) as sender,
    ):
        node.node.limiter.allow(sender.address, asyncio.get_running_loop().time())  # spend its burst
        node.node.limiter.allow(sender.address, asyncio.get_running_loop().time())
        with pytest.raises(DHTTimeout):
            await sender.node.request(node.address, InternalCommand.PING, internal=True, retries=0)
        assert len(node.node.table) == 0


async def test_a_persistent_node_on_a_wildcard_address_is_refused() -> None:
    dht = DHT(bootstrap=[], host="0.0.0.0", ephemeral=False)
    with pytest.raises(InvalidSetting, match=r"'0\.0\.0\.0'"):
        await dht.open()
    await dht.close()
