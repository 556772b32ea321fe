"""Hostile peers against DHT.connect / DHT.listen: forged and replayed handshakes, floods of
handshakes and holepunches, relay abuse, and the connect-message decoders on arbitrary bytes.

The attacker is a bare UDP socket speaking dht-rpc (``RawPeer``): it sends crafted
PEER_HANDSHAKE / PEER_HOLEPUNCH requests straight to the server's node (mode FROM_CLIENT,
or FROM_RELAY as if it were a relay) or through one of the nodes holding the server's
announcement. Each test shows what the attacker gets (nothing, or the answer hyperdht would
give), that nothing outlives the documented clear wait, that no exception escapes the
router, and that a genuine client still connects afterwards. Everything on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from conftest import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from peersockets.connection import Connection
from peersockets.dht import DHT
from peersockets.dht import connect as connect_module
from peersockets.dht import server as server_module
from peersockets.dht.messages import MAX_SAFE_UINT, Address, Request, Response, decode
from peersockets.dht.peer_messages import (
    Firewall,
    HandshakeMessage,
    HolepunchInfo,
    HolepunchMessage,
    HolepunchPayload,
    Mode,
    NoisePayload,
    PayloadError,
    RelayInfo,
    RelayThrough,
    SecurePayload,
    UdxInfo,
    holepunch_secret,
    ik_initiator,
)
from peersockets.dht.records import NS_PEER_HANDSHAKE, Command
from peersockets.dht.server import DHTServer
from peersockets.errors import DecodeError
from peersockets.testing import DHTTestnet
from peersockets.udx import UDXSocket
from peersockets.wire.crypto import KeyPair, blake2b_256
from peersockets.wire.encoding import encode_uint
from peersockets.wire.noise import NoiseIK

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0
"""The longest any single wait here may take."""
SETTLE = 0.3
"""How long a test waits for answers that must not come (loopback answers in well under 10 ms)."""
CLEAR_WAIT = 0.2
"""HANDSHAKE_CLEAR_WAIT for tests that need slots to clear (10 s in the real thing)."""

GOOD_PAYLOAD = NoisePayload(udx=UdxInfo(7), secret_stream=1)
"""A firewalled client's message-1 payload (firewall UNKNOWN): a relayed server waits for it."""


# -- the attacker's socket ------------------------------------------------------------------


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket on 127.0.0.1 (an attacker, or a victim): sends crafted dht-rpc
    requests and keeps every datagram that arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[bytes, Address]] = []
        self._tid = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append((data, (str(addr[0]), int(addr[1]))))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, to: Address, command: int, target: bytes, value: bytes) -> int:
        """Send one request (a new tid each time); returns its tid."""
        assert self.transport is not None
        self._tid = self._tid % 0xFFFF + 1
        request = Request(self._tid, to, command, target=target, value=value)
        self.transport.sendto(request.encode(), to)
        return self._tid

    def messages(self) -> list[Request | Response]:
        """What arrived that decodes as dht-rpc."""
        out: list[Request | Response] = []
        for data, _source in self.received:
            with contextlib.suppress(DecodeError):
                out.append(decode(data))
        return out

    def answers(self) -> dict[int, Response]:
        """The responses that arrived, by tid."""
        return {m.tid: m for m in self.messages() if isinstance(m, Response)}


RawPeers = Callable[[], Awaitable[RawPeer]]


@pytest_asyncio.fixture
async def peers() -> AsyncIterator[RawPeers]:
    """Makes RawPeers, closed after the test."""
    made: list[RawPeer] = []

    async def make() -> RawPeer:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
        peer.transport = transport
        made.append(peer)
        return peer

    yield make
    for peer in made:
        if peer.transport is not None:
            peer.transport.close()


@pytest_asyncio.fixture
async def net() -> AsyncIterator[DHTTestnet]:
    async with DHTTestnet(5) as testnet:
        yield testnet


class CountingBinder:
    """A DHT's bind_socket that counts the UDP sockets it opens (the node's two, punchers)."""

    def __init__(self) -> None:
        self.sockets: list[UDXSocket] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> UDXSocket:
        sock = await UDXSocket.bind(*args, **kwargs)
        self.sockets.append(sock)
        return sock


# -- helpers --------------------------------------------------------------------------------


async def listen(dht: DHT, **options: Any) -> tuple[DHTServer, list[Connection]]:
    """A server on ``dht``'s default key pair, built as ``DHT.listen`` builds it (which does not
    take ``max_handshakes``); returns it and the connections it accepts."""
    accepted: list[Connection] = []
    server = DHTServer(dht, accepted.append, **options)
    dht._servers.add(server)  # as DHT.listen does: closing the DHT closes the server
    await server.listen(dht.default_key_pair)
    return server, accepted


