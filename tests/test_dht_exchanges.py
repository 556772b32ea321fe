"""Our DHT node answers what the real JavaScript node answered, byte for byte.

``tests/vectors/dht.json`` ``rpc_messages.exchanges`` holds scenarios that
``tests/interop/js/dht_vectors.mjs`` ran on an in-memory network of real
dht-rpc 6.27.0 ``IO`` objects, answered by dht-rpc's ``DHT._onrequest`` and
hyperdht 6.34.0's ``onrequest`` / ``Persistent``. Every datagram was recorded
with its sender and receiver. Here each responder of the recording is rebuilt
as one of our ``DHT`` nodes in the same state:

- ``B``: persistent (it stores), id = H(127.0.0.1:49738), token secrets
  b0..b0 / b1..b1, routing table 127.0.0.1:49739 (P), 127.0.0.1:49740,
  127.0.0.1:49741 and 10.0.0.1:49737.
- ``E``: ephemeral, not firewalled, table id ee..ee (the script's ``tableId``),
  token secrets e0..e0 / e1..e1, routing table B and P.

Our nodes are bound to ephemeral ports on 127.0.0.1 (a fixed port could be
taken), and given the identity they would have at the recorded address: B's
id is H(its recorded address), which is what makes the recorded ANNOUNCE and
UNANNOUNCE signatures (signed over B's id and B's token) verify. The node's
id, table and ``tokens`` are set after ``open()``, as there is no option for
them. A reply's ``to`` is the requester's address as the responder saw it,
which is the recorded source we feed, so no byte of a reply depends on our
real port: every reply is compared with the recording byte for byte, with
nothing substituted.

The scenarios are replayed once, in the recorded order, against the same two
nodes (later ones depend on what earlier ones stored: lookup_found on
announce, find_peer on self_announce, mutable_get on mutable_put, ...). Every
request the recording shows arriving at B or E is fed to the node's datagram
handler for the socket it arrived on; whatever the node sends (captured at
its sockets' ``send``, nothing goes on the wire) is that scenario's answer.

Not covered (connecting by public key is issue 14, not implemented):
``peer_handshake_no_forward``, ``peer_handshake`` and ``peer_holepunch``
(hyperdht's Router relaying PEER_HANDSHAKE / PEER_HOLEPUNCH). They are not
fed to B; nothing they do in JS changes what B stores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peersockets.dht import DHT
from peersockets.dht import messages as m
from peersockets.dht.node import RPCNode
from peersockets.dht.routing import Node, RoutingTable
from peersockets.dht.tokens import Tokens

RPC = json.loads((Path(__file__).parent / "vectors" / "dht.json").read_text(encoding="utf-8"))[
    "rpc_messages"
]
EXCHANGES: dict[str, dict[str, Any]] = {e["name"]: e for e in RPC["exchanges"]}
NODES: dict[str, dict[str, Any]] = {n["name"]: n for n in RPC["nodes"]}

NOT_COVERED = ("peer_handshake_no_forward", "peer_handshake", "peer_holepunch")
"""PEER_HANDSHAKE / PEER_HOLEPUNCH routing: connect is issue 14, not implemented (see the docstring)."""
COVERED = tuple(name for name in EXCHANGES if name not in NOT_COVERED)

RESPONDERS = ("B", "E")
TABLE_IDS = {"E": bytes([0xEE]) * 32}
"""An ephemeral node's table id (dht_vectors.mjs: ``tableId: fill(32, 0xee)``); B's is H(its address)."""
DOWN_HINT_TID = 0x7000
"""The script sets ``B.io._tid = 0x7000`` before down_hint_known: the tid of B's check PING."""
DELAYED_PING_WAIT = 0.08
"""The script waits 80 ms after a DELAYED_PING (for the 30 ms one's reply)."""
QUIET_ATTEMPT_TIMEOUT = 60.0
"""B's own PING (down_hint_known) is never answered: it must not be resent during the replay
(the script stops its retry timers, ``MemNet.quiet``)."""

