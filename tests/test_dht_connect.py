"""Connecting by public key on a network of Python nodes only (DHT.connect / DHT.listen).

Every test runs a Python testnet (``DHTTestnet``: persistent nodes that store
announcements and relay handshakes, the relay duty JavaScript nodes do) and
Python client nodes. On loopback a node reaches every other one, so to make
peers holepunch the tests put them behind ``tests/natsim.py``'s simulated NAT:
their sockets are then reachable only from addresses they sent to first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any, Literal

import pytest
import pytest_asyncio
from conftest import wait_until
from natsim import Nat

from peersockets import Peersockets, Swarm
from peersockets.connection import Connection
from peersockets.dht import (
    DHT,
    DHTPeerNotFound,
    HandshakeRefused,
    HolepunchFailed,
    PeerConnectError,
    PeerConnectTimeout,
)
from peersockets.dht.server import DHTServer
from peersockets.errors import InvalidKey, InvalidSetting
from peersockets.testing import DHTTestnet
from peersockets.wire.crypto import KeyPair
from peersockets.wire.noise import HandshakeResult

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 20.0


class Echo:
    """A server's on_connection that echoes every raw message and counts what came in."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.arrived: asyncio.Queue[Connection] = asyncio.Queue()

    def __call__(self, connection: Connection) -> None:
        self.connections.append(connection)
        connection.message_handler = lambda message: connection.send_raw(bytes(message))
        self.arrived.put_nowait(connection)


@pytest_asyncio.fixture
async def net() -> AsyncIterator[DHTTestnet]:
    async with DHTTestnet(5) as testnet:
        yield testnet


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def behind_nat(
    net: DHTTestnet, stack: AsyncExitStack, mapping: Literal["consistent", "random"] = "consistent", **options: Any
) -> tuple[DHT, Nat]:
    nat = await stack.enter_async_context(Nat(mapping))
    dht = DHT(bootstrap=net.bootstrap, host="127.0.0.1", bind_socket=nat.bind, **options)
    await dht.open()
    stack.push_async_callback(dht.close)
    return dht, nat


async def echo_round_trip(connection: Connection, message: bytes = b"ping") -> bytes:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(reply: bytearray) -> None:
        if not got.done():
            got.set_result(bytes(reply))

    connection.message_handler = on_message
    connection.send_raw(message)
    return await asyncio.wait_for(got, TIMEOUT)


async def close_all(*connections: Connection) -> None:
    for connection in connections:
        connection.close()
    await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in connections)), TIMEOUT)


async def test_a_client_connects_by_key_and_both_know_each_other(net: DHTTestnet) -> None:
    server_dht = await net.client()
    client_dht = await net.client()
    echo = Echo()
    key_pair = KeyPair.generate()
    server = await server_dht.listen(key_pair, echo)
    assert len(server.relay_addresses) >= 3  # the announcement's holders (nodes + our own address)
    client_key = KeyPair.generate()
    connection = await client_dht.connect(key_pair.public_key, key_pair=client_key, timeout=TIMEOUT)
    assert connection.remote_public_key == key_pair.public_key
    assert await echo_round_trip(connection) == b"ping"
    accepted = await asyncio.wait_for(echo.arrived.get(), TIMEOUT)
    assert accepted.remote_public_key == client_key.public_key
    assert accepted.handshake_hash == connection.handshake_hash
    assert sum(client_dht.connects.values()) == 1
    # the server (the client is reachable) sent its header before its reply reached the client:
    # held by the client's stream, not lost and resent a second later
    server_stream = accepted.transport.get_extra_info("udx_stream") if accepted.transport else None
    assert server_stream is not None and server_stream.core.stats.retransmits == 0
    # where the announcement is, remembered and tried first by the next connect
    assert set(client_dht._relay_cache[key_pair.public_key]) <= set(server.relay_addresses)
    again = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    assert await echo_round_trip(again) == b"ping"
    await close_all(connection, accepted, again, await asyncio.wait_for(echo.arrived.get(), TIMEOUT))