def relays_of(server: DHTServer, dht: DHT) -> list[Address]:
    """The testnet nodes holding the server's announcement (they relay its handshakes)."""
    relays = [a for a in server.relay_addresses if a != dht.address]
    assert relays
    return relays


def message_one(
    server_key: bytes, payload: bytes | None = None, key_pair: KeyPair | None = None
) -> tuple[NoiseIK, bytes]:
    """An IK message 1 to ``server_key`` (a fresh ephemeral key each time), and its state."""
    ik = ik_initiator(key_pair or KeyPair.generate(), server_key)
    return ik, ik.write_message(GOOD_PAYLOAD.encode() if payload is None else payload)


def live_slots(server: DHTServer) -> int:
    return sum(1 for slot in server._slots if slot is not None)


def crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that mean an exception escaped where it should not: errors, tracebacks, a
    server that failed to answer, a request handler task that raised."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR
        or record.exc_info
        or "failed to answer" in record.getMessage()
        or record.getMessage().startswith("DHT maintenance:")
    ]


async def a_genuine_client_connects(net: DHTTestnet, server_key: bytes) -> Connection:
    """A real client (``DHT.connect``) gets an established connection to ``server_key``."""
    client = await net.client()
    connection = await client.connect(server_key, timeout=TIMEOUT)
    assert connection.is_established
    assert connection.remote_public_key == server_key
    return connection


# -- 1. forged handshakes -------------------------------------------------------------------


