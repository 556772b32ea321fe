"""Swarms that find each other on the DHT by the drive alone (hyperswarm's behaviour), on a
network of Python nodes (DHTTestnet, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from conftest import next_of, wait_until

from peersockets import KeyPair, Peersockets, Swarm, discovery_key
from peersockets.dht import DHT
from peersockets.errors import PeerConnectError, SwarmClosed
from peersockets.hyperswarm import DiscoveryEvent
from peersockets.testing import DHTTestnet

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 15.0


@pytest_asyncio.fixture
async def net() -> AsyncIterator[DHTTestnet]:
    async with DHTTestnet(5) as testnet:
        yield testnet


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def swarm_on(net: DHTTestnet, stack: AsyncExitStack, **options: Any) -> Swarm:
    return await stack.enter_async_context(Swarm(bootstrap=net.bootstrap, **options))


async def peers_on(stack: AsyncExitStack, swarm: Swarm, drive: bytes) -> Peersockets:
    return await stack.enter_async_context(Peersockets(swarm, drive))


async def test_two_swarms_meet_by_the_drive_alone_and_talk(net: DHTTestnet, stack: AsyncExitStack) -> None:
    drive = os.urandom(32)
    alice, bob = await swarm_on(net, stack), await swarm_on(net, stack)
    seen: list[DiscoveryEvent] = []
    alice.add_discovery_listener(seen.append)
    ps_alice, ps_bob = await peers_on(stack, alice, drive), await peers_on(stack, bob, drive)
    events_alice, events_bob = ps_alice.watch(), ps_bob.watch()
    await asyncio.wait_for(asyncio.gather(alice.flush(), bob.flush()), TIMEOUT)
    joined = await next_of(events_alice, TIMEOUT)
    assert joined.type == "join" and joined.public_key == bob.public_key
    bob_sees = await next_of(events_bob, TIMEOUT)
    assert bob_sees.public_key == alice.public_key
    for event in (joined, bob_sees):  # the UDX stream's remote address
        assert event.address is not None and event.address[0] == "127.0.0.1", event
    chat_alice, chat_bob = ps_alice.join("chat"), ps_bob.join("chat")
    for i in range(100):
        await chat_bob.send(bob_sees.peer_id, f"{i}".encode())
    got = [(await next_of(chat_alice, TIMEOUT)).message for _ in range(100)]
    assert got == [f"{i}".encode() for i in range(100)]
    kinds = [event.kind for event in seen]
    for kind in ("started", "listening", "announced", "lookup"):
        assert kind in kinds, kinds
    assert len(alice.connections) == len(bob.connections) == 1
    assert alice.connections[0].handshake_hash == bob.connections[0].handshake_hash  # one kept, the same


async def test_three_swarms_all_see_each_other_and_one_sees_two_drives(net: DHTTestnet, stack: AsyncExitStack) -> None:
    first, second = os.urandom(32), os.urandom(32)
    swarms = [await swarm_on(net, stack) for _ in range(3)]
    on_first = [await peers_on(stack, swarm, first) for swarm in swarms]
    other = await swarm_on(net, stack)
    on_second = [await peers_on(stack, swarms[0], second), await peers_on(stack, other, second)]
    await asyncio.wait_for(asyncio.gather(*(s.flush() for s in [*swarms, other])), TIMEOUT)
    for ps in on_first:
        await wait_until(lambda ps=ps: len(ps.peers) == 2, TIMEOUT)  # type: ignore[misc]
    await wait_until(lambda: len(on_second[0].peers) == 1 and len(on_second[1].peers) == 1, TIMEOUT)
    assert on_second[0].peer_public_key(on_second[0].peers[0]) == other.public_key


async def test_a_peer_that_leaves_is_a_leave_and_a_return_is_a_join(net: DHTTestnet, stack: AsyncExitStack) -> None:
    drive = os.urandom(32)
    alice = await swarm_on(net, stack)
    ps_alice = await peers_on(stack, alice, drive)
    events = ps_alice.watch()
    bob_key = KeyPair.generate()
    bob = Swarm(bob_key, bootstrap=net.bootstrap)
    ps_bob = Peersockets(bob, drive)
    assert (await next_of(events, TIMEOUT)).type == "join"
    await ps_bob.close()
    await bob.close()
    left = await next_of(events, TIMEOUT)
    assert left.type == "leave" and left.public_key == bob_key.public_key
    bob = await stack.enter_async_context(Swarm(bob_key, bootstrap=net.bootstrap))  # back, same key
    await peers_on(stack, bob, drive)
    back = await next_of(events, TIMEOUT)
    assert back.type == "join" and back.public_key == bob_key.public_key


async def test_a_dropped_connection_to_a_peer_still_announced_is_made_again(
    net: DHTTestnet, stack: AsyncExitStack
) -> None:
    drive = os.urandom(32)
    alice, bob = await swarm_on(net, stack), await swarm_on(net, stack)
    ps_alice = await peers_on(stack, alice, drive)
    await peers_on(stack, bob, drive)
    events = ps_alice.watch()
    assert (await next_of(events, TIMEOUT)).type == "join"
    alice.connections[0].abort()  # the path broke
    assert (await next_of(events, TIMEOUT)).type == "leave"
    again = await next_of(events, TIMEOUT)  # hyperswarm's back-off: about a second
    assert again.type == "join" and again.public_key == bob.public_key


async def test_max_peers_and_the_firewall(net: DHTTestnet, stack: AsyncExitStack) -> None:
    drive = os.urandom(32)
    refused = await swarm_on(net, stack)
    limited = await swarm_on(net, stack, max_peers=1, firewall=lambda key: key == refused.public_key)
    others = [await swarm_on(net, stack, max_peers=1) for _ in range(2)]
    await peers_on(stack, refused, drive)
    for swarm in others:
        await peers_on(stack, swarm, drive)
        await swarm.flush()
    ps = await peers_on(stack, limited, drive)
    await asyncio.wait_for(limited.flush(), TIMEOUT)
    await asyncio.sleep(0.5)
    assert refused.public_key not in {c.remote_public_key for c in limited.connections}
    dialled = [c for c in limited.connections if c.initiator]
    assert len(dialled) <= 1  # it stops dialling at max_peers (others may still dial it)
    assert all(ps.peer_public_key(p) != refused.public_key for p in ps.peers)


async def test_join_peer_keeps_a_connection_to_one_known_key(net: DHTTestnet, stack: AsyncExitStack) -> None:
    drive = os.urandom(32)
    server = await swarm_on(net, stack)
    await peers_on(stack, server, drive)  # its DHT starts and listens on its key
    await asyncio.wait_for(server.flush(), TIMEOUT)
    client = await swarm_on(net, stack)
    client.join_peer(server.public_key)
    await wait_until(lambda: client.connection_to(server.public_key) is not None, TIMEOUT)
    with pytest.raises(SwarmClosed):
        Swarm(dht=False).join_peer(server.public_key)


async def test_leaving_unannounces(net: DHTTestnet, stack: AsyncExitStack) -> None:
    drive = os.urandom(32)
    alice = await swarm_on(net, stack)
    ps = await peers_on(stack, alice, drive)
    await asyncio.wait_for(alice.flush(), TIMEOUT)
    watcher = await net.client()
    topic = ps.discovery_key
    assert alice.public_key in {record.public_key async for record in watcher.lookup(topic)}
    left = asyncio.Event()
    alice.add_discovery_listener(lambda event: event.kind == "left" and left.set())
    await ps.close()  # leaves the drive's key
    await asyncio.wait_for(left.wait(), TIMEOUT)
    assert alice.public_key not in {record.public_key async for record in watcher.lookup(topic)}


async def test_closing_the_peersockets_then_the_swarm_unannounces(net: DHTTestnet) -> None:
    """The usual order (``async with Swarm() as s, Peersockets(s, key)`` exits the
    Peersockets first): the leave's unannouncement must not be cancelled by the swarm's
    close, or the key stays announced for peers to dial in vain until it expires."""
    drive = os.urandom(32)
    watcher = await net.client()
    for _ in range(3):
        async with Swarm(bootstrap=net.bootstrap) as swarm, Peersockets(swarm, drive) as ps:
            await asyncio.wait_for(swarm.flush(), TIMEOUT)
            topic = ps.discovery_key
            assert swarm.public_key in {r.public_key async for r in watcher.lookup(topic)}
        assert not {r.public_key async for r in watcher.lookup(topic)}, "left announced"


async def test_a_swarm_that_never_joins_starts_no_dht(net: DHTTestnet, stack: AsyncExitStack) -> None:
    swarm = await swarm_on(net, stack)
    await swarm.listen("127.0.0.1", 0)
    await asyncio.sleep(0.2)
    assert swarm.dht is None


async def test_an_unreachable_bootstrap_warns_keeps_trying_and_closes_promptly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    events: list[DiscoveryEvent] = []
    swarm = Swarm(dht=DHT(bootstrap=[f"127.0.0.1:{dead}"], host="127.0.0.1", attempt_timeout=0.1))
    swarm.add_discovery_listener(events.append)
    ps = Peersockets(swarm, os.urandom(32))
    await wait_until(lambda: any(e.kind == "bootstrap-failed" for e in events), TIMEOUT)
    failed = next(e for e in events if e.kind == "bootstrap-failed")
    assert f"127.0.0.1:{dead}" in failed.detail and "trying again" in failed.detail
    assert swarm.dht is not None and not swarm.dht.node.table
    await ps.close()
    await asyncio.wait_for(swarm.close(), 5)


async def test_bootstrap_names_that_do_not_resolve_are_handled_the_same_way() -> None:
    """As the default bootstrap names would be offline: a warning, retries, no hang."""
    events: list[DiscoveryEvent] = []
    swarm = Swarm(bootstrap=["no-such-host.invalid:49737"])
    swarm.add_discovery_listener(events.append)
    ps = Peersockets(swarm, os.urandom(32))
    await wait_until(lambda: any(e.kind == "bootstrap-failed" for e in events), TIMEOUT)
    failed = next(e for e in events if e.kind == "bootstrap-failed")
    assert "no-such-host.invalid:49737" in failed.detail
    await ps.close()
    await asyncio.wait_for(swarm.close(), 5)


async def test_the_peers_a_lookup_can_make_us_remember_are_bounded(
    net: DHTTestnet, stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strangers may announce any number of keys on a drive's topic: past MAX_KNOWN_PEERS the
    new ones are ignored, and those known are still dialled."""
    from peersockets import hyperswarm

    monkeypatch.setattr(hyperswarm, "MAX_KNOWN_PEERS", 3)
    drive = os.urandom(32)
    announcer = await net.client()
    for _ in range(6):  # keys nobody listens on
        await announcer.announce(discovery_key(drive), KeyPair.generate())
    swarm = await swarm_on(net, stack)
    await peers_on(stack, swarm, drive)
    await asyncio.wait_for(swarm.flush(), TIMEOUT)
    discovery = swarm._dht_discovery
    assert discovery is not None
    assert len(discovery._peers) <= 3 and discovery.ignored >= 3


