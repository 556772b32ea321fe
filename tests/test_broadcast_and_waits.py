"""Topic.broadcast, Peersockets.wait_for_peers, PeerEvent.address and new_drive_key."""

from __future__ import annotations

import asyncio
import pydoc

import pytest
from conftest import Net, next_of, wait_until

from peersockets import (
    InvalidSetting,
    NotEnoughPeers,
    PeerEvent,
    Peersockets,
    PeersocketsClosed,
    PeersocketsError,
    RequestError,
    new_drive_key,
    parse_drive_key,
)

DRIVE = bytes(range(32))


async def _joined(net: Net, n: int) -> tuple[list[Peersockets], list[int]]:
    """n peers of one drive, all connected to the first; the first's peer ids."""
    swarms = [await net.swarm() for _ in range(n)]
    sockets = [Peersockets(s, DRIVE) for s in swarms]
    for other in swarms[1:]:
        await net.connect(other, swarms[0])
    ids = await asyncio.wait_for(sockets[0].wait_for_peers(n - 1), 5)
    return sockets, ids


async def test_broadcast_reaches_every_peer_and_counts_them(net: Net) -> None:
    sockets, ids = await _joined(net, 4)
    assert len(ids) == 3
    topics = [ps.join("news") for ps in sockets]
    assert await topics[0].broadcast(b"to all") == 3
    for topic in topics[1:]:
        message = await next_of(topic)
        assert message.message == b"to all"
        assert message.public_key == sockets[0].swarm.public_key
    assert len(topics[0]._inbox) == 0  # not sent to ourselves


async def test_broadcast_with_no_peers_sends_nothing(net: Net) -> None:
    ps = Peersockets(await net.swarm(), DRIVE)
    assert await ps.join("news").broadcast(b"anyone?") == 0


async def test_broadcast_checks_the_message_like_send(net: Net) -> None:
    sockets, _ = await _joined(net, 2)
    topic = sockets[0].join("news")
    with pytest.raises(TypeError, match="str"):
        await topic.broadcast("text")  # type: ignore[arg-type]
    topic.close()
    with pytest.raises(PeersocketsError, match="closed"):
        await topic.broadcast(b"x")