@pytest.mark.parametrize("route", ["direct", "relayed"])
async def test_forged_handshakes_are_refused_and_leak_nothing(
    net: DHTTestnet,
    peers: RawPeers,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Message 1 that does not decrypt, or decrypts to a payload the server cannot use: no
    connection, no UDX stream, the slot goes after the clear wait; version 2 and a payload
    without udx are answered with hyperdht's errors 2 and 1, the rest not at all."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(server_module, "HANDSHAKE_CLEAR_WAIT", CLEAR_WAIT)
    dht = await net.client()
    server, accepted = await listen(dht)
    key, target = server.public_key, server.target
    to = dht.address if route == "direct" else relays_of(server, dht)[0]
    streams = dict(dht.node.server.udx.streams) if dht.node.server else {}
    attacker = await peers()

    _ik, valid = message_one(key)
    wrong_key = ik_initiator(KeyPair.generate(), KeyPair.generate().public_key)
    unanswered = {
        "random bytes": os.urandom(len(valid)),
        "truncated to 40 bytes": valid[:40],
        "one byte short": valid[:-1],
        "encrypted to another key": wrong_key.write_message(GOOD_PAYLOAD.encode()),
        "payload that does not decode": message_one(key, b"\x01\x7f")[1],
        "empty payload": message_one(key, b"")[1],
        "no noise at all": b"",
    }
    version_2, version_2_noise = message_one(key, b"\x02")
    no_udx, no_udx_noise = message_one(key, NoisePayload(secret_stream=1).encode())
    answered = {
        "version 2": (version_2, version_2_noise, PayloadError.VERSION_MISMATCH),
        "no udx": (no_udx, no_udx_noise, PayloadError.ABORTED),
    }
    names: dict[int, str] = {}
    for name, noise in unanswered.items():
        value = HandshakeMessage(Mode.FROM_CLIENT, noise).encode()
        names[attacker.send(to, Command.PEER_HANDSHAKE, target, value)] = name
    for name, (_state, noise, _error) in answered.items():
        value = HandshakeMessage(Mode.FROM_CLIENT, noise).encode()
        names[attacker.send(to, Command.PEER_HANDSHAKE, target, value)] = name

    await wait_until(lambda: len(attacker.answers()) >= len(answered), TIMEOUT)
    await asyncio.sleep(SETTLE)  # room for an answer the forged ones must not get
    answers = attacker.answers()
    assert sorted(names[tid] for tid in answers) == sorted(answered)
    for tid, response in answers.items():
        state, _noise, error = answered[names[tid]]
        assert response.value is not None
        reply = HandshakeMessage.decode(response.value)
        assert reply.mode == Mode.REPLY
        assert (reply.peer_address is not None) == (route == "relayed")
        payload = NoisePayload.decode(state.read_message(reply.noise))
        assert payload.version == 1 and payload.error == error
        assert payload.udx is not None and payload.udx.id == 0  # no stream was made for it
    assert len(attacker.received) == len(answered)  # and nothing else reached the attacker

    assert not accepted and not server.accepts
    assert dht.node.server is not None and dht.node.server.udx.streams == streams
    assert live_slots(server) <= len(unanswered) - 1 + len(answered)  # "no noise" takes none
    await wait_until(lambda: not server._slots and not server._by_message, TIMEOUT)
    assert not crashes(caplog)

    connection = await a_genuine_client_connects(net, key)
    await wait_until(lambda: len(accepted) == 1, TIMEOUT)
    connection.close()


async def test_random_values_in_every_mode_do_not_upset_the_router(
    net: DHTTestnet, peers: RawPeers, caplog: pytest.LogCaptureFixture
) -> None:
    """Well-framed PEER_HANDSHAKE / PEER_HOLEPUNCH values with random modes, ids, noise, payloads
    and addresses, and plain junk values, to the server and to one of its relays: nothing
    escapes the router, nothing connects, and the server still serves."""
    caplog.set_level(logging.DEBUG)
    dht = await net.client()
    server, accepted = await listen(dht)
    target = server.target
    relay = relays_of(server, dht)[0]
    attacker, victim = await peers(), await peers()
    rng = os.urandom
    addresses: list[Address | None] = [None, attacker.address, victim.address, ("127.0.0.1", 0)]

    def pick(options: list[Address | None]) -> Address | None:
        return options[rng(1)[0] % len(options)]

    values: list[tuple[int, bytes]] = []
    for i in range(120):
        mode = rng(1)[0] % 7  # the five modes and two that do not exist
        if i % 3 == 0:
            values.append((Command.PEER_HANDSHAKE, rng(rng(1)[0] % 200)))
        elif i % 3 == 1:
            noise = rng(rng(1)[0] % 200)
            message = HandshakeMessage(mode, noise, pick(addresses), pick(addresses))
            values.append((Command.PEER_HANDSHAKE, message.encode()))
        else:
            slot = int.from_bytes(rng(2), "little") % 4
            holepunch = HolepunchMessage(mode, slot, rng(rng(1)[0] % 120), pick(addresses))
            values.append((Command.PEER_HOLEPUNCH, holepunch.encode()))
    for command, value in values:
        attacker.send(dht.address, command, target, value)
        attacker.send(relay, command, target, value)
    await asyncio.sleep(SETTLE)

    assert not accepted and not server.accepts
    assert not crashes(caplog)
    connection = await a_genuine_client_connects(net, server.public_key)
    connection.close()


# -- 2. a replayed message 1 ----------------------------------------------------------------


async def test_a_replayed_message_one_gets_one_slot_and_the_same_answer(
    net: DHTTestnet,
    peers: RawPeers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client's message 1, replayed by someone who has only its bytes, through two relays and
    then again (through a relay and straight to the server): one slot, the same message 2 each
    time, and the slot's UDX stream never connects (the replayer cannot read message 2, so it
    does not even learn the stream id); the slot times out, its stream goes, then the slot."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(server_module, "HANDSHAKE_INITIAL_TIMEOUT", 1.0)
    monkeypatch.setattr(server_module, "HANDSHAKE_CLEAR_WAIT", CLEAR_WAIT)
    dht = await net.client()
    server, accepted = await listen(dht)
    target = server.target
    relay_a, relay_b = relays_of(server, dht)[:2]
    assert dht.node.server is not None
    streams = dict(dht.node.server.udx.streams)
    _client_state, noise = message_one(server.public_key)  # the genuine client keeps the state
    replayer = await peers()
    value = HandshakeMessage(Mode.FROM_CLIENT, noise).encode()

    tids = [
        replayer.send(relay, Command.PEER_HANDSHAKE, target, value) for relay in (relay_a, relay_b)
    ]
    await wait_until(lambda: len(replayer.answers()) == 2, TIMEOUT)
    await asyncio.sleep(0.2)  # later, while the slot is still waiting for the client
    tids.append(replayer.send(relay_a, Command.PEER_HANDSHAKE, target, value))
    tids.append(replayer.send(dht.address, Command.PEER_HANDSHAKE, target, value))
    await wait_until(lambda: len(replayer.answers()) == 4, TIMEOUT)

    answers = replayer.answers()
    replies = [HandshakeMessage.decode(answers[tid].value or b"") for tid in tids]
    assert {reply.mode for reply in replies} == {Mode.REPLY}
    assert len({reply.noise for reply in replies}) == 1  # one message 2, however it is asked
    assert live_slots(server) == 1 and len(server._by_message) == 1
    slot = next(s for s in server._slots if s is not None)
    assert slot.stream is not None and not slot.stream.core.connected
    assert slot.connection is None
    assert len(dht.node.server.udx.streams) == len(streams) + 1

    # the server is open, so the slot has no holepunch secret: a holepunch for it is not answered
    holepunch = HolepunchMessage(Mode.FROM_RELAY, slot.id, os.urandom(64), replayer.address)
    replayer.send(dht.address, Command.PEER_HOLEPUNCH, target, holepunch.encode())

    await wait_until(lambda: not server._slots and not server._by_message, TIMEOUT)
    assert dht.node.server.udx.streams == streams
    assert not accepted and not server.accepts
    assert len(replayer.received) == 4  # only the four answers: no UDX packet, no holepunch reply
    assert not crashes(caplog)

    connection = await a_genuine_client_connects(net, server.public_key)
    await wait_until(lambda: len(accepted) == 1, TIMEOUT)
    connection.close()


# -- 3. max_handshakes ----------------------------------------------------------------------


async def test_a_flood_of_valid_handshakes_stops_at_max_handshakes(
    net: DHTTestnet,
    peers: RawPeers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """40 distinct valid messages 1 from one attacker key pair, posing as a relay: the first
    ``max_handshakes`` are answered, the rest are not (``server.refused``); slots, the dedupe
    table and UDX streams stay at the bound; once the slots clear a genuine client connects."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(server_module, "HANDSHAKE_INITIAL_TIMEOUT", 1.0)
    monkeypatch.setattr(server_module, "HANDSHAKE_CLEAR_WAIT", CLEAR_WAIT)
    bound, flood = 4, 40
    dht = await net.client()
    server, accepted = await listen(dht, max_handshakes=bound)
    assert dht.node.server is not None
    streams = dict(dht.node.server.udx.streams)
    attacker = await peers()
    attacker_key = KeyPair.generate()
    messages = [message_one(server.public_key, key_pair=attacker_key)[1] for _ in range(flood)]
    assert len(set(messages)) == flood

    for noise in messages:
        value = HandshakeMessage(Mode.FROM_RELAY, noise, attacker.address).encode()
        attacker.send(dht.address, Command.PEER_HANDSHAKE, server.target, value)
    await wait_until(lambda: server.refused == flood - bound, TIMEOUT)
    await asyncio.sleep(0.1)

    # a relay's answer is a FROM_SERVER request back to it, with the same tid
    answered = [m for m in attacker.messages() if isinstance(m, Request)]
    assert len(answered) == bound
    assert all(HandshakeMessage.decode(m.value or b"").mode == Mode.FROM_SERVER for m in answered)
    assert len(server._slots) == live_slots(server) == bound
    assert len(server._by_message) == bound
    assert len(dht.node.server.udx.streams) == len(streams) + bound
    assert not accepted and not server.accepts

    await wait_until(lambda: not server._slots and not server._by_message, TIMEOUT)
    assert dht.node.server.udx.streams == streams
    connection = await a_genuine_client_connects(net, server.public_key)
    await wait_until(lambda: len(accepted) == 1, TIMEOUT)
    assert server.refused == flood - bound
    assert not crashes(caplog)
    connection.close()


# -- 4. holepunch floods --------------------------------------------------------------------


async def test_holepunch_floods_get_no_answer_and_open_no_socket(
    net: DHTTestnet, peers: RawPeers, caplog: pytest.LogCaptureFixture
) -> None:
    """A firewalled server with one holepunch slot open (the attacker's own handshake): PEER_HOLEPUNCH
    for unknown and huge slot ids, and for the real slot with payloads that do not decrypt (random,
    too short, empty, sealed with another secret), through a relay, posing as a relay, and to the
    puncher socket: no reply, no socket opened, the slot's puncher untouched; a flood from one
    socket hits the node's rate limit; a genuine client still connects."""
    caplog.set_level(logging.DEBUG)
    binder = CountingBinder()
    dht = await net.client(quick_firewall=False, bind_socket=binder)
    server, accepted = await listen(dht)
    assert dht.node.remote_address() is None  # firewalled: clients are offered holepunching
    target = server.target
    relay = relays_of(server, dht)[0]
    attacker = await peers()

    state, noise = message_one(server.public_key)
    tid = attacker.send(
        relay, Command.PEER_HANDSHAKE, target, HandshakeMessage(Mode.FROM_CLIENT, noise).encode()
    )
    await wait_until(lambda: tid in attacker.answers(), TIMEOUT)
    reply = HandshakeMessage.decode(attacker.answers()[tid].value or b"")
    payload = NoisePayload.decode(state.read_message(reply.noise))
    assert payload.holepunch is not None and reply.peer_address is not None
    slot_id, puncher_address = payload.holepunch.id, reply.peer_address
    slot = server._slots[slot_id]
    assert slot is not None and slot.puncher is not None and slot.secure is not None
    sockets = len(binder.sockets)
    received = len(attacker.received)

    another_secret = SecurePayload(os.urandom(32))
    forged = another_secret.encrypt(HolepunchPayload(firewall=Firewall.CONSISTENT, punching=True))
    junk = [
        (slot_id + 1, forged),
        (MAX_SAFE_UINT, forged),
        (slot_id, os.urandom(100)),
        (slot_id, os.urandom(40)),  # a nonce and a MAC, nothing sealed
        (slot_id, b""),
        (slot_id, forged),
    ]
    for _ in range(3):
        for slot_number, sealed in junk:
            through_relay = HolepunchMessage(Mode.FROM_CLIENT, slot_number, sealed)
            attacker.send(relay, Command.PEER_HOLEPUNCH, target, through_relay.encode())
            as_relay = HolepunchMessage(Mode.FROM_RELAY, slot_number, sealed, attacker.address)
            attacker.send(dht.address, Command.PEER_HOLEPUNCH, target, as_relay.encode())
            attacker.send(puncher_address, Command.PEER_HOLEPUNCH, target, as_relay.encode())
    await asyncio.sleep(SETTLE)
    assert len(attacker.received) == received
    assert len(binder.sockets) == sockets
    assert not slot.puncher.destroyed and server._slots[slot_id] is slot

    refused = dht.node.limiter.refused
    flood = HolepunchMessage(Mode.FROM_RELAY, slot_id, os.urandom(64), attacker.address).encode()
    for _ in range(600):
        attacker.send(dht.address, Command.PEER_HOLEPUNCH, target, flood)
    # one source: its burst (2 x 100), the rest refused before any work
    await wait_until(lambda: dht.node.limiter.refused - refused >= 350, TIMEOUT)
    await asyncio.sleep(0.1)
    assert len(attacker.received) == received
    assert len(binder.sockets) == sockets
    assert not accepted and not server.accepts
    assert not crashes(caplog)

    connection = await a_genuine_client_connects(net, server.public_key)
    await wait_until(lambda: len(accepted) == 1, TIMEOUT)
    connection.close()


# -- 5. relay abuse -------------------------------------------------------------------------

RELAY_RATE = 5.0


@pytest.mark.parametrize(
    "command", [Command.PEER_HOLEPUNCH, Command.PEER_HANDSHAKE], ids=["holepunch", "handshake"]
)
async def test_a_relay_forwards_to_one_victim_at_most_at_its_relay_rate(
    peers: RawPeers, command: Command, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked to "relay this to the victim": FROM_CLIENT holepunches naming the victim as peer_address,
    handshakes naming it as relay_address. A persistent node forwards the burst (2 x
    relay_rate) and then relay_rate a second to that host; the rest are counted in
    ``router.refused``; the attacker gets nothing back."""
    caplog.set_level(logging.DEBUG)
    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False, relay_rate=RELAY_RATE) as relay:
        attacker, victim = await peers(), await peers()
        target = os.urandom(32)
        if command == Command.PEER_HOLEPUNCH:
            value = HolepunchMessage(Mode.FROM_CLIENT, 0, os.urandom(64), victim.address).encode()
        else:
            value = HandshakeMessage(
                Mode.FROM_CLIENT, os.urandom(100), None, victim.address
            ).encode()
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 100
        for _ in range(sent):
            attacker.send(relay.address, command, target, value)
        await wait_until(lambda: relay.router.refused + len(victim.received) >= sent, TIMEOUT)
        elapsed = loop.time() - started
        await asyncio.sleep(0.1)

        forwarded = len(victim.received)
        assert 2 * RELAY_RATE <= forwarded <= 2 * RELAY_RATE + RELAY_RATE * elapsed + 1
        assert relay.router.refused == sent - forwarded
        for message in (decode(data) for data, _source in victim.received):
            assert isinstance(message, Request) and message.command == command
            assert message.value is not None
            if command == Command.PEER_HOLEPUNCH:
                hop = HolepunchMessage.decode(message.value)
                assert (hop.mode, hop.peer_address) == (Mode.FROM_RELAY, attacker.address)
            else:
                handshake = HandshakeMessage.decode(message.value)
                assert (handshake.mode, handshake.peer_address) == (
                    Mode.FROM_RELAY,
                    attacker.address,
                )
        assert not attacker.received
        assert not crashes(caplog)


async def test_handshakes_naming_a_victim_open_at_most_max_handshakes_streams_to_it(
    net: DHTTestnet,
    peers: RawPeers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As in hyperdht, a client that says its firewall is OPEN is believed and the server's
    stream goes straight to the peer_address it names, unverified: an attacker sending
    handshakes itself, naming a victim, makes the server send UDX packets to the victim.
    That is bounded by ``max_handshakes``: past it, no stream; each stream lives until the
    secret-stream handshake gives up."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(server_module, "HANDSHAKE_CLEAR_WAIT", CLEAR_WAIT)
    bound, flood = 3, 20
    dht = await net.client()
    server, accepted = await listen(dht, max_handshakes=bound)
    attacker, victim = await peers(), await peers()
    attacker_key = KeyPair.generate()
    claims_open = NoisePayload(firewall=Firewall.OPEN, udx=UdxInfo(7), secret_stream=1).encode()
    for _ in range(flood):
        _state, noise = message_one(server.public_key, claims_open, attacker_key)
        value = HandshakeMessage(Mode.FROM_CLIENT, noise, victim.address).encode()
        attacker.send(dht.address, Command.PEER_HANDSHAKE, server.target, value)
    await wait_until(lambda: server.refused == flood - bound, TIMEOUT)
    await wait_until(lambda: len(victim.received) >= bound, TIMEOUT)
    await asyncio.sleep(SETTLE)

    assert len(accepted) == server.accepts["node"] == bound
    assert len(attacker.answers()) == bound
    assert {source for _data, source in victim.received} == {dht.address}
    assert not crashes(caplog)
    for connection in accepted:
        connection.abort()


# -- 6. relayThrough ------------------------------------------------------------------------


async def test_relay_through_in_a_client_payload_is_not_acted_upon(
    net: DHTTestnet,
    peers: RawPeers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Blind relays (hyperdht's relayThrough, pairing through a blind-relay node) are not
    implemented: a server reads the relay key and token in a client's payload and ignores them.
    It answers normally (no relayThrough of its own), connects to nobody else (no request
    towards the relay's key, no handshake or holepunch of its own, no new socket), and a
    client that sends relayThrough still connects."""
    caplog.set_level(logging.DEBUG)
    binder = CountingBinder()
    dht = await net.client(bind_socket=binder)
    server, accepted = await listen(dht)
    sockets = len(binder.sockets)
    relay_key = KeyPair.generate().public_key
    through = RelayThrough(relay_key, os.urandom(32))

    sent: list[tuple[bool, int, bytes | None]] = []
    send_request = dht.node._send_request

    def recording(
        address: Address, command: int, internal: bool, target: bytes | None, *args: Any
    ) -> Any:
        sent.append((internal, command, target))
        return send_request(address, command, internal, target, *args)

    monkeypatch.setattr(dht.node, "_send_request", recording)

    # a firewalled client (the case where hyperdht's server would pair through the relay)
    attacker = await peers()
    state, noise = message_one(
        server.public_key, dataclasses.replace(GOOD_PAYLOAD, relay_through=through).encode()
    )
    relay = relays_of(server, dht)[0]
    value = HandshakeMessage(Mode.FROM_CLIENT, noise).encode()
    tid = attacker.send(relay, Command.PEER_HANDSHAKE, server.target, value)
    await wait_until(lambda: tid in attacker.answers(), TIMEOUT)
    reply = HandshakeMessage.decode(attacker.answers()[tid].value or b"")
    payload = NoisePayload.decode(state.read_message(reply.noise))
    assert payload.error == PayloadError.NONE and payload.relay_through is None
    assert payload.udx is not None and payload.udx.id != 0

    # a genuine client whose message 1 carries relayThrough
    used: list[bool] = []

    class WithRelayThrough(NoiseIK):
        def write_message(self, payload: bytes) -> bytes:
            used.append(True)
            with_relay = dataclasses.replace(NoisePayload.decode(payload), relay_through=through)
            return super().write_message(with_relay.encode())

    def initiator(key_pair: KeyPair, remote: bytes, ephemeral: KeyPair | None = None) -> NoiseIK:
        return WithRelayThrough(True, key_pair, NS_PEER_HANDSHAKE, remote, ephemeral=ephemeral)

    monkeypatch.setattr(connect_module, "ik_initiator", initiator)
    connection = await a_genuine_client_connects(net, server.public_key)
    assert used
    await wait_until(lambda: len(accepted) == 1, TIMEOUT)

    relay_target = blake2b_256(relay_key)
    assert not [s for s in sent if s[2] in (relay_key, relay_target)]
    peer_commands = (Command.PEER_HANDSHAKE, Command.PEER_HOLEPUNCH)
    assert not [s for s in sent if not s[0] and s[1] in peer_commands]
    assert len(binder.sockets) == sockets
    assert not crashes(caplog)
    connection.close()


# -- 7. the decoders on arbitrary bytes, and round trips ------------------------------------

DECODERS: dict[str, Callable[[bytes], object]] = {
    "handshake": HandshakeMessage.decode,
    "holepunch": HolepunchMessage.decode,
    "noise payload": NoisePayload.decode,
    "holepunch payload": HolepunchPayload.decode,
}

uints = st.one_of(st.integers(0, 300), st.integers(0, MAX_SAFE_UINT))
hosts = st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts)))
addresses = st.tuples(hosts, st.integers(0, 65535))
address_lists = st.lists(addresses, max_size=4).map(tuple)
keys = st.binary(min_size=32, max_size=32)

handshakes = st.builds(
    HandshakeMessage,
    mode=uints,
    noise=st.binary(max_size=200),
    peer_address=st.none() | addresses,
    relay_address=st.none() | addresses,
)
holepunches = st.builds(
    HolepunchMessage,
    mode=uints,
    id=uints,
    payload=st.binary(max_size=200),
    peer_address=st.none() | addresses,
)
noise_payloads = st.builds(
    NoisePayload,
    version=st.just(1),
    error=uints,
    firewall=uints,
    holepunch=st.none()
    | st.builds(
        HolepunchInfo,
        uints,
        st.lists(st.builds(RelayInfo, addresses, addresses), max_size=3).map(tuple),
    ),
    addresses4=address_lists,
    addresses6=st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.integers(0, 65535)), max_size=3
    ).map(tuple),
    udx=st.none() | st.builds(UdxInfo, uints, st.booleans(), uints, st.just(1)),
    secret_stream=st.none() | st.just(1),
    relay_through=st.none() | st.builds(RelayThrough, keys, keys, st.just(1)),
    relay_addresses=st.none() | address_lists,
)
holepunch_payloads = st.builds(
    HolepunchPayload,
    error=uints,
    firewall=uints,
    round=uints,
    connected=st.booleans(),
    punching=st.booleans(),
    addresses=st.none() | address_lists,
    remote_address=st.none() | addresses,
    token=st.none() | keys,
    remote_token=st.none() | keys,
)
any_value = st.one_of(handshakes, holepunches, noise_payloads, holepunch_payloads)