async def test_close_is_bounded_when_the_network_is_gone() -> None:
    """The DHT vanished under a swarm with joined keys: close unannounces for at most 2 s and
    closes the node anyway (Ctrl-C in the chat goes this way)."""
    testnet = DHTTestnet(4)
    await testnet.start()
    swarm = Swarm(bootstrap=testnet.bootstrap)
    drives = [Peersockets(swarm, os.urandom(32)) for _ in range(4)]
    await asyncio.wait_for(swarm.flush(), TIMEOUT)
    await testnet.close()
    dht = swarm.dht
    assert dht is not None
    await asyncio.wait_for(swarm.close(), 8)
    assert dht.node._closed
    for ps in drives:
        await ps.close()


async def test_leave_then_join_again_stays_findable_and_flush_does_not_hang(
    net: DHTTestnet, stack: AsyncExitStack
) -> None:
    drive = os.urandom(32)
    swarm = await swarm_on(net, stack)
    ps = await peers_on(stack, swarm, drive)
    await asyncio.wait_for(swarm.flush(), TIMEOUT)
    flushing = asyncio.ensure_future(swarm.flush())
    await ps.close()  # leave (its unannouncement is under way)...
    ps = await peers_on(stack, swarm, drive)  # ...and join again at once
    await asyncio.wait_for(flushing, TIMEOUT)
    await asyncio.wait_for(swarm.flush(), TIMEOUT)
    watcher = await net.client()
    await asyncio.sleep(0.3)  # the late unannouncement, had it not been waited for, lands now
    found = {record.public_key async for record in watcher.lookup(ps.discovery_key)}
    assert swarm.public_key in found


async def test_peers_that_never_answer_are_forgotten_and_refused_strangers_not_remembered(
    net: DHTTestnet, stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peersockets import hyperswarm

    monkeypatch.setattr(hyperswarm, "BACKOFFS", (0.01, 0.01, 0.01, 600.0))
    monkeypatch.setattr(hyperswarm, "BACKOFF_JITTER", (0.0, 0.0, 0.0, 0.0))
    drive = os.urandom(32)
    announcer = await net.client()
    ghosts = [KeyPair.generate() for _ in range(3)]
    for ghost in ghosts:  # announced, but nobody listens on these keys
        await announcer.announce(discovery_key(drive), ghost)
    stranger = KeyPair.generate()
    swarm = await swarm_on(net, stack, firewall=lambda key: key == stranger.public_key)
    await peers_on(stack, swarm, drive)
    discovery = swarm._dht_discovery
    assert discovery is not None
    await wait_until(lambda: not any(g.public_key in discovery._peers for g in ghosts), 30)
    client = await net.client(attempt_timeout=0.2)
    with pytest.raises(PeerConnectError):
        await client.connect(swarm.public_key, key_pair=stranger, timeout=5)
    assert stranger.public_key not in discovery._peers