async def test_broadcast_skips_a_peer_that_leaves_while_it_waits_for_flow_control() -> None:
    """One peer stops reading, so a broadcast waits on its full connection; that peer
    leaves: the broadcast returns the others' count and raises nothing."""
    net = Net("tcp")
    try:
        sockets, _ = await _joined(net, 3)
        sender = sockets[0].join("bulk")
        readers = [ps.join("bulk") for ps in sockets[1:]]
        stuck = sockets[2].swarm
        stuck_conn = next(c for c in stuck.connections)
        assert stuck_conn.transport is not None
        stuck_conn.transport.pause_reading()  # the kernel buffers fill, then ours
        big = bytes(4 * 1024 * 1024)
        to_stuck = next(
            c for c in sockets[0].swarm.connections if c.remote_public_key == stuck.public_key
        )
        while to_stuck.can_send_now:
            assert await sender.broadcast(big) == 2
            await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(sender.broadcast(b"last"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # held by the stuck peer's flow control
        await stuck.close()
        assert await asyncio.wait_for(waiting, 10) == 1
        last = None
        while last != b"last":
            last = (await next_of(readers[0], 10)).message
    finally:
        await net.close()


async def test_wait_for_peers_returns_at_once_or_when_enough_have_joined(net: Net) -> None:
    a, b, c = [await net.swarm() for _ in range(3)]
    ps = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    Peersockets(c, DRIVE)
    assert await ps.wait_for_peers(0) == []
    waiting = asyncio.ensure_future(ps.wait_for_peers(2, timeout=10))
    await net.connect(b, a)
    await asyncio.sleep(0.05)
    assert not waiting.done()  # one peer of two
    await net.connect(c, a)
    ids = await asyncio.wait_for(waiting, 5)
    assert len(ids) == 2 and ids == ps.peers
    assert await ps.wait_for_peers(1) == ids  # already there: at once


async def test_wait_for_peers_times_out_with_a_typed_error(net: Net) -> None:
    ps = Peersockets(await net.swarm(), DRIVE)
    with pytest.raises(NotEnoughPeers, match=r"0 of 1 peers joined drive .* within 0.05 s") as info:
        await ps.wait_for_peers(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, RequestError)
    assert not ps._peer_waiters


async def test_wait_for_peers_ends_when_the_peersockets_closes(net: Net) -> None:
    ps = Peersockets(await net.swarm(), DRIVE)
    waiting = asyncio.ensure_future(ps.wait_for_peers(1))
    await asyncio.sleep(0)
    await ps.close()
    with pytest.raises(PeersocketsClosed, match="closed while waiting"):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(PeersocketsClosed):
        await ps.wait_for_peers(1)
    with pytest.raises(PeersocketsClosed):
        ps.join("t")


async def test_wait_for_peers_refuses_bad_arguments(net: Net) -> None:
    ps = Peersockets(await net.swarm(), DRIVE)
    with pytest.raises(TypeError, match="count must be an int, got float"):
        await ps.wait_for_peers(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidSetting, match="count must be >= 0, got -1"):
        await ps.wait_for_peers(-1)
    with pytest.raises(InvalidSetting, match="timeout must be >= 0, got -2"):
        await ps.wait_for_peers(1, timeout=-2)


async def test_wait_for_peers_cancelled_leaves_no_waiter(net: Net) -> None:
    ps = Peersockets(await net.swarm(), DRIVE)
    waiting = asyncio.ensure_future(ps.wait_for_peers(1))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not ps._peer_waiters


async def test_peer_events_carry_the_remote_address_where_the_transport_has_one(net: Net) -> None:
    a, b = await net.swarm(), await net.swarm()
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    events = ps_a.watch()
    await net.connect(b, a)  # b dials a
    join = await next_of(events)
    seen_by_b = await next_of(ps_b.watch())
    if net.kind == "memory":
        assert join.address is None and seen_by_b.address is None
    else:
        assert seen_by_b.address == net.addresses[a]  # b dialled a's listening address
        assert join.address is not None and join.address[0] == "127.0.0.1"
        conn = next(c for c in b.connections if c.remote_public_key == a.public_key)
        assert conn.transport is not None
        assert join.address == conn.transport.get_extra_info("sockname")[:2]  # b's own port
    await ps_b.close()
    leave = await next_of(events)
    assert leave == PeerEvent("leave", join.peer_id, join.public_key, join.address)
    assert len(ps_a.watch()._inbox) == 0  # gone: nothing to replay


async def test_replayed_joins_of_watch_carry_the_address(net: Net) -> None:
    a, b = await net.swarm(), await net.swarm()
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    await net.connect(b, a)
    await wait_until(lambda: len(ps_a.peers) == 1)
    first = await next_of(ps_a.watch())
    again = await next_of(ps_a.watch())
    assert first == again
    assert (first.address is None) == (net.kind == "memory")


def test_new_drive_key_is_a_fresh_32_byte_ed25519_key() -> None:
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    keys = {new_drive_key() for _ in range(16)}
    assert len(keys) == 16
    for key in keys:
        assert len(key) == 32
        assert parse_drive_key(key.hex()) == key
        assert crypto_core_ed25519_is_valid_point(key)


def test_help_of_peersockets_lists_its_settings() -> None:
    text = pydoc.render_doc(Peersockets, renderer=pydoc.plaintext)
    for setting in ("max_queue_messages", "max_queue_bytes", "overflow", "reopen_rate"):
        assert setting in text
    for method in ("wait_for_peers", "peer_public_key", "watch", "join"):
        assert method in text


def test_package_docstring_guides_a_newcomer() -> None:
    import peersockets

    doc = peersockets.__doc__ or ""
    assert len(doc.splitlines()) > 20
    for name in ("Swarm", "Peersockets", "broadcast", "wait_for_peers", "new_drive_key"):
        assert name in doc


async def test_wait_for_peers_woken_then_closed_before_it_runs_says_closed(net: Net) -> None:
    """The join wakes a watcher first; it closes the Peersockets before the woken waiter
    runs: the waiter must say closed, not wait on for peers that cannot come."""
    a, b = await net.swarm(), await net.swarm()
    ps = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    events = ps.watch()
    waiting = asyncio.ensure_future(ps.wait_for_peers(1))
    await asyncio.sleep(0)

    async def close_on_join() -> None:
        await anext(events)  # woken straight by the join (no wait_for task in between)
        await ps.close()

    closer = asyncio.ensure_future(close_on_join())
    await net.connect(b, a)
    await asyncio.wait_for(closer, 5)
    with pytest.raises(PeersocketsClosed):
        await asyncio.wait_for(waiting, 5)