def decode_or_refuse(decoder: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # the one way to refuse; anything else fails
        decoder(data)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes_return_a_value_or_raise_decode_error(
    name: str, data: bytes
) -> None:
    decode_or_refuse(DECODERS[name], data)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(DECODERS)),
    value=any_value,
    cut=st.integers(0, 400),
    flip=st.tuples(st.integers(0, 400), st.integers(1, 255)),
)
def test_decoders_on_damaged_encodings_return_a_value_or_raise_decode_error(
    name: str, value: Any, cut: int, flip: tuple[int, int]
) -> None:
    """Valid encodings of every kind, truncated or with one byte changed, to every decoder:
    arbitrary bytes rarely get past the first fields, these do."""
    data = value.encode()
    decode_or_refuse(DECODERS[name], data[: cut % (len(data) + 1)])
    damaged = bytearray(data)
    if damaged:
        damaged[flip[0] % len(damaged)] ^= flip[1]
    decode_or_refuse(DECODERS[name], bytes(damaged))


@settings(max_examples=300, deadline=None)
@given(value=any_value, trailing=st.binary(max_size=8))
def test_valid_values_round_trip(value: Any, trailing: bytes) -> None:
    """encode then decode gives the value back, trailing bytes ignored (as hyperdht's decoders)."""
    encoded = value.encode()
    assert type(value).decode(encoded) == value
    assert type(value).decode(encoded + trailing) == value


