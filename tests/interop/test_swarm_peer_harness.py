"""Checks of tests/interop/js/swarm_peer.mjs on its own: hyperdrive apps that join
their drives' swarms with hyperswarm on a JavaScript testnet (dht_peer.mjs
--testnet), with no Python peer involved. If these fail, tests that put a Python
swarm next to swarm_peer.mjs cannot be trusted.

What hyperswarm does here, on 127.0.0.1:

- the peers meet by the drive's discovery key alone, well under a second after
  both joined: the one that joins second finds the first one's announcement and
  dials it (``client``: true on its side); a peer that joined first found
  nobody at its own lookup, so it accepts (``client``: false);
- ``swarm.leave`` only stops announcing and looking up: the connection stays and
  the drive goes on replicating over it (messages still arrive);
- ``leave`` with ``disconnect`` on the side that dialled drops the connection and
  nobody dials again (the accepting side does not retry a connection it did not
  make, and it looked up only once, at its own join); ``join`` makes the leaver
  look up again, find the other and dial it, so they meet again;
- a topic is looked up once per join: ``join`` on a joined topic looks up anew
  (the way out when two peers joined at the same moment and missed each other).

The testnet has five nodes: on one of one to three hyperdht nodes, the first
connection mostly opens on the dialling side only and is redialled ~15 s later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .conftest import StartPeer
from .jspeer import JsPeer, close_all

pytestmark = pytest.mark.timeout(120)

SCRIPT = "swarm_peer.mjs"
START_TIMEOUT = 30.0
"""The testnet and a peer's ready/joined (one DHT bootstrap and announce)."""
MEET_TIMEOUT = 20.0
"""Two joined peers see each other's connection and drive channel within this."""
OP_TIMEOUT = 10.0
QUIET = 2.5
"""How long a dropped peer is watched for not coming back (hyperswarm retries after ~1-1.5 s)."""


@pytest_asyncio.fixture
async def testnet(js: StartPeer) -> str:
    net = await js("dht_peer.mjs", "--testnet", "5")
    info = await net.expect("testnet", timeout=START_TIMEOUT)
    first = info["bootstrap"][0]
    return f"{first['host']}:{first['port']}"


@dataclass
class SwarmPeer:
    peer: JsPeer
    ready: dict[str, Any]

    @property
    def public_key(self) -> str:
        key: str = self.ready["public_key"]
        return key

    @property
    def key(self) -> str:
        key: str = self.ready["key"]
        return key

    @property
    def discovery_key(self) -> str:
        key: str = self.ready["discovery_key"]
        return key


class Net:
    """Starts swarm_peer.mjs processes on the testnet, each with its own storage folder."""

    def __init__(self, js: StartPeer, testnet: str, tmp_path: Path) -> None:
        self.js = js
        self.testnet = testnet
        self.tmp_path = tmp_path
        self.peers: list[JsPeer] = []

    async def start(self, name: str, *args: str) -> SwarmPeer:
        storage = self.tmp_path / name
        peer = await self.js(SCRIPT, "--storage", str(storage), "--bootstrap", self.testnet, *args)
        self.peers.append(peer)
        ready = await peer.expect("ready", timeout=START_TIMEOUT)
        assert len(bytes.fromhex(ready["public_key"])) == 32
        return SwarmPeer(peer, ready)


