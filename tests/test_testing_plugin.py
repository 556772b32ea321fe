"""The pytest plugin and MemoryNetwork discovery, as a user's test suite would use them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from conftest import next_of

from peersockets import Peersockets, Swarm
from peersockets.testing import MemoryNetwork

DRIVE = bytes(range(32))


async def test_memory_network_discovery_connects_swarms_of_a_drive(
    memory_network: MemoryNetwork,
) -> None:
    swarms = [memory_network.swarm() for _ in range(3)]
    sockets = [Peersockets(s, DRIVE) for s in swarms]
    events = sockets[0].watch()
    joins = {(await next_of(events)).public_key for _ in range(2)}
    assert joins == {swarms[1].public_key, swarms[2].public_key}
    outsider = memory_network.swarm()
    Peersockets(outsider, bytes(32))  # another drive: not connected to these
    assert all(c.remote_public_key != outsider.public_key for c in swarms[0].connections)


async def test_make_swarm_fixture_gives_listening_tcp_swarms(
    make_swarm: Callable[..., Awaitable[Swarm]],
) -> None:
    a, b = await make_swarm(), await make_swarm()
    await b.connect(*a.addresses[0])
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_b.join("t")
    events = ps_a.watch()
    peer = (await next_of(events)).peer_id
    await ps_a.join("t").send(peer, b"over tcp")
    assert (await next_of(topic)).message == b"over tcp"