@pytest.mark.parametrize("share_local_address", [False, True], ids=["no-lan", "lan-offered"])
async def test_peers_behind_nats_holepunch(net: DHTTestnet, stack: AsyncExitStack, share_local_address: bool) -> None:
    """Both sides firewalled behind consistent NATs: the connection is holepunched. With LAN
    addresses offered, the same-LAN shortcut is tried first and fails (the NAT hides the real
    ports), and the punch round connects."""
    (server_dht, server_nat), (client_dht, client_nat) = await asyncio.gather(
        behind_nat(net, stack), behind_nat(net, stack)
    )
    assert server_dht.node.firewalled and client_dht.node.firewalled
    echo = Echo()
    key_pair = KeyPair.generate()
    server = await server_dht.listen(key_pair, echo, share_local_address=share_local_address)
    connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    assert await echo_round_trip(connection, b"through two NATs") == b"through two NATs"
    assert client_dht.connects == {"holepunch": 1}
    assert server.accepts == {"puncher": 1}
    node_sockets = {client_dht.node.server, client_dht.node.client}
    assert connection.transport is not None
    assert connection.transport.get_extra_info("udx_stream").socket not in node_sockets
    assert server_nat.dropped + client_nat.dropped > 0  # the NATs filtered probes before the punch
    accepted = await asyncio.wait_for(echo.arrived.get(), TIMEOUT)
    await close_all(connection, accepted)


async def test_a_firewalled_client_reaches_an_open_server_and_an_open_client_a_firewalled_server(
    net: DHTTestnet, stack: AsyncExitStack
) -> None:
    natted, _nat = await behind_nat(net, stack)
    open_dht = await net.client()
    assert not open_dht.node.firewalled
    for server_dht, client_dht, expected in ((open_dht, natted, "open"), (natted, open_dht, "passive")):
        key_pair = KeyPair.generate()
        echo = Echo()
        await server_dht.listen(key_pair, echo)
        connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
        assert await echo_round_trip(connection) == b"ping"
        assert client_dht.connects[expected] == 1, client_dht.connects
        await close_all(connection, await asyncio.wait_for(echo.arrived.get(), TIMEOUT))


async def test_the_same_lan_shortcut(net: DHTTestnet) -> None:
    """Firewalled peers with the same public host: the client pings the server's local address
    and connects there (the server never punches, so the shortcut is the only way)."""
    server_dht = await net.client(quick_firewall=False)
    client_dht = await net.client(quick_firewall=False)
    assert server_dht.node.firewalled and client_dht.node.firewalled
    key_pair = KeyPair.generate()
    echo = Echo()
    await server_dht.listen(key_pair, echo, holepunch=False)
    connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    assert await echo_round_trip(connection) == b"ping"
    assert client_dht.connects["lan"] + client_dht.connects["holepunch"] == 1, client_dht.connects
    await close_all(connection, await asyncio.wait_for(echo.arrived.get(), TIMEOUT))


def _digest_of(received: list[bytes]) -> str:
    return hashlib.sha256(b"".join(received)).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 16 * 1024 * 1024], ids=["0B", "1B", "64KiB", "16MiB"])
async def test_data_both_ways_is_delivered_intact(net: DHTTestnet, stack: AsyncExitStack, size: int) -> None:
    (server_dht, _), (client_dht, _) = await asyncio.gather(behind_nat(net, stack), behind_nat(net, stack))
    key_pair = KeyPair.generate()
    data = os.urandom(size)
    chunk = 64 * 1024
    accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
    at_server: list[bytes] = []
    at_client: list[bytes] = []
    server_done = asyncio.Event()
    client_done = asyncio.Event()

    def on_connection(connection: Connection) -> None:
        def on_message(message: bytearray) -> None:
            at_server.append(bytes(message))
            if sum(map(len, at_server)) >= size:
                server_done.set()

        connection.message_handler = on_message
        accepted.set_result(connection)

    await server_dht.listen(key_pair, on_connection, share_local_address=False)
    connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)

    def on_reply(message: bytearray) -> None:
        at_client.append(bytes(message))
        if sum(map(len, at_client)) >= size:
            client_done.set()

    connection.message_handler = on_reply
    server_side = await asyncio.wait_for(accepted, TIMEOUT)
    for start in range(0, size, chunk):
        connection.send_raw(data[start : start + chunk])
        server_side.send_raw(data[start : start + chunk])
        await asyncio.gather(connection.drain(), server_side.drain())
    if size:
        await asyncio.wait_for(asyncio.gather(server_done.wait(), client_done.wait()), 60)
    expected = hashlib.sha256(data).hexdigest()
    assert _digest_of(at_server) == expected
    assert _digest_of(at_client) == expected
    await close_all(connection, server_side)


async def test_twenty_connections_at_once(net: DHTTestnet, stack: AsyncExitStack) -> None:
    server_dht, _ = await behind_nat(net, stack)
    echo = Echo()
    key_pair = KeyPair.generate()
    await server_dht.listen(key_pair, echo, share_local_address=False)
    clients = [await net.client() for _ in range(4)]
    connecting = [clients[i % 4].connect(key_pair.public_key, key_pair=KeyPair.generate(), timeout=TIMEOUT) for i in range(20)]
    connections = await asyncio.gather(*connecting)
    replies = await asyncio.gather(*(echo_round_trip(c, f"#{i}".encode()) for i, c in enumerate(connections)))
    assert replies == [f"#{i}".encode() for i in range(20)]
    assert len(echo.connections) == 20
    assert len({c.remote_public_key for c in echo.connections}) == 20
    await close_all(*connections, *echo.connections)