@pytest_asyncio.fixture
async def net(js: StartPeer, testnet: str, tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(js, testnet, tmp_path)
    try:
        yield n
    finally:
        # before the testnet goes: swarm.destroy() unannounces from it
        await close_all(n.peers)
        for peer in n.peers:
            assert peer.returncode == 0, peer.stderr


async def joined(p: SwarmPeer, drive: str | None = None) -> None:
    got = await p.peer.expect("joined", timeout=START_TIMEOUT, drive=drive or p.key)
    assert got["discovery_key"] in {d["discovery_key"] for d in p.ready["drives"]}


async def do(p: SwarmPeer, event: str, **cmd: Any) -> dict[str, Any]:
    """Send a command; its answer ``event`` (a cmd-error fails the test)."""
    await p.peer.send(cmd)
    got: dict[str, Any] = await p.peer.arrivals.expect(
        lambda e: e if e.get("event") in (event, "cmd-error") else None,
        f"event {event!r} (or cmd-error) for {cmd}",
        START_TIMEOUT,
    )
    if got["event"] == "cmd-error":
        raise AssertionError(f"{SCRIPT} failed {cmd}: {got['message']}\n{p.peer.stderr}")
    return got


async def meet(a: SwarmPeer, b: SwarmPeer, drive: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """a and b connect and open ``drive``'s channel; the connection events (same stream)."""
    ca = await a.peer.expect("connection", timeout=MEET_TIMEOUT, remote_public_key=b.public_key)
    cb = await b.peer.expect("connection", timeout=MEET_TIMEOUT, remote_public_key=a.public_key)
    await a.peer.expect(
        "peer-add", timeout=MEET_TIMEOUT, remote_public_key=b.public_key, drive=drive
    )
    await b.peer.expect(
        "peer-add", timeout=MEET_TIMEOUT, remote_public_key=a.public_key, drive=drive
    )
    # hyperswarm keeps one connection per peer; a duplicate (both dialled at once) is
    # dropped at once, so the live pair is the last connection each side reported
    ca = a.peer.seen("connection", remote_public_key=b.public_key)[-1]
    cb = b.peer.seen("connection", remote_public_key=a.public_key)[-1]
    assert ca["handshake_hash"] == cb["handshake_hash"]
    assert ca["initiator"] != cb["initiator"]
    assert ca["client"] != cb["client"]
    for c in (ca, cb):
        assert c["remote_host"] == "127.0.0.1"
        assert c["socket"] in ("client", "server", "puncher")
    dialler = ca if ca["client"] else cb
    assert dialler["initiator"] is True
    return ca, cb


async def say(src: SwarmPeer, dst: SwarmPeer, text: str, drive: str | None = None) -> None:
    cmd: dict[str, Any] = {"cmd": "send_text", "topic": "chat", "text": text}
    if drive is not None:
        cmd["drive"] = drive
    sent = await do(src, "sent", **cmd)
    assert sent["peers"] >= 1
    got = await dst.peer.expect("ext", timeout=OP_TIMEOUT, topic="chat", text=text)
    assert got["from"] == src.public_key
    assert got["drive"] == (drive or src.key)
    assert got["length"] == len(text.encode())


async def test_two_peers_of_a_drive_meet_leave_and_meet_again(net: Net) -> None:
    owner = await net.start("owner", "--print-text")
    assert owner.ready["writable"] is True
    await joined(owner)
    reader = await net.start("reader", "--key", owner.key, "--print-text")
    assert reader.ready["writable"] is False
    assert reader.discovery_key == owner.discovery_key
    assert reader.ready["drives"] == owner.ready["drives"]
    await joined(reader)

    c_owner, c_reader = await meet(owner, reader, owner.key)
    assert c_reader["client"] is True, "the later peer finds the first one's announcement"
    assert c_reader["topics"] == [owner.discovery_key]
    await say(owner, reader, "hello reader")
    await say(reader, owner, "hello owner ✓")

    dialler, accepter = (owner, reader) if c_owner["client"] else (reader, owner)

    # a plain leave: no longer announced or looked up, but the connection stays
    left = await do(accepter, "left", cmd="leave", discovery_key=owner.discovery_key)
    assert left["disconnected"] == 0 and left["connections"] == 1
    await say(dialler, accepter, "still here after a plain leave")
    await do(accepter, "joined", cmd="join", discovery_key=owner.discovery_key)

    # leave and drop the connection, on the side that dialled: the other sees it go
    left = await do(
        dialler, "left", cmd="leave", discovery_key=owner.discovery_key, disconnect=True
    )
    assert left["disconnected"] == 1 and left["connections"] == 0
    await accepter.peer.expect(
        "connection-close", timeout=OP_TIMEOUT, remote_public_key=dialler.public_key
    )
    await accepter.peer.expect(
        "peer-remove", timeout=OP_TIMEOUT, remote_public_key=dialler.public_key, drive=owner.key
    )
    await dialler.peer.expect("peer-remove", timeout=OP_TIMEOUT, drive=owner.key)
    before = len(accepter.peer.seen("connection")), len(dialler.peer.seen("connection"))
    await asyncio.sleep(QUIET)
    after = len(accepter.peer.seen("connection")), len(dialler.peer.seen("connection"))
    assert after == before, "nobody dials while the dialler is away"

    # join again: a new lookup finds the other, and they meet again on a new stream
    await do(dialler, "joined", cmd="join", discovery_key=owner.discovery_key)
    c2_owner, _ = await meet(owner, reader, owner.key)
    assert c2_owner["handshake_hash"] != c_owner["handshake_hash"]
    await say(owner, reader, "welcome back")
    await say(reader, owner, "thanks")
    flushed = await do(reader, "flushed", cmd="flush")
    assert flushed["connections"] == 1

    # one side exits: the other sees the connection and the channel go
    await owner.peer.close()
    assert owner.peer.returncode == 0, owner.peer.stderr
    await reader.peer.expect(
        "connection-close", timeout=OP_TIMEOUT, remote_public_key=owner.public_key
    )
    await reader.peer.expect("peer-remove", timeout=OP_TIMEOUT, remote_public_key=owner.public_key)
    for p in (owner, reader):
        assert not p.peer.seen("cmd-error") and not p.peer.seen("error")


async def test_a_peer_of_two_more_drives_meets_the_peers_of_both(net: Net) -> None:
    one = await net.start("one", "--print-text")
    two = await net.start("two", "--print-text")
    await asyncio.gather(joined(one), joined(two))
    both = await net.start(
        "both",
        "--drive-key",
        one.key,
        "--drive-key",
        two.key,
        "--print-text",
    )
    drives = both.ready["drives"]
    assert [d["key"] for d in drives] == [both.key, one.key, two.key]
    assert drives[1]["discovery_key"] == one.discovery_key
    assert drives[2]["discovery_key"] == two.discovery_key
    for d in drives:
        await joined(both, d["key"])

    await meet(both, one, one.key)
    await meet(both, two, two.key)
    # each owner shares only its own drive with the peer of both
    assert not both.peer.seen("peer-add", remote_public_key=one.public_key, drive=two.key)
    assert not both.peer.seen("peer-add", remote_public_key=two.public_key, drive=one.key)
    assert not one.peer.seen("connection", remote_public_key=two.public_key)

    await say(both, one, "to one", drive=one.key)
    await say(both, two, "to two", drive=two.key)
    await say(one, both, "from one")
    await say(two, both, "from two")
    # a message on one drive reaches that drive's peers only
    sent = await do(both, "sent", cmd="send_text", topic="chat", text="only two", drive=two.key)
    assert sent["peers"] == 1
    await two.peer.expect("ext", timeout=OP_TIMEOUT, text="only two")
    assert not one.peer.seen("ext", text="only two")

    # leaving one drive's topic (and dropping its peers) leaves the other drive alone
    c_one = both.peer.seen("connection", remote_public_key=one.public_key)[-1]
    assert c_one["client"] is True, "the later peer dials"
    left = await do(both, "left", cmd="leave", discovery_key=one.discovery_key, disconnect=True)
    assert left["disconnected"] == 1 and left["connections"] == 1
    await one.peer.expect("peer-remove", timeout=OP_TIMEOUT, remote_public_key=both.public_key)
    await say(both, two, "two is still there", drive=two.key)
    for p in (one, two, both):
        assert not p.peer.seen("cmd-error") and not p.peer.seen("error")


async def test_join_again_looks_up_again(net: Net) -> None:
    """A joined topic is looked up once; ``join`` on it again announces and looks up anew."""
    first = await net.start("first", "--print-text")
    await joined(first)  # its lookup found nobody
    second = await net.start("second", "--key", first.key, "--client", "false", "--print-text")
    await joined(second)  # announced only: it looks nobody up
    await asyncio.sleep(QUIET)
    assert not first.peer.seen("connection") and not second.peer.seen("connection")

    await do(first, "joined", cmd="join", discovery_key=first.discovery_key)
    c_first, c_second = await meet(first, second, first.key)
    assert c_first["client"] is True and c_second["client"] is False
    await say(second, first, "found you")