@settings(max_examples=100, deadline=None)
@given(version=st.integers(0, MAX_SAFE_UINT).filter(lambda v: v != 1), rest=st.binary(max_size=50))
def test_a_noise_payload_of_another_version_is_that_version_and_nothing_else(
    version: int, rest: bytes
) -> None:
    """What the server answers with error 2 (VERSION_MISMATCH): hyperdht reads only the version."""
    assert NoisePayload.decode(encode_uint(version) + rest) == NoisePayload(version=version)


@settings(max_examples=100, deadline=None)
@given(payload=holepunch_payloads, data=st.binary(max_size=120))
def test_sealed_holepunch_payloads_open_only_with_their_secret(
    payload: HolepunchPayload, data: bytes
) -> None:
    secret = SecurePayload(os.urandom(32))
    sealed = secret.encrypt(payload)
    assert secret.decrypt(sealed) == payload
    assert SecurePayload(os.urandom(32)).decrypt(sealed) is None
    assert secret.decrypt(data) is None  # forged: fails authentication, or is too short


# -- bounds added after this file found them missing -----------------------------------------


@pytest.mark.parametrize("command", [Command.PEER_HOLEPUNCH, Command.PEER_HANDSHAKE], ids=["holepunch", "handshake"])
async def test_a_request_too_large_to_relay_is_dropped_not_raised(
    peers: RawPeers, command: Command, caplog: pytest.LogCaptureFixture
) -> None:
    """A FROM_CLIENT request that fits in a datagram but not once relayed (the relay adds its
    32-byte id and the 6-byte client address): dropped, not raised into UDXSocket._on_readable."""
    caplog.set_level(logging.DEBUG)
    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False) as relay:
        attacker, victim = await peers(), await peers()
        target = os.urandom(32)
        for size in range(1940, 1990):  # requests of 1998..2047 bytes
            if command == Command.PEER_HOLEPUNCH:
                value = HolepunchMessage(Mode.FROM_CLIENT, 0, b"x" * size, victim.address).encode()
            else:
                value = HandshakeMessage(Mode.FROM_CLIENT, b"x" * size, None, victim.address).encode()
            attacker.send(relay.address, command, target, value)
        await asyncio.sleep(SETTLE)
        assert not crashes(caplog)


