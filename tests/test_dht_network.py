"""The DHT end to end on a network of Python nodes (peersockets.testing.DHTTestnet), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from peersockets.dht import DHT, PeerRecord
from peersockets.dht.node import RPCNode, parse_bootstrap
from peersockets.errors import DHTError, InvalidKey, InvalidSetting
from peersockets.testing import DHTTestnet
from peersockets.wire.crypto import KeyPair, blake2b_256

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 20.0


async def found(dht: DHT, topic: bytes) -> set[bytes]:
    return {peer.public_key async for peer in dht.lookup(topic)}


async def test_a_testnet_of_python_nodes_knows_itself(dht_testnet: DHTTestnet) -> None:
    assert len(dht_testnet.nodes) == 4
    for node in dht_testnet.nodes:
        assert len(node.node.table) == 3  # every other node, none twice, not itself


async def test_announce_lookup_and_unannounce(dht_testnet: DHTTestnet) -> None:
    a, b = await dht_testnet.client(), await dht_testnet.client()
    topic = os.urandom(32)
    ka, kb = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
    await asyncio.wait_for(a.announce(topic, ka), TIMEOUT)
    assert await asyncio.wait_for(found(b, topic), TIMEOUT) == {ka.public_key}
    await asyncio.wait_for(b.announce(topic, kb, [("127.0.0.1", 4000)]), TIMEOUT)
    peers = [peer async for peer in a.lookup(topic)]
    assert {p.public_key for p in peers} == {ka.public_key, kb.public_key}
    assert PeerRecord(kb.public_key, (("127.0.0.1", 4000),)) in peers
    await asyncio.wait_for(a.unannounce(topic, ka), TIMEOUT)
    assert await asyncio.wait_for(found(b, topic), TIMEOUT) == {kb.public_key}
    assert await asyncio.wait_for(found(b, os.urandom(32)), TIMEOUT) == set()


async def test_every_storing_node_verified_the_signature_it_was_given(dht_testnet: DHTTestnet) -> None:
    client = await dht_testnet.client()
    topic = os.urandom(32)
    await asyncio.wait_for(client.announce(topic, KeyPair.generate()), TIMEOUT)
    stored = [node._store.sizes()["records"] for node in dht_testnet.nodes if node._store is not None]
    assert sum(stored) >= 3  # each closest storing node took the record signed for it


async def test_immutable_and_mutable_values(dht_testnet: DHTTestnet) -> None:
    a, b = await dht_testnet.client(), await dht_testnet.client()
    key = await asyncio.wait_for(a.immutable_put(b"an immutable value"), TIMEOUT)
    assert await asyncio.wait_for(b.immutable_get(key), TIMEOUT) == b"an immutable value"
    assert await asyncio.wait_for(b.immutable_get(os.urandom(32)), TIMEOUT) is None
    kp = KeyPair.from_seed(b"\x03" * 32)
    await asyncio.wait_for(a.mutable_put(kp, b"first", seq=1), TIMEOUT)
    await asyncio.wait_for(a.mutable_put(kp, b"second", seq=2), TIMEOUT)
    got = await asyncio.wait_for(b.mutable_get(kp.public_key), TIMEOUT)
    assert got is not None and (got.seq, got.value) == (2, b"second")
    assert await asyncio.wait_for(b.mutable_get(kp.public_key, seq=3), TIMEOUT) is None
    with pytest.raises(DHTError, match="none accepted"):
        await asyncio.wait_for(a.mutable_put(kp, b"older", seq=1), TIMEOUT)  # SEQ_TOO_LOW everywhere


async def test_find_peer_after_a_self_announce(dht_testnet: DHTTestnet) -> None:
    client = await dht_testnet.client()
    kp = KeyPair.from_seed(b"\x04" * 32)
    await asyncio.wait_for(client.announce(blake2b_256(kp.public_key), kp), TIMEOUT)
    peer = await asyncio.wait_for(client.find_peer(kp.public_key), TIMEOUT)
    assert peer is not None and peer.public_key == kp.public_key
    assert await asyncio.wait_for(client.find_peer(os.urandom(32)), TIMEOUT) is None


async def test_bootstrap_entries_in_every_spelling() -> None:
    assert parse_bootstrap(["127.0.0.1:49737", ("10.0.0.1", 5), "88.99.3.86@node1.hyperdht.org:49737"]) == [
        ("127.0.0.1", 49737, None),
        ("10.0.0.1", 5, None),
        ("node1.hyperdht.org", 49737, "88.99.3.86"),
    ]
    for bad in (["no-port"], ["host:abc"], ["host:0"], [("h", 70000)]):
        with pytest.raises(InvalidSetting):
            parse_bootstrap(bad)  # type: ignore[arg-type]


async def test_a_string_bootstrap_and_a_dead_entry_beside_a_live_one() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        async with DHTTestnet(3) as testnet:
            host, port = testnet.bootstrap[0]
            async with DHT(bootstrap=[f"127.0.0.1:{dead_port}", f"{host}:{port}"], host="127.0.0.1") as dht:
                topic = os.urandom(32)
                kp = KeyPair.generate()
                await asyncio.wait_for(dht.announce(topic, kp), 30)
                assert await asyncio.wait_for(found(dht, topic), 30) == {kp.public_key}


async def test_no_reachable_bootstrap_node_fails_with_a_dht_error_not_a_hang() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        async with DHT(bootstrap=[dead.getsockname()], host="127.0.0.1") as dht:
            with pytest.raises(DHTError, match="too few nodes"):
                await asyncio.wait_for(dht.announce(os.urandom(32), KeyPair.generate()), 30)
            assert await asyncio.wait_for(found(dht, os.urandom(32)), 30) == set()


async def test_bad_keys_are_typed_errors(dht_testnet: DHTTestnet) -> None:
    client = await dht_testnet.client()
    with pytest.raises(InvalidKey, match="topic must be 32 bytes"):
        await client.announce(b"short", KeyPair.generate())
    with pytest.raises(InvalidKey, match="public_key"):
        await client.mutable_get(b"x" * 31)


async def test_a_suggested_ip_is_tried_first_and_the_name_resolved_when_it_does_not_answer(
    dht_testnet: DHTTestnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hyperdht's "suggested-ip@host:port": the IP is pinged first, else the name is resolved."""
    _host, port = dht_testnet.bootstrap[0]
    async with DHT(bootstrap=[f"127.0.0.1@localhost:{port}"], host="127.0.0.1") as dht:
        assert dht.node.bootstrap_nodes == [("127.0.0.1", port)]
        assert len(dht.node.table) == 4  # the suggested IP answered: the network was found
    pinged: list[tuple[str, int]] = []
    real_request = RPCNode.request

    def silent_suggested_ip(self: RPCNode, address: tuple[str, int], *args: object, **kwargs: object) -> object:
        if address[0] == "192.0.2.1":  # never sent: TEST-NET-1 stands for an IP that does not answer
            pinged.append(address)
            future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            future.set_exception(DHTError("no reply"))
            return future
        return real_request(self, address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RPCNode, "request", silent_suggested_ip)
    async with DHT(bootstrap=[f"192.0.2.1@localhost:{port}"], host="127.0.0.1") as dht:
        assert pinged == [("192.0.2.1", port)]
        assert dht.node.bootstrap_nodes == [("127.0.0.1", port)]
        assert len(dht.node.table) == 4


