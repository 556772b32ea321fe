"""The DHT node's housekeeping: dead nodes leave the table (pings, DOWN_HINTs), quiet tables refresh."""

from __future__ import annotations

import asyncio
import socket

import pytest

from peersockets.dht.messages import InternalCommand, down_hint_value, node_id
from peersockets.dht.node import PING_TICKS, REFRESH_TICKS
from peersockets.dht.routing import Node
from peersockets.testing import DHTTestnet

pytestmark = pytest.mark.timeout(60)
FAST = {"attempt_timeout": 0.05}


def dead_address() -> tuple[socket.socket, tuple[str, int]]:
    """A bound UDP socket nobody reads: requests to it go unanswered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()


async def test_the_ping_round_removes_a_node_that_does_not_answer() -> None:
    dead, address = dead_address()
    with dead:
        async with DHTTestnet(2, **FAST) as testnet:
            node = testnet.nodes[1].node
            ghost = Node(node_id(address), *address)
            assert node.table.add(ghost)
            node._tick = PING_TICKS - 1
            node._maintain()  # the 8th tick: the least recently seen nodes are pinged
            for _ in range(100):
                if node.table.get(ghost.id) is None:
                    break
                await asyncio.sleep(0.02)
            assert node.table.get(ghost.id) is None
            assert len(node.table) == 1  # the live node stays


async def test_a_down_hint_makes_a_node_check_and_drop_a_dead_neighbour() -> None:
    dead, address = dead_address()
    with dead:
        async with DHTTestnet(2, **FAST) as testnet:
            holder = testnet.nodes[0].node
            ghost = Node(node_id(address), *address)
            assert holder.table.add(ghost)
            client = await testnet.client(**FAST)
            await client.node.request(
                holder.address, InternalCommand.DOWN_HINT, internal=True, value=down_hint_value(address)
            )
            for _ in range(100):
                if holder.table.get(ghost.id) is None:
                    break
                await asyncio.sleep(0.02)
            assert holder.table.get(ghost.id) is None


async def test_a_query_that_meets_a_dead_node_tells_whoever_named_it() -> None:
    dead, address = dead_address()
    with dead:
        async with DHTTestnet(3, **FAST) as testnet:
            holders = [dht.node for dht in testnet.nodes]
            ghost_id = node_id(address)
            for holder in holders:
                holder.table.add(Node(ghost_id, *address))
            client = await testnet.client(**FAST)
            await client.node.find_node(ghost_id)  # every node names the ghost: it is closest
            for _ in range(100):
                if all(holder.table.get(ghost_id) is None for holder in holders):
                    break
                await asyncio.sleep(0.02)
            assert all(holder.table.get(ghost_id) is None for holder in holders)
            assert client.node.stats["timeouts"] >= 1


async def test_a_quiet_node_refreshes_its_table() -> None:
    async with DHTTestnet(3, **FAST) as testnet:
        node = testnet.nodes[2].node
        before = node.stats["requests_out"]
        node._tick = node._last_query_tick + REFRESH_TICKS - 1
        node._maintain()
        for _ in range(100):
            if node.stats["requests_out"] > before and not node._maintenance:
                break
            await asyncio.sleep(0.02)
        assert node.stats["requests_out"] > before  # a background FIND_NODE went out
        assert len(node.table) == 2