@pytest.mark.parametrize("command", [Command.PEER_HOLEPUNCH, Command.PEER_HANDSHAKE], ids=["holepunch", "handshake"])
async def test_from_server_hops_to_a_chosen_peer_address_are_bounded_by_the_relay_rate(
    peers: RawPeers, command: Command
) -> None:
    """FROM_SERVER makes any node send a REPLY to the message's peer_address: a message to a
    third party the requester chose, which counts against relay_rate like relays."""
    async with DHT(bootstrap=[], host="127.0.0.1", ephemeral=False, relay_rate=RELAY_RATE) as node:
        attacker, victim = await peers(), await peers()
        target = os.urandom(32)
        if command == Command.PEER_HOLEPUNCH:
            value = HolepunchMessage(Mode.FROM_SERVER, 0, os.urandom(64), victim.address).encode()
        else:
            value = HandshakeMessage(Mode.FROM_SERVER, os.urandom(100), victim.address).encode()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(100):
            attacker.send(node.address, command, target, value)
        await asyncio.sleep(SETTLE)
        elapsed = loop.time() - started
        assert len(victim.received) <= 2 * RELAY_RATE + RELAY_RATE * elapsed + 1


async def test_a_server_answers_a_chosen_relay_address_at_most_at_the_relay_rate(
    net: DHTTestnet, peers: RawPeers
) -> None:
    """FROM_SECOND_RELAY with relay_address = victim, one valid message 1 replayed: the server's
    (cached) message 2 goes to the victim at most at relay_rate."""
    dht = await net.client(relay_rate=RELAY_RATE)
    server, _accepted = await listen(dht)
    attacker, victim = await peers(), await peers()
    _state, noise = message_one(server.public_key)
    value = HandshakeMessage(Mode.FROM_SECOND_RELAY, noise, attacker.address, victim.address).encode()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(100):
        attacker.send(dht.address, Command.PEER_HANDSHAKE, server.target, value)
    await asyncio.sleep(SETTLE)
    elapsed = loop.time() - started
    assert 0 < len(victim.received) <= 2 * RELAY_RATE + RELAY_RATE * elapsed + 1


