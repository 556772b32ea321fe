"""Checks of the hyperdht connect/listen commands of tests/interop/js/dht_peer.mjs
on their own: two JavaScript client nodes on a JavaScript testnet connect to each
other by public key, with no Python involved. If these fail, the Python-vs-hyperdht
connect tests cannot be trusted.

Which path a JS-to-JS connect takes on 127.0.0.1 (seen in the events' ``socket``
field, the UDP socket carrying the UDX stream, and in ``punches``):

- default options: the nodes usually stay firewalled (the quick firewall check
  races the bootstrap; now and then one turns unfirewalled and the connect goes
  the direct "OPEN" way), and the client wins the race between the LAN shortcut
  (a ping to the server's address, the stream over the client's server socket)
  and the holepunch probe it starts alongside;
- ``--quick-firewall false`` keeps both firewalled; with ``local_connection``
  or ``share_local_address`` false (here both) no LAN shortcut is possible and
  both streams run on holepunch ("puncher") sockets. The probe round completes
  the connect (one PEER_HOLEPUNCH each way; the server, consistent, pings the
  client's puncher socket at once), so no punch round starts and ``punches``
  stays all zero.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from peersockets.wire.crypto import KeyPair

from .conftest import StartPeer
from .jspeer import JsPeer, pattern

pytestmark = pytest.mark.timeout(120)

SCRIPT = "dht_peer.mjs"
TESTNET_SIZE = 5
START_TIMEOUT = 30.0
OP_TIMEOUT = 20.0
NOT_FOUND_TIMEOUT = 10.0
"""A connect to a key nobody announced fails with PEER_NOT_FOUND within this."""
MIB = 1024 * 1024
CLIENT_SEED = 3
"""What the connect command sends: pattern(size, 3)."""
SERVER_SEED = 7
"""What server_send sends: pattern(size, 7)."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seed(n: int) -> str:
    return (bytes([n]) * 32).hex()


@dataclass
class Pair:
    testnet: JsPeer
    server: JsPeer
    client: JsPeer


async def start_pair(js: StartPeer, *client_args: str) -> Pair:
    testnet = await js(SCRIPT, "--testnet", str(TESTNET_SIZE))
    event = await testnet.expect("testnet", timeout=START_TIMEOUT)
    (boot,) = event["bootstrap"]
    bootstrap = f"{boot['host']}:{boot['port']}"
    server, client = await asyncio.gather(
        js(SCRIPT, "--bootstrap", bootstrap, *client_args),
        js(SCRIPT, "--bootstrap", bootstrap, *client_args),
    )
    for peer in (server, client):
        ready = await peer.expect("ready", timeout=START_TIMEOUT)
        assert ready["ephemeral"] is True
        assert isinstance(ready["firewalled"], bool)
    return Pair(testnet, server, client)


async def close_pair(pair: Pair) -> None:
    # the clients first: a server unannounces from the testnet when it closes
    await asyncio.gather(pair.server.close(), pair.client.close())
    await pair.testnet.close()
    assert pair.server.returncode == 0, pair.server.stderr
    assert pair.client.returncode == 0, pair.client.stderr


@pytest_asyncio.fixture
async def pair(js: StartPeer) -> AsyncIterator[Pair]:
    p = await start_pair(js)
    try:
        yield p
    finally:
        await close_pair(p)


@pytest_asyncio.fixture
async def firewalled_pair(js: StartPeer) -> AsyncIterator[Pair]:
    p = await start_pair(js, "--quick-firewall", "false")
    try:
        yield p
    finally:
        await close_pair(p)


# ---------------------------------------------------------------------- helpers


async def do(peer: JsPeer, event: str, **cmd: Any) -> dict[str, Any]:
    """Send a command; its answer ``event`` (a cmd-error fails the test)."""
    await peer.send(cmd)
    got: dict[str, Any] = await peer.arrivals.expect(
        lambda e: e if e.get("event") in (event, "cmd-error") else None,
        f"event {event!r} (or cmd-error) for {cmd}",
        OP_TIMEOUT,
    )
    if got["event"] == "cmd-error":
        raise AssertionError(f"{peer.script} failed {cmd}: {got['message']}\n{peer.stderr}")
    return got


async def listen(peer: JsPeer, n: int, mode: str = "echo", **opts: Any) -> str:
    """Listen on seed(n); the server's public key (hex)."""
    got = await do(peer, "listening", cmd="listen", seed=seed(n), mode=mode, **opts)
    assert len(got["relay_addresses"]) >= 1
    public_key: str = got["public_key"]
    assert len(bytes.fromhex(public_key)) == 32
    return public_key