XFAIL: dict[str, str] = {}
"""Scenarios where our node answers differently from JS: name -> the difference."""


def _address(text: str) -> m.Address:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _node_name(label: str | None) -> str | None:
    return None if label is None else label.split(".")[0]


@dataclass
class Sent:
    """One datagram one of our nodes sent: from which socket ("B.server"), where, when."""

    label: str
    to: str
    data: bytes
    at: float


@dataclass
class Outcome:
    """What our nodes did during one scenario."""

    sent: list[Sent] = field(default_factory=list)
    fed_at: list[float] = field(default_factory=list)
    """Loop time at which each request was fed, in order."""
    scheduled_replies: list[float] = field(default_factory=list)
    """Delays (s) of the replies a node scheduled with call_later (DELAYED_PING)."""


class _LoopSpy:
    """The node's event loop, noting the replies it schedules for later (DELAYED_PING), so
    that a reply due after the test ends (10 s) is seen without waiting for it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, node: RPCNode, scheduled: Callable[[float], None]
    ) -> None:
        self._loop = loop
        self._node = node
        self._scheduled = scheduled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle:
        if callback == self._node._delayed_reply:
            self._scheduled(delay)
        return self._loop.call_later(delay, callback, *args)


class Replay:
    """B and E as our nodes, their sends captured."""

    def __init__(self) -> None:
        self.dhts: dict[str, DHT] = {}
        self.current = Outcome()

    async def open(self) -> None:
        for name in RESPONDERS:
            self.dhts[name] = await self._responder(name)

    async def close(self) -> None:
        for dht in self.dhts.values():
            await dht.close()

    async def _responder(self, name: str) -> DHT:
        info = NODES[name]
        persistent = info["persistent"]
        dht = DHT(
            bootstrap=[],
            host="127.0.0.1",
            port=0,
            ephemeral=not persistent,
            attempt_timeout=QUIET_ATTEMPT_TIMEOUT,
        )
        await dht.open()
        node = dht.node
        assert node.persistent is persistent
        if persistent:
            identity = bytes.fromhex(info["id"])
            assert m.node_id(_address(info["server"])) == identity, (
                "B's id is H(its recorded address)"
            )
        else:
            identity = TABLE_IDS[name]
        node.id = identity
        node.table = RoutingTable(identity)
        for text in info["table"]:
            host, port = _address(text)
            node.table.add(Node(m.node_id((host, port)), host, port))
        assert [f"{n.host}:{n.port}" for n in node.table.to_list()] == info["table"], (
            "JS's toArray order"
        )
        secrets = iter(bytes.fromhex(s) for s in info["secrets"])
        node.tokens = Tokens(lambda _size: next(secrets))
        assert node.tokens.secrets == tuple(bytes.fromhex(s) for s in info["secrets"])
        loop = asyncio.get_running_loop()
        spy = _LoopSpy(loop, node, lambda delay: self.current.scheduled_replies.append(delay))
        node._loop = spy  # type: ignore[assignment]
        for role in ("server", "client"):
            sock = getattr(node, role)
            sock.send = self._recorder(f"{name}.{role}", loop)  # nothing goes on the wire
        return dht

    def _recorder(
        self, label: str, loop: asyncio.AbstractEventLoop
    ) -> Callable[[bytes, m.Address], None]:
        def send(datagram: bytes, address: m.Address) -> None:
            self.current.sent.append(
                Sent(label, f"{address[0]}:{address[1]}", bytes(datagram), loop.time())
            )

        return send

    async def run(self, exchange: dict[str, Any]) -> Outcome:
        self.current = outcome = Outcome()
        loop = asyncio.get_running_loop()
        if exchange["name"] == "down_hint_known":
            self.dhts["B"].node._requests._next_tid = DOWN_HINT_TID
        for datagram in exchange["datagrams"]:
            if (
                _node_name(datagram["from"]) in RESPONDERS
                or _node_name(datagram["to"]) not in RESPONDERS
            ):
                continue  # what a responder sent is the expected answer; what went elsewhere is not ours
            name, role = datagram["to"].split(".")
            node = self.dhts[name].node
            outcome.fed_at.append(loop.time())
            receive = node._on_server_datagram if role == "server" else node._on_client_datagram
            receive(bytes.fromhex(datagram["hex"]), _address(datagram["from_addr"]))
            for _ in range(5):  # background work (B's check of a hinted node) gets to send
                await asyncio.sleep(0)
            decoded = datagram["decoded"]
            if decoded["internal"] and decoded["command"] == m.InternalCommand.DELAYED_PING:
                await asyncio.sleep(DELAYED_PING_WAIT)
        return outcome


async def _replay_all() -> dict[str, Outcome]:
    replay = Replay()
    try:
        await replay.open()
        return {name: await replay.run(EXCHANGES[name]) for name in COVERED}
    finally:
        await replay.close()


@pytest.fixture(scope="module")
def replayed() -> dict[str, Outcome]:
    return asyncio.run(_replay_all())


def _expected(name: str) -> list[dict[str, Any]]:
    return [d for d in EXCHANGES[name]["datagrams"] if _node_name(d["from"]) in RESPONDERS]


def _by_destination(datagrams: Iterator[tuple[str, str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    """Datagrams per destination, in the order they were sent there. Only down_hint_known
    sends to two places: JS sends its check PING to the hinted node before its reply to the
    requester (dht-rpc index.js ``_onrequest``: ``this._check(node)``, then ``req.sendReply``),
    we after (node.py ``_on_internal`` replies, then starts ``_down_check`` as a task); two
    datagrams to different hosts have no order on the wire."""
    grouped: dict[str, list[tuple[str, Any]]] = {}
    for label, to, what in datagrams:
        grouped.setdefault(to, []).append((label, what))
    return grouped


def _decoded(data: bytes) -> m.Request | m.Response:
    return m.decode(data)


def test_every_scenario_is_replayed_or_listed() -> None:
    assert len(EXCHANGES) == 33
    assert set(NOT_COVERED) <= set(EXCHANGES)
    assert len(COVERED) == 30


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n])) if n in XFAIL else n
        for n in COVERED
    ],
)
def test_exchange(name: str, replayed: dict[str, Outcome]) -> None:
    expected = _expected(name)
    got = replayed[name].sent
    # Decoded first (a readable difference), then the bytes.
    assert _by_destination((s.label, s.to, _decoded(s.data)) for s in got) == _by_destination(
        (d["from"], d["to_addr"], _decoded(bytes.fromhex(d["hex"]))) for d in expected
    ), EXCHANGES[name]["what"]
    assert _by_destination((s.label, s.to, s.data.hex()) for s in got) == _by_destination(
        (d["from"], d["to_addr"], d["hex"]) for d in expected
    ), EXCHANGES[name]["what"]


def test_delayed_ping_answers_late_or_never(replayed: dict[str, Outcome]) -> None:
    """DELAYED_PING 30 ms: the reply is scheduled 30 ms out and leaves no earlier; 10001 ms
    (above dht-rpc's maxPingDelay, 10 s) is never answered: nothing is scheduled for it."""
    outcome = replayed["delayed_ping"]
    assert outcome.scheduled_replies == [0.03]
    (reply,) = outcome.sent
    assert reply.at - outcome.fed_at[0] >= 0.03 - 1e-6


def test_ping_nat_reply_goes_to_the_asked_port(replayed: dict[str, Outcome]) -> None:
    """Also in test_exchange; spelled out: PING_NAT's reply goes to the port it asked for."""
    (reply,) = replayed["ping_nat"].sent
    assert reply.to == "127.0.0.1:50100"
    decoded = _decoded(reply.data)
    assert isinstance(decoded, m.Response) and decoded.to == ("127.0.0.1", 50100)