async def test_handshakes_that_do_not_decrypt_take_no_slot(net: DHTTestnet, peers: RawPeers) -> None:
    dht = await net.client()
    server, _accepted = await listen(dht, max_handshakes=4)
    attacker = await peers()
    for _ in range(4):
        value = HandshakeMessage(Mode.FROM_CLIENT, os.urandom(120)).encode()
        attacker.send(dht.address, Command.PEER_HANDSHAKE, server.target, value)
    await asyncio.sleep(SETTLE)
    assert sum(1 for s in server._slots if s is not None) == 0
    assert not server._by_message  # and nothing remembered of them
    client = await net.client()
    connection = await client.connect(server.public_key, timeout=3.0)
    connection.close()


async def test_a_slot_whose_punch_fails_is_freed(net: DHTTestnet, peers: RawPeers, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that handshake, say they punch, and never arrive (a dead address): when the
    server's punching gives up, the slot, its stream and its puncher go; nothing stays behind."""
    from peersockets.dht import holepunch as holepunch_module

    monkeypatch.setattr(holepunch_module, "CONSISTENT_ROUNDS", 2)
    monkeypatch.setattr(holepunch_module, "ROUND_INTERVAL", 0.1)
    monkeypatch.setattr(server_module, "HANDSHAKE_CLEAR_WAIT", 0.2)
    dht = await net.client(quick_firewall=False)  # firewalled: the server punches
    server, _accepted = await listen(dht)
    streams_before = len(dht.node.server.udx.streams) if dht.node.server else 0
    relay = next(a for a in server.relay_addresses if a != dht.address)
    attacker = await peers()
    for _ in range(3):
        ik, noise = message_one(server.public_key)
        tid = attacker.send(relay, Command.PEER_HANDSHAKE, server.target, HandshakeMessage(Mode.FROM_CLIENT, noise).encode())
        await wait_until(lambda tid=tid: tid in attacker.answers())  # type: ignore[misc]
        answer = attacker.answers()[tid]
        assert answer.value is not None
        reply = HandshakeMessage.decode(answer.value)
        payload = NoisePayload.decode(ik.read_message(reply.noise))
        assert payload.holepunch is not None
        secure = SecurePayload(holepunch_secret(ik.result()))
        punching = HolepunchPayload(firewall=Firewall.CONSISTENT, punching=True, addresses=(("127.0.0.1", 9),))
        value = HolepunchMessage(Mode.FROM_CLIENT, payload.holepunch.id, secure.encrypt(punching), reply.peer_address)
        tid = attacker.send(relay, Command.PEER_HOLEPUNCH, server.target, value.encode())
        await wait_until(lambda tid=tid: tid in attacker.answers())  # type: ignore[misc]
    assert sum(1 for s in server._slots if s is not None) == 3
    await wait_until(lambda: not any(server._slots) and not server._by_message, timeout=10)
    assert dht.node.server is not None and len(dht.node.server.udx.streams) == streams_before