async def test_a_key_nobody_listens_on_is_not_found(net: DHTTestnet) -> None:
    client_dht = await net.client()
    with pytest.raises(DHTPeerNotFound) as caught:
        await client_dht.connect(KeyPair.generate().public_key, timeout=TIMEOUT)
    assert caught.value.code == "PEER_NOT_FOUND"
    assert isinstance(caught.value, PeerConnectError) and isinstance(caught.value, OSError)


async def test_a_server_firewall_refusal_and_a_closed_server(net: DHTTestnet) -> None:
    server_dht = await net.client()
    client_dht = await net.client(attempt_timeout=0.2)
    refused_key = KeyPair.generate()
    seen: list[bytes] = []

    def firewall(remote_public_key: bytes, _payload: object, _address: object) -> bool:
        seen.append(remote_public_key)
        return remote_public_key == refused_key.public_key

    key_pair = KeyPair.generate()
    echo = Echo()
    server = await server_dht.listen(key_pair, echo, firewall=firewall)
    with pytest.raises(HandshakeRefused) as caught:
        await client_dht.connect(key_pair.public_key, key_pair=refused_key, timeout=TIMEOUT)
    assert caught.value.code == "PEER_CONNECTION_FAILED"
    assert seen and set(seen) == {refused_key.public_key}
    welcome = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)  # another key is let in
    assert await echo_round_trip(welcome) == b"ping"
    await server.close()
    assert await client_dht.find_peer(key_pair.public_key) is None  # unannounced
    with pytest.raises(PeerConnectError):
        await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    await close_all(welcome, *echo.connections)


async def test_connect_timeout_and_bad_arguments(net: DHTTestnet, stack: AsyncExitStack) -> None:
    (server_dht, _), (client_dht, _) = await asyncio.gather(behind_nat(net, stack), behind_nat(net, stack))
    key_pair = KeyPair.generate()
    await server_dht.listen(key_pair, Echo())
    with pytest.raises(PeerConnectTimeout) as caught:
        await client_dht.connect(key_pair.public_key, timeout=0.001)
    assert isinstance(caught.value, TimeoutError)
    with pytest.raises(InvalidKey):
        await client_dht.connect(b"short")
    with pytest.raises(InvalidKey):
        await client_dht.connect(bytes(32))  # a small-order point: no key pair has it
    with pytest.raises(InvalidSetting):
        await client_dht.connect(key_pair.public_key, timeout=0)
    with pytest.raises(InvalidSetting):
        await server_dht.listen(key_pair, Echo())  # the same key twice on one DHT
    await asyncio.sleep(0.1)
    assert client_dht.node.server is not None
    assert len(client_dht.node.server.udx.streams) == 0  # the abandoned attempt left no stream


@pytest.mark.parametrize("mappings", [("random", "random"), ("random", "consistent")], ids=["both-random", "one-random"])
async def test_port_randomizing_nats_fail_with_holepunch_failed(
    net: DHTTestnet, stack: AsyncExitStack, mappings: tuple[Literal["consistent", "random"], Literal["consistent", "random"]]
) -> None:
    (server_dht, _), (client_dht, _) = await asyncio.gather(
        behind_nat(net, stack, mappings[0]), behind_nat(net, stack, mappings[1])
    )
    key_pair = KeyPair.generate()
    await server_dht.listen(key_pair, Echo(), share_local_address=False)
    with pytest.raises(HolepunchFailed) as caught:
        await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    assert caught.value.code in ("HOLEPUNCH_DOUBLE_RANDOMIZED_NATS", "HOLEPUNCH_ABORTED", "REMOTE_ABORTED")