async def connect(
    peer: JsPeer, public_key: str, count: int = 1, timeout: float = OP_TIMEOUT, **opts: Any
) -> list[dict[str, Any]]:
    """One connect command; its connect_done / connect_error events, in cid order."""
    await peer.send({"cmd": "connect", "public_key": public_key, "count": count, **opts})
    results = [
        await peer.arrivals.expect(
            lambda e: e if e.get("event") in ("connect_done", "connect_error") else None,
            "connect_done or connect_error",
            timeout,
        )
        for _ in range(count)
    ]
    all_done = await peer.expect("connect_all_done", timeout=timeout)
    ok = sum(1 for r in results if r["event"] == "connect_done")
    assert all_done == {"event": "connect_all_done", "count": count, "ok": ok}
    results.sort(key=lambda r: int(r["cid"]))
    cids = [int(r["cid"]) for r in results]
    assert cids == list(range(cids[0], cids[0] + count))
    return results


def done(result: dict[str, Any]) -> dict[str, Any]:
    assert result["event"] == "connect_done", result
    return result


async def server_conn(peer: JsPeer, public_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The next connection to ``public_key`` and how it ended (server_end)."""
    conn = await peer.expect("connection", timeout=OP_TIMEOUT, public_key=public_key)
    end = await peer.expect("server_end", timeout=OP_TIMEOUT, id=conn["id"])
    return conn, end


# ---------------------------------------------------------------------- tests


async def test_echo_sizes(pair: Pair) -> None:
    server_pk = await listen(pair.server, 1, "echo")
    client_pk = KeyPair.from_seed(bytes.fromhex(seed(9))).public_key.hex()
    last_cid = 0
    for size in (0, 1, MIB):
        (result,) = await connect(pair.client, server_pk, size=size, seed=seed(9))
        r = done(result)
        assert r["cid"] > last_cid
        last_cid = r["cid"]
        assert r["sent"] == size
        assert r["received"] == size
        assert r["sha256"] == digest(pattern(size, CLIENT_SEED))
        assert r["remote_host"] == "127.0.0.1" and isinstance(r["remote_port"], int)
        assert r["socket"] in ("client", "server", "puncher")
        assert set(r["punches"]) >= {"open", "consistent", "random"}
        connected = pair.client.seen("connected", cid=r["cid"])
        assert len(connected) == 1 and connected[0]["ms"] > 0

        conn, end = await server_conn(pair.server, server_pk)
        assert conn["remote_host"] == "127.0.0.1"
        assert conn["remote_public_key"] == client_pk
        assert end["bytes"] == size
        assert end["sha256"] == r["sha256"]
        assert end["remote_ended"] is True
    assert pair.server.seen("server_error") == []


async def test_sink_and_server_send(pair: Pair) -> None:
    sink_pk = await listen(pair.server, 2, "sink")
    hold_pk = await listen(pair.server, 3, "hold")
    assert sink_pk != hold_pk

    # sink: the server hashes what arrives and answers nothing
    (result,) = await connect(pair.client, sink_pk, size=100_000)
    r = done(result)
    assert (r["received"], r["sha256"]) == (0, digest(b""))
    _conn, end = await server_conn(pair.server, sink_pk)
    assert (end["bytes"], end["sha256"]) == (100_000, digest(pattern(100_000, CLIENT_SEED)))

    # hold: the server's side stays open until server_send ends it
    size = 300_000
    await pair.client.send({"cmd": "connect", "public_key": hold_pk, "size": 10})
    conn = await pair.server.expect("connection", timeout=OP_TIMEOUT, public_key=hold_pk)
    sent = await do(pair.server, "server_sent", cmd="server_send", id=conn["id"], size=size)
    assert sent == {"event": "server_sent", "id": conn["id"], "size": size}
    r = done(
        await pair.client.arrivals.expect(
            lambda e: e if e.get("event") in ("connect_done", "connect_error") else None,
            "connect_done",
            OP_TIMEOUT,
        )
    )
    assert (r["received"], r["sha256"]) == (size, digest(pattern(size, SERVER_SEED)))
    await pair.client.expect("connect_all_done", timeout=OP_TIMEOUT, count=1, ok=1)
    end = await pair.server.expect("server_end", timeout=OP_TIMEOUT, id=conn["id"])
    assert (end["bytes"], end["sha256"]) == (10, digest(pattern(10, CLIENT_SEED)))

    # a second server_send on that connection (gone now) is a cmd-error, the peer carries on
    await pair.server.send({"cmd": "server_send", "id": conn["id"], "size": 1})
    err = await pair.server.expect("cmd-error", timeout=OP_TIMEOUT, cmd="server_send")
    assert str(conn["id"]) in err["message"]
    # as is a second listen on a seed already listening
    await pair.server.send({"cmd": "listen", "seed": seed(2)})
    await pair.server.expect("cmd-error", timeout=OP_TIMEOUT, cmd="listen")


async def test_concurrent_connects(pair: Pair) -> None:
    server_pk = await listen(pair.server, 4, "echo")
    results = await connect(pair.client, server_pk, count=5, size=50_000)
    for result in results:
        r = done(result)
        assert (r["received"], r["sha256"]) == (50_000, digest(pattern(50_000, CLIENT_SEED)))
    assert len(pair.client.seen("connected")) == 5
    ends = [await pair.server.expect("server_end", timeout=OP_TIMEOUT) for _ in range(5)]
    assert sorted(e["id"] for e in ends) == [1, 2, 3, 4, 5]
    assert all(e["bytes"] == 50_000 for e in ends)


async def test_connect_time(pair: Pair) -> None:
    server_pk = await listen(pair.server, 5, "echo")
    got = await do(pair.client, "connect_times", cmd="connect_time", public_key=server_pk, count=3)
    ms = got["ms"]
    assert len(ms) == 3
    assert all(isinstance(t, int | float) and 0 < t < OP_TIMEOUT * 1000 for t in ms)
    # the destroyed sockets show up as three connections on the server
    for _ in range(3):
        await pair.server.expect("connection", timeout=OP_TIMEOUT, public_key=server_pk)


async def test_unknown_key_and_unlisten(pair: Pair) -> None:
    started = time.monotonic()
    (result,) = await connect(pair.client, seed(0x55), timeout=NOT_FOUND_TIMEOUT)
    assert result["event"] == "connect_error", result
    assert result["code"] == "PEER_NOT_FOUND"
    assert time.monotonic() - started < NOT_FOUND_TIMEOUT
    assert pair.client.seen("connected", cid=result["cid"]) == []

    # connect_time to that key: a cmd-error carrying the code
    await pair.client.send({"cmd": "connect_time", "public_key": seed(0x55), "count": 1})
    err = await pair.client.expect("cmd-error", timeout=NOT_FOUND_TIMEOUT, cmd="connect_time")
    assert err["message"].startswith("PEER_NOT_FOUND")

    server_pk = await listen(pair.server, 6, "echo")
    (result,) = await connect(pair.client, server_pk, size=10)
    done(result)
    got = await do(pair.server, "unlistened", cmd="unlisten", seed=seed(6))
    assert got["public_key"] == server_pk
    (result,) = await connect(pair.client, server_pk, size=10)
    assert result["event"] == "connect_error", result
    assert result["code"] == "PEER_NOT_FOUND", result
    # unlisten of a seed not listening: a cmd-error
    await pair.server.send({"cmd": "unlisten", "seed": seed(6)})
    await pair.server.expect("cmd-error", timeout=OP_TIMEOUT, cmd="unlisten")


async def test_firewalled_holepunch(firewalled_pair: Pair) -> None:
    pair = firewalled_pair
    assert pair.server.seen("ready")[0]["firewalled"] is True
    assert pair.client.seen("ready")[0]["firewalled"] is True

    # no LAN shortcut on either side: the holepunch path
    server_pk = await listen(pair.server, 7, "echo", share_local_address=False)
    (result,) = await connect(pair.client, server_pk, size=MIB, local_connection=False)
    r = done(result)
    assert (r["received"], r["sha256"]) == (MIB, digest(pattern(MIB, CLIENT_SEED)))
    assert r["firewalled"] is True
    assert r["socket"] == "puncher"
    assert r["punches"]["open"] == 0
    conn, end = await server_conn(pair.server, server_pk)
    assert conn["socket"] == "puncher"
    assert conn["firewalled"] is True
    assert end["bytes"] == MIB

    # default options connect too (the LAN shortcut usually wins there)
    lan_pk = await listen(pair.server, 8, "echo")
    (result,) = await connect(pair.client, lan_pk, size=1000)
    r = done(result)
    assert (r["received"], r["sha256"]) == (1000, digest(pattern(1000, CLIENT_SEED)))
    assert r["punches"]["open"] == 0

    got = await do(pair.client, "connect_times", cmd="connect_time", public_key=server_pk, count=3)
    assert len(got["ms"]) == 3 and all(t > 0 for t in got["ms"])
