"""Checks of the udx-native peer (tests/interop/js/udx_peer.mjs) on its own: two
JavaScript peers talk to each other, directly or through the lossy relay, with
no Python UDX involved. If these fail, the Python-vs-udx-native tests cannot
be trusted."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import pytest
from udxrelay import LossyRelay

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(120)

SCRIPT = "udx_peer.mjs"
MIB = 1024 * 1024


def digest(size: int, seed: int = 0) -> str:
    return hashlib.sha256(pattern(size, seed)).hexdigest()


async def start_peer(js: StartPeer, *args: str) -> tuple[JsPeer, int]:
    peer = await js(SCRIPT, *args)
    listening = await peer.expect("listening")
    return peer, int(listening["port"])


async def stream(peer: JsPeer, **cmd: Any) -> None:
    await peer.send({"cmd": "stream", **cmd})
    await peer.expect("stream-created", local_id=cmd["local_id"])


async def stats(peer: JsPeer, local_id: int) -> dict[str, Any]:
    await peer.send({"cmd": "stats", "local_id": local_id})
    return await peer.expect("stats", local_id=local_id)


@pytest.mark.parametrize("firewall", [False, True], ids=["connected", "firewall"])
async def test_source_to_sink(js: StartPeer, firewall: bool) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    # the sink first: with a firewall it must exist before the first packet
    if firewall:
        await stream(b, local_id=2, remote_id=1, mode="sink", firewall=True)
    else:
        await stream(b, local_id=2, remote_id=1, port=a_port, mode="sink")
    await stream(a, local_id=1, remote_id=2, port=b_port, mode="source", size=MIB, seed=5)
    await a.expect("sent", local_id=1, size=MIB, seed=5)

    end = await b.expect("stream-end", local_id=2, timeout=30)
    assert end["length"] == MIB
    assert end["sha256"] == digest(MIB, 5)
    connected = await b.expect("stream-connected", local_id=2)
    assert (connected["port"], connected["host"], connected["firewall"]) == (
        a_port,
        "127.0.0.1",
        firewall,
    )
    # the sink ends its side in turn; both close cleanly
    back = await a.expect("stream-end", local_id=1, timeout=30)
    assert back["length"] == 0
    await a.expect("stream-close", local_id=1, timeout=30)
    await b.expect("stream-close", local_id=2, timeout=30)
    assert not a.seen("stream-error") and not b.seen("stream-error")

    info = await stats(a, 1)
    assert info["closed"] is True and info["remote_id"] == 2 and info["remote_port"] == b_port
    assert info["bytes_tx"] >= MIB and info["mtu"] >= 1200 and info["rto"] is None


async def test_echo(js: StartPeer) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    size = 256 * 1024
    await stream(b, local_id=7, remote_id=8, port=a_port, mode="echo")
    await stream(a, local_id=8, remote_id=7, port=b_port, mode="source", size=size, seed=9)
    end = await a.expect("stream-end", local_id=8, timeout=30)
    assert (end["length"], end["sha256"]) == (size, digest(size, 9))
    echoed = await b.expect("stream-end", local_id=7, timeout=30)
    assert (echoed["length"], echoed["sha256"]) == (size, digest(size, 9))
    await a.expect("stream-close", local_id=8, timeout=30)
    await b.expect("stream-close", local_id=7, timeout=30)


@pytest.mark.parametrize(
    ("loss", "duplicate", "reorder"),
    [(0.05, 0.0, 0.0), (0.02, 0.02, 0.05)],
    ids=["loss5", "mixed"],
)
async def test_through_lossy_relay(
    js: StartPeer, loss: float, duplicate: float, reorder: float
) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    async with await LossyRelay.start(
        target_a=("127.0.0.1", a_port),
        target_b=("127.0.0.1", b_port),
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
        reorder_delay=0.01,
        seed=2,
    ) as relay:
        # B adopts the relay's address from the first packet; A is connected to it
        await stream(b, local_id=200, remote_id=100, mode="sink", firewall=True)
        await stream(
            a,
            local_id=100,
            remote_id=200,
            port=relay.address_for_a[1],
            mode="source",
            size=MIB,
            seed=1,
        )
        end = await b.expect("stream-end", local_id=200, timeout=60)
        assert end["length"] == MIB
        assert end["sha256"] == digest(MIB, 1)
        connected = await b.expect("stream-connected", local_id=200)
        assert connected["port"] == relay.address_for_b[1]
        info = await stats(a, 100)
        if loss:
            assert relay.a_to_b.lost > 0
            assert info["retransmits"] > 0, info
        # at most 1500 - 28 - 20 payload bytes a packet once MTU probing has grown it
        assert relay.a_to_b.forwarded > MIB // 1452
        assert relay.b_to_a.forwarded > 0  # the acks came back through the relay


async def test_message_and_socket_message(js: StartPeer) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    await stream(a, local_id=10, remote_id=20, port=b_port, mode="idle")
    await stream(b, local_id=20, remote_id=10, port=a_port, mode="idle")

    await a.send({"cmd": "send_message", "local_id": 10, "hex": b"ping".hex()})
    assert (await a.expect("message-sent", local_id=10))["ok"] is True
    got = await b.expect("message", local_id=20)
    assert (got["length"], got["hex"]) == (4, b"ping".hex())

    big = pattern(1000, 3)
    await a.send({"cmd": "send_message", "local_id": 10, "hex": big.hex()})
    got = await b.expect("message", local_id=20)
    assert got["length"] == 1000
    assert got["hex"] == big[:64].hex() and got["sha256"] == hashlib.sha256(big).hexdigest()

    # an empty MESSAGE (hyperdht's direct-path confirmation)
    await b.send({"cmd": "send_message", "local_id": 20, "hex": ""})
    got = await a.expect("message", local_id=10)
    assert got["length"] == 0

    # not UDX (a dht-rpc request starts with 0x03): the socket handler gets it
    await a.send({"cmd": "socket_send", "port": b_port, "hex": "03aabbcc"})
    await a.expect("socket-sent", length=4)
    raw = await b.expect("socket-message")
    assert (raw["hex"], raw["length"], raw["port"], raw["host"]) == (
        "03aabbcc",
        4,
        a_port,
        "127.0.0.1",
    )
    # UDX-shaped but for an id nobody has: also the socket handler's (UDX.md 1.7)
    header = bytes.fromhex("ff0101 00") + (999).to_bytes(4, "little") + bytes(12) + b"x"
    await a.send({"cmd": "socket_send", "port": b_port, "hex": header.hex()})
    raw = await b.expect("socket-message")
    assert raw["hex"] == header.hex()
    # a MESSAGE sent by hand to the live id 20 is the stream's, not the socket's
    message = bytes.fromhex("ff010800") + (20).to_bytes(4, "little") + bytes(12) + b"hand"
    await a.send({"cmd": "socket_send", "port": b_port, "hex": message.hex()})
    got = await b.expect("message", local_id=20)
    assert got["hex"] == b"hand".hex()
    assert not b.pending("socket-message")


async def test_destroy_resets_the_remote(js: StartPeer) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    await stream(a, local_id=1, remote_id=2, port=b_port, mode="idle")
    await stream(b, local_id=2, remote_id=1, port=a_port, mode="idle")
    await a.send({"cmd": "write", "local_id": 1, "size": 10, "seed": 0})
    await a.expect("sent", local_id=1)
    await a.send({"cmd": "destroy", "local_id": 1})
    await a.expect("stream-close", local_id=1)
    err = await b.expect("stream-error", local_id=2)
    assert err["code"] == "ECONNRESET"
    closed = await b.expect("stream-close", local_id=2)
    assert closed["length"] == 10 and closed["ended"] is False
    assert not a.seen("stream-error")


async def test_many_streams(js: StartPeer) -> None:
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    count, size = 128, 16 * 1024
    for i in range(count):
        await b.send(
            {"cmd": "stream", "local_id": 5000 + i, "remote_id": 0x8000_0000 + i, "firewall": True}
        )
    for i in range(count):
        await b.expect("stream-created", local_id=5000 + i)
    for i in range(count):
        await a.send(
            {
                "cmd": "stream",
                "local_id": 0x8000_0000 + i,
                "remote_id": 5000 + i,
                "port": b_port,
                "mode": "source",
                "size": size,
                "seed": i,
            }
        )
    for i in range(count):
        end = await b.expect("stream-end", local_id=5000 + i, timeout=30)
        assert (end["length"], end["sha256"]) == (size, digest(size, i))
    for i in range(count):
        await a.expect("stream-close", local_id=0x8000_0000 + i, timeout=30)
    assert not a.seen("stream-error") and not b.seen("stream-error")
    assert a_port != b_port


async def test_bad_commands(js: StartPeer) -> None:
    a, _ = await start_peer(js)
    await stream(a, local_id=1, remote_id=2, port=9, mode="idle")
    await a.send({"cmd": "stream", "local_id": 1, "remote_id": 3, "port": 9})
    assert "in use" in (await a.expect("cmd-error", cmd="stream"))["message"]
    await a.send({"cmd": "write", "local_id": 42, "size": 1})
    assert "no stream" in (await a.expect("cmd-error", cmd="write"))["message"]
    await a.send({"cmd": "stream", "local_id": 2, "remote_id": 3, "port": 0})
    assert "port" in (await a.expect("cmd-error", cmd="stream"))["message"]
    await a.send({"cmd": "stream", "local_id": 2, "remote_id": 3, "port": 9, "mode": "x"})
    assert "mode" in (await a.expect("cmd-error", cmd="stream"))["message"]
    await a.send({"cmd": "nope"})
    await a.expect("cmd-error", cmd="nope")
    await a.close()
    assert a.returncode == 0, a.stderr


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6(js: StartPeer) -> None:
    a, a_port = await start_peer(js, "--host", "::1")
    b, b_port = await start_peer(js, "--host", "::1")
    size = 128 * 1024
    await stream(b, local_id=2, remote_id=1, mode="sink", firewall=True)
    await stream(a, local_id=1, remote_id=2, port=b_port, mode="source", size=size)
    end = await b.expect("stream-end", local_id=2, timeout=30)
    assert (end["length"], end["sha256"]) == (size, digest(size))
    connected = await b.expect("stream-connected", local_id=2)
    assert (connected["host"], connected["port"]) == ("::1", a_port)
    info = await stats(a, 1)
    assert info["remote_host"] == "::1"


async def test_keepalive_then_timeout(js: StartPeer) -> None:
    """HEARTBEAT every keepalive ms while idle; ETIMEDOUT ~13 s after the path dies
    with data in flight (UDX.md 2.10, 5). The slowest check here, by nature."""
    a, a_port = await start_peer(js)
    b, b_port = await start_peer(js)
    seen: list[tuple[str, int]] = []
    blackhole = False

    def watch(direction: str, data: bytes) -> bool:
        seen.append((direction, data[2]))
        return blackhole

    async with await LossyRelay.start(
        target_a=("127.0.0.1", a_port), target_b=("127.0.0.1", b_port), drop_if=watch
    ) as relay:
        await stream(b, local_id=2, remote_id=1, mode="idle", firewall=True)
        await stream(
            a, local_id=1, remote_id=2, port=relay.address_for_a[1], mode="idle", keepalive=100
        )
        await a.send({"cmd": "write", "local_id": 1, "size": 5})
        await asyncio.sleep(0.55)
        heartbeats = seen.count(("a_to_b", 0x20))
        assert 3 <= heartbeats <= 6, seen
        assert seen.count(("b_to_a", 0x00)) >= heartbeats  # each answered by a STATE

        blackhole = True
        started = asyncio.get_running_loop().time()
        await a.send({"cmd": "write", "local_id": 1, "size": 5})
        err = await a.expect("stream-error", local_id=1, timeout=30)
        elapsed = asyncio.get_running_loop().time() - started
        assert err["code"] == "ETIMEDOUT"
        assert 10 < elapsed < 20, elapsed
        await a.expect("stream-close", local_id=1)
        info = await stats(a, 1)
        assert info["rto_count"] == 7 and info["closed"] is True