async def test_an_adaptive_node_samples_its_address_and_becomes_persistent(dht_testnet: DHTTestnet) -> None:
    """ephemeral=None: after adaptive_after, a reachable node with a consistent address stores too."""
    from peersockets.dht.messages import node_id

    adaptive = await dht_testnet.client(adaptive_after=0.2)
    ephemeral = await dht_testnet.client(ephemeral=True)
    assert not adaptive.persistent
    for _ in range(100):
        if adaptive.persistent:
            break
        await asyncio.sleep(0.05)
    assert adaptive.persistent
    assert (adaptive.node.nat.host, adaptive.node.nat.port) == adaptive.address  # the server socket's
    assert adaptive.node.id == node_id(adaptive.address)
    assert not await adaptive.node.check_firewall()
    topic, kp = os.urandom(32), KeyPair.generate()
    await asyncio.wait_for(ephemeral.announce(topic, kp), TIMEOUT)  # its table holds the new node now
    assert adaptive._store is not None and adaptive._store.sizes()["records"] == 1
    assert not ephemeral.persistent and ephemeral._store is None


async def test_a_node_whose_replies_do_not_reach_its_server_socket_stays_ephemeral(
    dht_testnet: DHTTestnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The firewall check: PING_NAT replies must arrive on the server socket, at its own port."""
    for node in dht_testnet.nodes:  # the network answers PING_NAT at the source port, not the asked one
        monkeypatch.setattr(node.node, "_on_internal", _ping_nat_to_source(node.node))
    client = await dht_testnet.client()
    assert client.node.firewalled  # the quick test at bootstrap failed too
    # nat-sampler's feeding: each table node's view of us counts once, however often it answers
    assert client.node.nat.size == len(client.node.table) == 4
    await client.node.find_node(os.urandom(32))
    assert client.node.nat.size == 4
    assert await client.node.check_firewall()
    assert not await client.node.try_persistent()
    assert not client.persistent


def _ping_nat_to_source(node: RPCNode):  # type: ignore[no-untyped-def]
    real = node._on_internal

    def on_internal(incoming):  # type: ignore[no-untyped-def]
        if incoming.request.command == 1:  # PING_NAT: answer as a NAT that drops the redirect would
            node.reply(incoming)
            return
        real(incoming)

    return on_internal


async def test_a_write_overlapped_by_another_query_commits_to_its_own_closest_nodes() -> None:
    """Each query keeps its own closest nodes: a put that a slower lookup overlaps still
    commits to the nodes its own query found (it once took the other query's)."""
    from peersockets.dht.node import Incoming

    slow_target = os.urandom(32)

    def on_request(node: RPCNode, incoming: Incoming) -> None:
        delay = 1.5 if incoming.request.target == slow_target else 0.2
        asyncio.get_running_loop().call_later(delay, lambda: node.reply(incoming, token=True, closer_nodes=True))

    storing = RPCNode(bootstrap=[], host="127.0.0.1", persistent=True, on_request=on_request)
    await storing.open()
    try:
        async with DHT(bootstrap=[storing.address], host="127.0.0.1", ephemeral=True) as dht:
            put = asyncio.ensure_future(dht.immutable_put(b"value"))  # its query ends after 0.2 s
            await asyncio.sleep(0.05)
            lookup = asyncio.ensure_future(found(dht, slow_target))  # this one after 1.5 s
            assert await asyncio.wait_for(put, TIMEOUT) == blake2b_256(b"value")
            assert await asyncio.wait_for(lookup, TIMEOUT) == set()
    finally:
        await storing.close()


async def test_the_quick_firewall_test_lets_a_reachable_client_send_from_its_server_socket(
    dht_testnet: DHTTestnet,
) -> None:
    """dht-rpc's bootstrap: a PING_NAT answer reaching the server socket makes it the sending one."""
    client = await dht_testnet.client(ephemeral=True)
    assert not client.node.firewalled and not client.persistent
    assert (client.node.nat.host, client.node.nat.port) == client.address
    seen: list[tuple[str, int]] = []
    target = dht_testnet.nodes[0]
    real = target.node._on_datagram

    def spy(data: bytes, source: tuple[str, int], sock: object) -> None:
        seen.append(source[:2])
        real(data, source, sock)  # type: ignore[arg-type]

    target.node._on_datagram = spy  # type: ignore[method-assign]
    await asyncio.wait_for(client.immutable_put(b"from the server socket"), TIMEOUT)
    assert client.address in seen


async def test_a_node_that_slept_is_ephemeral_again_and_stops_storing(
    dht_testnet: DHTTestnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dht-rpc: a tick more than 15 s late means the machine slept; an adaptive node is
    ephemeral again (storing nothing) until it tests again, RECHECK later (an hour)."""
    import peersockets.dht.node as node_module
    from peersockets.dht import records

    monkeypatch.setattr(node_module, "RECHECK", 0.3)
    node = await dht_testnet.client(adaptive_after=0.1)
    for _ in range(100):
        if node.persistent:
            break
        await asyncio.sleep(0.05)
    assert node.persistent
    old_id = node.node.id
    loop = asyncio.get_running_loop()
    node.node._last_tick_at = loop.time() - 20  # the next tick comes 20 s late
    node.node._on_tick()
    assert not node.persistent and node.node.id == old_id  # its table and sockets stay
    assert node._store is None  # what it stored is dropped
    asker = await dht_testnet.client(ephemeral=True)
    response, _source = await asker.node.request(node.address, records.Command.LOOKUP, target=os.urandom(32))
    assert response.error == 1  # UNKNOWN_COMMAND: an ephemeral node stores nothing
    for _ in range(100):  # and the adaptive test runs again
        if node.persistent:
            break
        await asyncio.sleep(0.05)
    assert node.persistent


async def test_an_adaptive_node_retests_only_once_its_public_host_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    import peersockets.dht.node as node_module

    monkeypatch.setattr(node_module, "RECHECK", 0.01)
    node = RPCNode(bootstrap=[], host="127.0.0.1", adaptive_after=0.01)
    tries: list[str | None] = []

    async def never(self: RPCNode = node) -> bool:
        tries.append(self.nat.host)
        return False

    monkeypatch.setattr(node, "try_persistent", never)
    await node.open()
    try:
        node.nat.add("198.51.100.1", 1000)  # documentation addresses: samples only, nothing is sent
        await asyncio.sleep(0.2)
        assert len(tries) == 1  # the host did not change: no new test
        for _ in range(3):
            node.nat.add("198.51.100.2", 1000)
        await asyncio.sleep(0.2)
        assert len(tries) == 2 and tries[-1] == "198.51.100.2"
    finally:
        await node.close()



async def test_a_node_heard_from_this_tick_is_not_re_pinged_away(dht_testnet: DHTTestnet) -> None:
    """dht-rpc marks a node heard from as pinged this tick: it is no candidate for a re-ping."""
    a, b = dht_testnet.nodes[0].node, dht_testnet.nodes[1].node
    await b.request(a.address, 0, internal=True)  # PING
    entry = a.table.get(b.id)
    assert entry is not None and entry.pinged == a._tick == entry.seen
    assert a.table.reping_candidate(b.id, a._tick) is not entry


async def test_an_abandoned_query_stops_sending(dht_testnet: DHTTestnet) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        client = await dht_testnet.client()
        key = await asyncio.wait_for(client.immutable_put(b"found early"), TIMEOUT)
        client.node.bootstrap_nodes.append(dead.getsockname())  # a seed that never answers
        assert await asyncio.wait_for(client.immutable_get(key), TIMEOUT) == b"found early"
        assert len(client.node._requests) == 0  # the rest of the query was cancelled


async def test_a_query_on_a_node_closed_meanwhile_raises_instead_of_finding_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        dht = DHT(bootstrap=[], host="127.0.0.1", ephemeral=True)
        await dht.open()
        dht.node.bootstrap_nodes.append(dead.getsockname())
        lookup = asyncio.ensure_future(found(dht, os.urandom(32)))
        await asyncio.sleep(0.1)
        await dht.close()
        with pytest.raises(DHTError, match="closed"):
            await asyncio.wait_for(lookup, TIMEOUT)
        with pytest.raises(DHTError, match="closed"):
            await found(dht, os.urandom(32))


async def test_stats_count_what_a_storing_node_holds(dht_testnet: DHTTestnet) -> None:
    client = await dht_testnet.client()
    await asyncio.wait_for(client.immutable_put(b"counted"), TIMEOUT)
    stats = [node.stats for node in dht_testnet.nodes]
    assert sum(s["immutables"] for s in stats) >= 3
    assert all(s["nodes"] == 3 and "refused" in s for s in stats)
    assert all(node._expiry is not None for node in dht_testnet.nodes)  # expiry runs on time