async def test_topic_messages_between_swarms_over_a_dht_connection(net: DHTTestnet, stack: AsyncExitStack) -> None:
    """A Swarm's Connection on a DHT stream is the TCP one from protomux up: Peersockets works."""
    (server_dht, _), (client_dht, _) = await asyncio.gather(behind_nat(net, stack), behind_nat(net, stack))
    alice = await stack.enter_async_context(Swarm(dht=False))
    bob = await stack.enter_async_context(Swarm(dht=False))

    def maker(swarm: Swarm) -> Callable[[KeyPair, bool, HandshakeResult], Connection]:
        return lambda _key_pair, initiator, handshake: swarm.make_connection(initiator, handshake)

    drive_key = os.urandom(32)
    ps_alice = await stack.enter_async_context(Peersockets(alice, drive_key))
    ps_bob = await stack.enter_async_context(Peersockets(bob, drive_key))
    events = ps_alice.watch()
    server: DHTServer = await server_dht.listen(alice.key_pair, make_connection=maker(alice), share_local_address=False)
    assert server.public_key == alice.public_key
    await client_dht.connect(alice.public_key, key_pair=bob.key_pair, make_connection=maker(bob), timeout=TIMEOUT)
    joined = await asyncio.wait_for(anext(aiter(events)), TIMEOUT)
    assert joined.type == "join" and joined.public_key == bob.public_key
    bob_events = ps_bob.watch()
    alice_id = (await asyncio.wait_for(anext(aiter(bob_events)), TIMEOUT)).peer_id
    chat_alice = ps_alice.join("chat")
    chat_bob = ps_bob.join("chat")
    for i in range(100):
        await chat_bob.send(alice_id, f"message {i}".encode())
    received: list[bytes] = []
    while len(received) < 100:
        message = await asyncio.wait_for(anext(aiter(chat_alice)), TIMEOUT)
        received.append(message.message)
    assert received == [f"message {i}".encode() for i in range(100)]


async def test_closing_a_dht_closes_its_holepunched_connections(net: DHTTestnet, stack: AsyncExitStack) -> None:
    """A holepunched stream runs on a puncher socket of its own: closing the DHT closes it too."""
    (server_dht, _), (client_dht, _) = await asyncio.gather(behind_nat(net, stack), behind_nat(net, stack))
    key_pair = KeyPair.generate()
    echo = Echo()
    await server_dht.listen(key_pair, echo, share_local_address=False)
    connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
    assert client_dht.connects == {"holepunch": 1}
    stream = connection.transport
    assert stream is not None
    puncher = stream.get_extra_info("udx_stream").socket
    await client_dht.close()
    assert puncher.closed
    await asyncio.wait_for(connection.wait_closed(), TIMEOUT)
    accepted = await asyncio.wait_for(echo.arrived.get(), TIMEOUT)
    await asyncio.wait_for(accepted.wait_closed(), TIMEOUT)  # the abort reached the server (DESTROY)


async def test_closing_the_dht_stops_a_connect_under_way(net: DHTTestnet, stack: AsyncExitStack) -> None:
    """The server never punches, so the client waits on its holepunch round: closing the DHT
    ends the connect at once with a PeerConnectError, leaving no stream behind."""
    (server_dht, _), (client_dht, _) = await asyncio.gather(behind_nat(net, stack), behind_nat(net, stack))
    key_pair = KeyPair.generate()
    await server_dht.listen(key_pair, Echo(), share_local_address=False, holepunch=False)
    connecting = asyncio.ensure_future(client_dht.connect(key_pair.public_key, timeout=TIMEOUT))
    await wait_until(lambda: any(c.puncher is not None for c in client_dht._connectors))
    await client_dht.close()
    with pytest.raises(PeerConnectError):
        await asyncio.wait_for(connecting, 2)
    assert client_dht.node.server is not None and not client_dht.node.server.udx.streams


async def test_a_server_announces_again_when_its_relays_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relays are pinged every RELAY_PING_INTERVAL (3 s in hyperdht); when fewer than three
    answer, the key is announced again on the closest nodes still there, and clients find it."""
    from peersockets.dht import server as server_module

    monkeypatch.setattr(server_module, "RELAY_PING_INTERVAL", 0.1)
    async with DHTTestnet(8, attempt_timeout=0.2) as testnet:
        server_dht = await testnet.client(attempt_timeout=0.2)
        key_pair = KeyPair.generate()
        echo = Echo()
        server = await server_dht.listen(key_pair, echo)
        first = {relay.relay_address for relay in server._announcer.relays} if server._announcer else set()
        assert len(first) == 3
        for node in testnet.nodes[1:]:
            if node.address in first and len(first - {node.address}) >= 1:
                await node.close()
                first_closed = node.address
                break
        await wait_until(
            lambda: server._announcer is not None
            and first_closed not in {relay.relay_address for relay in server._announcer.relays},
            timeout=15,
        )
        client_dht = await testnet.client(attempt_timeout=0.2)
        connection = await client_dht.connect(key_pair.public_key, timeout=TIMEOUT)
        assert await echo_round_trip(connection) == b"ping"
        await close_all(connection, await asyncio.wait_for(echo.arrived.get(), TIMEOUT))
