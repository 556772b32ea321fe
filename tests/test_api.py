"""Every rule of DESIGN.md's Semantics and of Beaker's API, on the memory network and over TCP."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from conftest import Net, next_of, wait_until

from peersockets import (
    InvalidTopic,
    MessageTooLarge,
    PeerEvent,
    PeerNotFound,
    Peersockets,
    PeersocketsError,
    TopicClosed,
    TopicMessage,
)
from peersockets.wire.secretstream import MAX_MESSAGE

DRIVE = bytes(range(32))
OTHER_DRIVE = bytes(range(32, 64))


async def joined(ps: Peersockets, count: int) -> None:
    await wait_until(lambda: len(ps.peers) == count)


async def test_three_peers_join_and_exchange(net: Net) -> None:
    swarms = await net.mesh(3)
    ps = [Peersockets(s, DRIVE) for s in swarms]
    topics = [p.join("chat") for p in ps]
    for p in ps:
        await joined(p, 2)
    for sender in range(3):
        for peer_id in ps[sender].peers:
            await topics[sender].send(peer_id, f"from {sender}".encode())
    for receiver in range(3):
        got = sorted([(await next_of(topics[receiver])).message for _ in range(2)])
        assert got == sorted(f"from {s}".encode() for s in range(3) if s != receiver)


async def test_watch_before_and_after_connect(net: Net) -> None:
    a, b, c = await net.swarm(), await net.swarm(), await net.swarm()
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    Peersockets(c, DRIVE)
    early = ps_a.watch()
    await net.connect(b, a)
    await joined(ps_a, 1)
    late = ps_a.watch()
    await net.connect(c, a)
    await joined(ps_a, 2)
    first = await next_of(early)
    second = await next_of(early)
    assert [first.type, second.type] == ["join", "join"]
    assert first.public_key == b.public_key and second.public_key == c.public_key
    # A watch() started later first gets a join for the peer already there, then the new one.
    assert await next_of(late) == first
    assert await next_of(late) == second


async def test_leave_when_remote_closes_its_peersockets(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    events = ps_a.watch()
    join = await next_of(events)
    await ps_b.close()
    leave = await next_of(events)
    assert leave == PeerEvent("leave", join.peer_id, b.public_key, join.address)
    assert ps_a.peers == []


async def test_leave_when_connection_is_killed_without_close(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    events = ps_a.watch()
    join = await next_of(events)
    for conn in b.connections:
        conn.abort()  # no close frame, no FIN handshake: the socket just dies
    assert await next_of(events) == PeerEvent("leave", join.peer_id, b.public_key, join.address)


async def test_leave_on_local_close(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    ps_b = Peersockets(b, DRIVE)
    events_a, events_b = ps_a.watch(), ps_b.watch()
    join = await next_of(events_a)
    await next_of(events_b)
    for conn in a.connections:
        conn.close()
    assert await next_of(events_a) == PeerEvent("leave", join.peer_id, b.public_key, join.address)
    assert (await next_of(events_b)).type == "leave"


async def test_closing_peersockets_emits_leaves_then_ends_watchers(net: Net) -> None:
    a, b, c = await net.mesh(3)
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    Peersockets(c, DRIVE)
    await joined(ps_a, 2)
    events = ps_a.watch()
    unread = ps_a.watch()
    joins = [await next_of(events), await next_of(events)]
    await ps_a.close()
    seen = [e async for e in events]
    assert [e.type for e in joins + seen] == ["join", "join", "leave", "leave"]
    assert {e.peer_id for e in seen} == {e.peer_id for e in joins}
    assert events.closed
    # a leave that finds its join unread removes both: that reader never heard of the peers
    assert [e async for e in unread] == [] and unread.dropped == 0


async def test_peer_without_the_drive_never_joins(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, OTHER_DRIVE)
    events = ps_a.watch()
    with pytest.raises(asyncio.TimeoutError):
        await next_of(events, timeout=0.3)
    assert ps_a.peers == []


async def test_two_drives_one_connection_same_topic_no_cross_talk(net: Net) -> None:
    a, b = await net.mesh(2)
    a1, a2 = Peersockets(a, DRIVE), Peersockets(a, OTHER_DRIVE)
    b1, b2 = Peersockets(b, DRIVE), Peersockets(b, OTHER_DRIVE)
    t_a1, t_a2, t_b1, t_b2 = (p.join("chat") for p in (a1, a2, b1, b2))
    for p in (a1, a2, b1, b2):
        await joined(p, 1)
    assert len(a.connections) == 1  # one connection carries both drives
    await t_a1.send(a1.peers[0], b"drive one")
    await t_a2.send(a2.peers[0], b"drive two")
    assert (await next_of(t_b1)).message == b"drive one"
    assert (await next_of(t_b2)).message == b"drive two"
    with pytest.raises(asyncio.TimeoutError):
        await next_of(t_b1, timeout=0.2)


async def test_peer_ids_agree_between_watch_and_topics(net: Net) -> None:
    a, b, c = await net.mesh(3)
    ps_a = Peersockets(a, DRIVE)
    events = ps_a.watch()
    chat, game = ps_a.join("chat"), ps_a.join("game")
    remote = {s.public_key: Peersockets(s, DRIVE) for s in (b, c)}
    ids = {}
    for _ in range(2):
        ev = await next_of(events)
        ids[ev.public_key] = ev.peer_id
    assert sorted(ids.values()) == [1, 2]
    for ps in remote.values():
        await joined(ps, 2)
        (a_id,) = [i for i in ps.peers if ps.peer_public_key(i) == a.public_key]
        await ps.join("chat").send(a_id, b"chat")
        await ps.join("game").send(a_id, b"game")
    got = [await next_of(chat) for _ in range(2)] + [await next_of(game) for _ in range(2)]
    for msg in got:
        assert msg.peer_id == ids[msg.public_key]


async def test_reconnect_gets_a_new_id(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    events = ps_a.watch()
    first = await next_of(events)
    for conn in a.connections:
        conn.close()
    assert (await next_of(events)).type == "leave"
    await net.connect(b, a)
    again = await next_of(events)
    assert again.type == "join" and again.public_key == b.public_key
    assert again.peer_id != first.peer_id


async def test_simultaneous_connections_give_one_peer(net: Net) -> None:
    a, b = await net.swarm(), await net.swarm()
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    events_a = ps_a.watch()
    await asyncio.gather(net.connect(a, b), net.connect(b, a))
    await joined(ps_a, 1)
    await joined(ps_b, 1)
    await wait_until(lambda: len(a.connections) == 1 and len(b.connections) == 1)
    await asyncio.sleep(0.1)
    seen = []
    while True:
        try:
            seen.append(await next_of(events_a, timeout=0.2))
        except TimeoutError:
            break
    assert [e.type for e in seen] == ["join"]
    # Messages still flow on the connection both sides kept.
    chat_a, chat_b = ps_a.join("chat"), ps_b.join("chat")
    await chat_a.send(ps_a.peers[0], b"x")
    assert (await next_of(chat_b)).message == b"x"


async def test_send_errors(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    Peersockets(b, DRIVE)
    topic = ps_a.join("chat")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    with pytest.raises(TypeError, match="str"):
        await topic.send(peer, "text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(PeerNotFound, match="999"):
        await topic.send(999, b"x")
    with pytest.raises(MessageTooLarge, match=str(MAX_MESSAGE + 1)):
        await topic.send(peer, bytes(MAX_MESSAGE + 1))
    topic.close()
    with pytest.raises(TopicClosed, match="chat"):
        await topic.send(peer, b"x")
    for error in (PeerNotFound, MessageTooLarge, TopicClosed):
        assert issubclass(error, PeersocketsError)
    with pytest.raises(TypeError):
        ps_a.join(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidTopic):
        ps_a.join("")


async def test_send_to_departed_peer_raises(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_a.join("chat")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    await ps_b.close()
    await wait_until(lambda: ps_a.peers == [])
    with pytest.raises(PeerNotFound):
        await topic.send(peer, b"too late")


async def test_bytes_like_messages(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    send, recv = ps_a.join("t"), ps_b.join("t")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    for payload in (b"bytes", bytearray(b"bytearray"), memoryview(b"xmemoryview")[1:], b""):
        await send.send(peer, payload)
        assert (await next_of(recv)).message == bytes(payload)


async def test_several_topic_instances(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    first, second, third = ps_b.join("chat"), ps_b.join("chat"), ps_b.join("chat")
    other = ps_b.join("other")
    sender = ps_a.join("chat")
    await joined(ps_a, 1)
    await sender.send(ps_a.peers[0], b"one")
    for t in (first, second, third):
        assert (await next_of(t)).message == b"one"
    second.close()
    await sender.send(ps_a.peers[0], b"two")
    assert (await next_of(first)).message == b"two"
    assert (await next_of(third)).message == b"two"
    assert [m async for m in second] == []  # closed: iteration ends
    with pytest.raises(asyncio.TimeoutError):
        await next_of(other, timeout=0.2)


async def test_topic_not_joined_is_discarded_and_others_still_work(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    chat = ps_b.join("chat")
    await joined(ps_a, 1)
    unjoined = ps_a.join("nobody-listens")
    await unjoined.send(ps_a.peers[0], b"lost on purpose")
    await ps_a.join("chat").send(ps_a.peers[0], b"kept")
    assert (await next_of(chat)).message == b"kept"


async def test_nothing_lost_between_join_connect_and_iterate(net: Net) -> None:
    a, b = await net.swarm(), await net.swarm()
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    events = ps_a.watch()
    topic = ps_a.join("chat")
    sender = ps_b.join("chat")
    await net.connect(b, a)
    await joined(ps_b, 1)
    for i in range(50):
        await sender.send(ps_b.peers[0], b"%d" % i)
    await asyncio.sleep(0.1)  # only now does the program start reading
    assert (await next_of(events)).type == "join"
    assert [(await next_of(topic)).message for _ in range(50)] == [b"%d" % i for i in range(50)]


async def test_order_and_integrity_under_load(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    sender, receiver = ps_a.join("bulk"), ps_b.join("bulk")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    payloads = [os.urandom(n) for n in (0, 1, 100, 65536, 300_000, 5) * 40]

    async def send_all() -> None:
        for p in payloads:
            await sender.send(peer, p)

    task = asyncio.create_task(send_all())
    got = [(await next_of(receiver, timeout=10)).message for _ in payloads]
    await task
    assert got == payloads


async def test_on_message_callbacks_sync_and_async(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_b.join("cb")
    seen_sync: list[TopicMessage] = []
    seen_async: list[TopicMessage] = []

    async def async_callback(msg: TopicMessage) -> None:
        await asyncio.sleep(0)
        seen_async.append(msg)

    topic.on_message(seen_sync.append)
    topic.on_message(async_callback)
    await joined(ps_a, 1)
    await ps_a.join("cb").send(ps_a.peers[0], b"hi")
    await wait_until(lambda: len(seen_sync) == 1 and len(seen_async) == 1)
    assert seen_sync[0].message == b"hi" and seen_async[0] == seen_sync[0]
    with pytest.raises(TypeError):
        topic.on_message("not callable")  # type: ignore[arg-type]


async def test_context_managers(net: Net) -> None:
    (a,) = await net.mesh(1)
    async with Peersockets(a, DRIVE) as ps:
        with ps.join("x") as topic:
            assert not topic.closed
        assert topic.closed
        async with ps.watch() as events:
            assert not events.closed
        assert events.closed
    with pytest.raises(PeersocketsError):
        ps.join("after close")


async def test_drive_key_spellings(net: Net) -> None:
    (a,) = await net.mesh(1)
    from peersockets.keys import z32_encode

    for spelling in (DRIVE, DRIVE.hex(), z32_encode(DRIVE), f"hyper://{DRIVE.hex()}/index.html"):
        ps = Peersockets(a, spelling)
        assert ps.drive_key == DRIVE
        await ps.close()


async def test_full_queue_pauses_the_sender_and_loses_nothing(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    ps_b = Peersockets(b, DRIVE, max_queue_messages=10, max_queue_bytes=64 * 1024)
    sender, receiver = ps_a.join("flood"), ps_b.join("flood")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    payloads = [os.urandom(10_000) for _ in range(600)]
    task = asyncio.create_task(_send_all(sender, peer, payloads))
    await asyncio.sleep(0.3)  # nobody reads: the queue stops near its bound (plus one frame)
    assert len(receiver._inbox) < 150
    got = [(await next_of(receiver)).message for _ in payloads]
    await asyncio.wait_for(task, 10)
    assert got == payloads and receiver.dropped == 0


async def test_full_queue_drop_oldest_counts_what_it_drops(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    ps_b = Peersockets(b, DRIVE, max_queue_messages=10, overflow="drop-oldest")
    sender, receiver = ps_a.join("flood"), ps_b.join("flood")
    await joined(ps_a, 1)
    await _send_all(sender, ps_a.peers[0], [b"%d" % i for i in range(50)])
    await wait_until(lambda: receiver.dropped == 40)
    assert [(await next_of(receiver)).message for _ in range(10)] == [
        b"%d" % i for i in range(40, 50)
    ]
    with pytest.raises(ValueError, match="overflow"):
        Peersockets(a, DRIVE, overflow="ignore")  # type: ignore[arg-type]


async def _send_all(topic, peer: int, payloads: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    for payload in payloads:
        await topic.send(peer, payload)


async def test_two_readers_of_one_topic_share_messages_and_both_end_on_close(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_b.join("shared")
    readers = [asyncio.create_task(anext(topic)) for _ in range(2)]
    await asyncio.sleep(0.01)
    await joined(ps_a, 1)
    sender = ps_a.join("shared")
    await sender.send(ps_a.peers[0], b"one")
    await sender.send(ps_a.peers[0], b"two")
    got = await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert sorted(m.message for m in got) == [b"one", b"two"]
    waiting = [asyncio.create_task(anext(topic)) for _ in range(2)]
    await asyncio.sleep(0.01)
    topic.close()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(r, StopAsyncIteration) for r in results)


async def test_concurrent_senders_on_one_connection_take_turns(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    one, two = ps_a.join("one"), ps_a.join("two")
    r_one, r_two = ps_b.join("one"), ps_b.join("two")
    await joined(ps_a, 1)
    peer = ps_a.peers[0]
    sent = {"one": 0, "two": 0}
    payload = bytes(4096)

    async def flood(topic, name: str) -> None:  # type: ignore[no-untyped-def]
        while True:
            await topic.send(peer, payload)
            sent[name] += 1

    async def drain(topic) -> None:  # type: ignore[no-untyped-def]
        async for _ in topic:
            pass

    tasks = [
        asyncio.create_task(c)
        for c in (flood(one, "one"), flood(two, "two"), drain(r_one), drain(r_two))
    ]
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert min(sent.values()) > 0
    assert max(sent.values()) / min(sent.values()) < 4, sent


async def test_sync_callback_replies_with_send_nowait_in_the_same_iteration(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    echo = ps_b.join("echo")
    echo.on_message(lambda m: echo.send_nowait(m.peer_id, m.message.upper()))
    await joined(ps_a, 1)
    pinger = ps_a.join("echo")
    for word in (b"ping", b"pong", b""):
        await pinger.send(ps_a.peers[0], word)
        assert (await next_of(pinger)).message == word.upper()
    with pytest.raises(PeerNotFound):
        pinger.send_nowait(12345, b"x")
    with pytest.raises(TypeError):
        pinger.send_nowait(ps_a.peers[0], "str")  # type: ignore[arg-type]


async def test_mixed_callbacks_see_messages_in_order(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_b.join("order")
    seen: list[tuple[str, bytes]] = []

    async def slow(msg: TopicMessage) -> None:
        await asyncio.sleep(0.001)
        seen.append(("async", msg.message))

    topic.on_message(lambda m: seen.append(("sync", m.message)))
    topic.on_message(slow)
    await joined(ps_a, 1)
    sender = ps_a.join("order")
    for i in range(20):
        await sender.send(ps_a.peers[0], b"%d" % i)
    await wait_until(lambda: len(seen) == 40)
    expected = []
    for i in range(20):
        expected += [("sync", b"%d" % i), ("async", b"%d" % i)]
    assert seen == expected


async def test_a_lone_callback_async_raising_or_returning_a_value_keeps_every_message(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """One callback takes a shorter path than several: it must keep their rules (an
    awaitable is awaited in order, an error is logged, a plain value is ignored)."""
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    slow_topic, raising_topic, valued_topic = (ps_b.join(n) for n in ("slow", "raise", "value"))
    slow_seen: list[bytes] = []
    raised_on: list[bytes] = []
    valued: list[bytes] = []

    async def slow(msg: TopicMessage) -> None:
        await asyncio.sleep(0.001)
        slow_seen.append(msg.message)

    def raising(msg: TopicMessage) -> None:
        raised_on.append(msg.message)
        if msg.message == b"3":
            raise RuntimeError("boom on 3")

    slow_topic.on_message(slow)
    raising_topic.on_message(raising)
    valued_topic.on_message(lambda m: valued.append(m.message) or 42)  # type: ignore[func-returns-value]
    await joined(ps_a, 1)
    senders = [ps_a.join(n) for n in ("slow", "raise", "value")]
    caplog.set_level(logging.ERROR, logger="peersockets")
    expected = [b"%d" % i for i in range(10)]
    for message in expected:
        for sender in senders:
            await sender.send(ps_a.peers[0], message)
    await wait_until(lambda: len(slow_seen) == len(raised_on) == len(valued) == 10)
    assert slow_seen == raised_on == valued == expected
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(failures) == 1 and "'raise'" in failures[0].getMessage()
    assert failures[0].exc_info is not None and "boom on 3" in str(failures[0].exc_info[1])


async def test_a_peer_that_opens_the_drive_later_joins_then(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a = Peersockets(a, DRIVE)
    events = ps_a.watch()
    Peersockets(b, OTHER_DRIVE)
    with pytest.raises(asyncio.TimeoutError):
        await next_of(events, timeout=0.2)  # our open was rejected: b lacks the drive
    late = Peersockets(b, DRIVE)  # b opens the drive on the same connection
    join = await next_of(events)
    assert join.type == "join" and join.public_key == b.public_key
    await joined(late, 1)
    chat = ps_a.join("chat")
    await late.join("chat").send(late.peers[0], b"better late")
    assert (await next_of(chat)).message == b"better late"


# -- a reconnect, and senders sharing a connection ----------------------------------------------


@pytest.mark.parametrize("reconnects", [1, 3])
@pytest.mark.parametrize("dialer", ["sender", "receiver"])
async def test_reconnect_from_the_same_side_loses_nothing(
    net: Net, dialer: str, reconnects: int
) -> None:
    """The side that dialled dials again while 400 sends are under way (send_nowait and
    await send alternately): the swarm swaps the connection, every accepted message arrives
    once and in order, and the peer, listed the whole time, never raises PeerNotFound."""
    first_swarm, second_swarm = await net.mesh(2)  # the second dialled the first
    a, b = (second_swarm, first_swarm) if dialer == "sender" else (first_swarm, second_swarm)
    redial = (a, b) if dialer == "sender" else (b, a)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    out, inbox = ps_a.join("swap"), ps_b.join("swap")
    await joined(ps_a, 1)
    await joined(ps_b, 1)
    (peer,) = ps_a.peers
    total = 400
    accepted: list[int] = []
    listed_throughout = True

    async def send_all() -> None:
        nonlocal listed_throughout
        for i in range(total):
            message = i.to_bytes(4, "big") + bytes(i % 97)
            if i % 2:
                out.send_nowait(peer, message)
            else:
                await out.send(peer, message)
            accepted.append(i)
            listed_throughout = listed_throughout and ps_a.peers == [peer]
            if i % 8 == 0:
                await asyncio.sleep(0)  # let the reconnects interleave with the sends

    async def reconnect() -> None:
        for _ in range(reconnects):
            first = a.connections[0]
            await net.connect(*redial)
            await wait_until(lambda: a.connections[0] is not first)  # noqa: B023 (awaited here)
            await first.wait_closed()

    sending = asyncio.create_task(send_all())
    await reconnect()
    await asyncio.wait_for(sending, 10)
    assert listed_throughout and accepted == list(range(total))
    got = []
    while len(got) < total:
        message = (await next_of(inbox)).message
        got.append(int.from_bytes(message[:4], "big"))
        assert message[4:] == bytes(got[-1] % 97)
    assert got == list(range(total))
    with pytest.raises(TimeoutError):
        await next_of(inbox, timeout=0.2)  # and nothing twice
    await out.send(peer, b"after")  # the kept connection carries on
    assert (await next_of(inbox)).message == b"after"
    await ps_a.close()
    await ps_b.close()


@pytest.mark.parametrize("senders", [2, 5, 8])
async def test_concurrent_senders_are_never_parked_on_a_writable_connection(
    net: Net, senders: int
) -> None:
    """Several tasks send to one peer, one of them a maximal message, while the receiver
    reads: every send completes (none waits for an unrelated send to wake it), and each
    sender's messages arrive in order."""
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    out, inbox = ps_a.join("many"), ps_b.join("many")
    await joined(ps_a, 1)
    (peer,) = ps_a.peers
    per_sender = 20

    async def send_some(k: int) -> None:
        for i in range(per_sender):
            size = out.max_message_size if (k, i) == (0, 0) else 2048 + i
            await out.send(peer, bytes([k, i]) + bytes(size - 2))

    received: dict[int, list[int]] = {k: [] for k in range(senders)}

    async def receive() -> None:
        for _ in range(senders * per_sender):
            message = (await next_of(inbox, timeout=10)).message
            received[message[0]].append(message[1])

    reader = asyncio.create_task(receive())
    await asyncio.wait_for(asyncio.gather(*(send_some(k) for k in range(senders))), 20)
    await asyncio.wait_for(reader, 20)
    assert all(received[k] == list(range(per_sender)) for k in range(senders)), received
    await ps_a.close()
    await ps_b.close()


async def test_two_peersockets_on_one_swarm_forget_an_ended_connection(net: Net) -> None:
    """Each Peersockets registers pairing on a connection and forgets it when it ends."""
    a, b = await net.mesh(2)
    ps = [Peersockets(a, DRIVE), Peersockets(a, OTHER_DRIVE)]
    Peersockets(b, DRIVE)
    await joined(ps[0], 1)
    (conn,) = a.connections
    assert all(conn in p._pairings for p in ps)
    conn.abort()
    await conn.wait_closed()
    assert all(not p._pairings for p in ps)
    for p in ps:
        await p.close()
