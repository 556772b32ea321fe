"""Every limit against misbehaving peers: a sane default, a setting, documented, enforced.

The limits: handshake_timeout, max_frame_size and max_channels on Swarm;
max_queue_messages, max_queue_bytes and overflow on Peersockets; topic names of at
most 1024 UTF-8 bytes. Tests already in test_api.py (a full queue pausing the sender
with a small message bound, drop-oldest counting with a small message bound, an empty
topic name) are not repeated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Net, next_of, wait_until
from hostile import (
    DRIVE,
    Attacker,
    ConnectionLog,
    MiB,
    drive_open,
    ended_by,
    rss_bytes,
    task_count,
)

from peersockets import (
    InvalidSetting,
    InvalidTopic,
    Peersockets,
    PeersocketsError,
    Swarm,
    Topic,
    TopicMessage,
)
from peersockets.api import MAX_TOPIC_BYTES
from peersockets.errors import ConnectionClosed, FrameTooLarge, HandshakeTimeout, ProtocolError
from peersockets.wire.crypto import KeyPair
from peersockets.wire.encoding import encode_string
from peersockets.wire.secretstream import MAX_FRAME

SLACK = 1.0  # seconds of scheduling slack on top of a documented time bound
SECURITY = Path(__file__).resolve().parent.parent / "SECURITY.md"

# (setting, where it is set, its default, how SECURITY.md spells the default)
LIMITS: list[tuple[str, str, Any, str]] = [
    ("handshake_timeout", "Swarm", 10.0, "10 s"),
    ("keepalive", "Swarm", 5.0, "5 s"),
    ("max_frame_size", "Swarm", MAX_FRAME, "16,777,215"),
    ("max_channels", "Swarm", 1024, "1024"),
    ("max_connections", "Swarm", 4096, "4096"),
    ("max_write_buffer", "Swarm", 64 * MiB, "64 MiB"),
    ("close_timeout", "Swarm", 5.0, "5 s"),
    ("pair_timeout", "Swarm", 10.0, "10 s"),
    ("read_timeout", "Swarm", None, "3 x `keepalive`"),
    ("frame_timeout", "Swarm", 30.0, "30 s"),
    ("max_receive_buffer", "Swarm", 64 * MiB, "64 MiB"),
    ("max_queue_messages", "Peersockets", 100_000, "100,000"),
    ("max_queue_bytes", "Peersockets", 64 * MiB, "64 MiB"),
    ("overflow", "Peersockets", "pause", '"pause"'),
    ("reopen_rate", "Peersockets", 1.0, "1 per second"),
]


# -- defaults and documentation -------------------------------------------------------------


@pytest.mark.parametrize(("name", "owner", "default", "spelled"), LIMITS)
def test_every_limit_has_a_sane_default(name: str, owner: str, default: Any, spelled: str) -> None:
    cls = {"Swarm": Swarm, "Peersockets": Peersockets}[owner]
    assert inspect.signature(cls).parameters[name].default == default


async def test_defaults_on_live_objects() -> None:
    async with Swarm(dht=False) as swarm:
        assert swarm.handshake_timeout == 10
        assert swarm.keepalive == 5
        assert swarm.max_frame_size == MAX_FRAME == 2**24 - 1
        assert swarm.max_channels == 1024
        async with Peersockets(swarm, DRIVE) as ps:
            assert ps.max_queue_messages == 100_000
            assert ps.max_queue_bytes == 64 * MiB
            assert ps.overflow == "pause"
    assert MAX_TOPIC_BYTES == 1024


@pytest.mark.parametrize(("name", "owner", "default", "spelled"), LIMITS)
def test_every_limit_is_documented(name: str, owner: str, default: Any, spelled: str) -> None:
    docstring = {"Swarm": Swarm.__init__.__doc__, "Peersockets": Peersockets.__init__.__doc__}[
        owner
    ]
    assert docstring is not None and name in docstring, f"{owner} does not document {name}"
    rows = [line for line in SECURITY.read_text().splitlines() if f"`{name}`" in line]
    assert any(line.startswith("|") and spelled in line for line in rows), (
        f"SECURITY.md has no table row for `{name}` with its default {spelled}"
    )


def test_topic_limit_and_overflow_policy_are_documented() -> None:
    text = SECURITY.read_text()
    assert "1024" in text and "InvalidTopic" in text
    for word in ("drop-oldest", "pause", "dropped"):
        assert word in text
    assert Topic.__doc__ is not None and "drop-oldest" in Topic.__doc__


INVALID_SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("Swarm", {"max_frame_size": 0}),
    ("Swarm", {"max_frame_size": MAX_FRAME + 1}),
    ("Swarm", {"handshake_timeout": -1}),
    ("Swarm", {"max_channels": 0}),
    ("Swarm", {"close_timeout": -1}),
    ("Swarm", {"pair_timeout": -1}),
    ("Swarm", {"read_timeout": -0.5}),
    ("Swarm", {"frame_timeout": -1}),
    ("Swarm", {"max_receive_buffer": 0}),
    ("Peersockets", {"max_queue_messages": 0}),
    ("Peersockets", {"max_queue_bytes": 0}),
]


@pytest.mark.parametrize(
    ("owner", "options"),
    INVALID_SETTINGS,
    ids=[f"{owner}-{k}={v}" for owner, o in INVALID_SETTINGS for k, v in o.items()],
)
async def test_an_invalid_limit_is_refused_when_the_object_is_made(
    owner: str, options: dict[str, Any]
) -> None:
    """Not later, inside asyncio's accept loop, when the first peer connects."""
    async with Swarm(dht=False) as swarm:
        with pytest.raises(InvalidSetting, match=next(iter(options))):
            if owner == "Swarm":
                await Swarm(dht=False, **options).close()
            else:
                await Peersockets(swarm, DRIVE, **options).close()


# -- handshake_timeout -------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["silent", "trickling"])
async def test_a_connection_that_does_not_finish_the_handshake_is_dropped_on_time(
    behaviour: str,
) -> None:
    """The deadline is handshake_timeout after the connection is made; data arriving does
    not move it. Driven by handle_timer at the deadline: no sleeping, no slack."""
    timeout = 30.0  # the loop timer never fires during the test: the test fires it
    async with Swarm(dht=False, handshake_timeout=timeout) as swarm:
        log = ConnectionLog(swarm)
        address = await swarm.listen("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        before = loop.time()
        attacker = await Attacker.connect(address)
        try:
            conn = await log.of(attacker)
            deadline = conn.timers.get_timer()
            assert deadline is not None and before + timeout <= deadline <= loop.time() + timeout
            if behaviour == "trickling":  # data keeps coming, but the handshake never ends
                for byte in b"\x20\x00\x00" + bytes(20):
                    attacker.send(bytes([byte]))
                    await asyncio.sleep(0)
                assert conn.timers.get_timer() == deadline
            conn.handle_timer(deadline - 0.001)
            assert not conn.is_closed  # not before its time
            conn.handle_timer(deadline)
            error = await ended_by(conn, 5)
            await attacker.wait_dropped(5)
        finally:
            await attacker.close()
        assert isinstance(error, HandshakeTimeout), error
        assert "30 s" in str(error)


async def test_handshake_timeout_zero_disables_it() -> None:
    async with Swarm(dht=False, handshake_timeout=0) as swarm:
        log = ConnectionLog(swarm)
        attacker = await Attacker.connect(await swarm.listen("127.0.0.1", 0))
        try:
            conn = await log.of(attacker)
            assert conn.timers.get_timer() is None  # no deadline to wait for
            conn.handle_timer(asyncio.get_running_loop().time() + 1e6)
            assert not conn.is_closed and conn.error is None
        finally:
            await attacker.close()


async def test_the_handshake_timeout_stops_once_the_handshake_is_done() -> None:
    async with Swarm(dht=False, handshake_timeout=0.3) as a, Swarm(dht=False, handshake_timeout=0.3) as b:
        ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
        topic_a, topic_b = ps_a.join("t"), ps_b.join("t")
        await b.connect(*await a.listen("127.0.0.1", 0))
        await wait_until(lambda: len(ps_a.peers) == 1 and len(ps_b.peers) == 1)
        loop = asyncio.get_running_loop()
        for conn in a.connections + b.connections:
            conn.handle_timer(loop.time() + 0.6)  # past the handshake deadline: a keepalive
        assert len(a.connections) == 1 and len(b.connections) == 1
        await topic_b.send(ps_b.peers[0], b"still here")
        assert (await next_of(topic_a)).message == b"still here"
        await ps_a.close()
        await ps_b.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[tuple[str, int], asyncio.Event]]:
    """A TCP server that accepts and never says a word; the event is set when a client hangs up."""
    hung_up = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client hangs up
        hung_up.set()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        yield (host, port), hung_up
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


async def test_connect_to_a_silent_server_raises_handshake_timeout() -> None:
    """connect() promises a ProtocolError when the handshake fails; a timeout is one."""
    timeout = 0.5
    async with silent_server() as (address, _hung_up), Swarm(dht=False, handshake_timeout=timeout) as swarm:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(HandshakeTimeout):
            await swarm.connect(*address)
        assert loop.time() - start <= timeout + SLACK
        assert issubclass(HandshakeTimeout, ProtocolError)


async def test_a_connect_that_times_out_leaves_no_connection_behind() -> None:
    async with silent_server() as (address, hung_up), Swarm(dht=False) as swarm:  # handshake_timeout 10
        with pytest.raises((TimeoutError, HandshakeTimeout)):
            await swarm.connect(*address, timeout=0.3)
        # The half-open socket must go now, not when the 10 s handshake timer fires.
        try:
            await asyncio.wait_for(hung_up.wait(), SLACK)
        except TimeoutError:
            raise AssertionError("the timed-out connection is still open") from None
        await wait_until(lambda: not swarm._all, SLACK)


# -- max_frame_size ------------------------------------------------------------------------------


async def test_a_frame_over_max_frame_size_ends_the_connection_with_frame_too_large() -> None:
    limit = 256 * 1024
    async with Swarm(dht=False, max_frame_size=limit) as receiver, Swarm(dht=False) as sender:
        log = ConnectionLog(receiver)
        address = await receiver.listen("127.0.0.1", 0)
        ps_r, ps_s = Peersockets(receiver, DRIVE), Peersockets(sender, DRIVE)
        inbox, outbox = ps_r.join("big"), ps_s.join("big")
        events = ps_s.watch()
        await sender.connect(*address)
        join = await next_of(events)
        assert join.type == "join"
        (conn,) = [c for c in log.made if not c.is_closed]
        assert conn.stream.max_frame_size == limit  # the setting reaches every connection

        fits = bytes(range(256)) * 400  # 100 KiB: under the limit
        await outbox.send(join.peer_id, fits)
        assert (await next_of(inbox)).message == fits

        await outbox.send(join.peer_id, bytes(limit + 1))  # the sender cannot know the limit
        error = await ended_by(conn, SLACK)
        assert isinstance(error, FrameTooLarge), error
        assert (await next_of(events)).type == "leave"
        await ps_r.close()
        await ps_s.close()


# -- close_timeout ------------------------------------------------------------------------------


async def test_a_remote_that_does_not_end_its_side_after_our_close_is_aborted() -> None:
    """close() ends our side and reads on, so nothing the remote sent is lost; a remote
    that never ends its side is aborted after close_timeout, and what it sent meanwhile
    was still delivered."""
    timeout = 30.0  # the loop timer never fires during the test: the test fires it
    async with Swarm(dht=False, close_timeout=timeout, read_timeout=0) as swarm:
        log = ConnectionLog(swarm)
        ps = Peersockets(swarm, DRIVE)
        inbox = ps.join("t")
        attacker = await Attacker.connect(await swarm.listen("127.0.0.1", 0))
        try:
            await attacker.handshake()
            conn = await log.of(attacker)
            attacker.send(drive_open(attacker))
            await wait_until(lambda: len(ps.peers) == 1)
            conn.close()
            assert conn.is_closed and not conn.has_ended
            await asyncio.sleep(0.1)
            attacker.send(attacker.encrypt(b"\x01\x09" + encode_string("peersockets/t") + b"late"))
            assert (await next_of(inbox)).message == b"late"  # read after our close
            deadline = conn.timers.get_timer()
            assert deadline is not None
            conn.handle_timer(deadline - 0.001)
            assert not conn.has_ended  # not before its time
            conn.handle_timer(deadline)
            error = await ended_by(conn, 5)
            assert isinstance(error, ConnectionClosed) and "30 s" in str(error), error
        finally:
            await attacker.close()
        await ps.close()


async def test_messages_held_during_a_connection_swap_are_bounded() -> None:
    """A remote dials a second connection and floods it while never ending the first:
    what the second carries is held (so order holds across the swap), but past the queue
    bound reading from it pauses; close_timeout ends the first, and everything held is
    then delivered, in order."""
    timeout, bound = 30.0, 10  # close_timeout: fired by the test, not by waiting
    async with Swarm(dht=False, close_timeout=timeout, read_timeout=0) as swarm:
        log = ConnectionLog(swarm)
        ps = Peersockets(swarm, DRIVE, max_queue_messages=bound)
        events, inbox = ps.watch(), ps.join("t")
        address = await swarm.listen("127.0.0.1", 0)
        key_pair = KeyPair.generate()
        first, second = await Attacker.connect(address), await Attacker.connect(address)
        try:
            await first.handshake(key_pair)
            first.send(drive_open(first))
            joined = await next_of(events)
            old = await log.of(first)
            await second.handshake(key_pair)  # the same remote again: the swarm swaps
            new = await log.of(second)
            await wait_until(lambda: old.is_closed and not old.has_ended)
            second.send(drive_open(second))
            header = b"\x01\x09" + encode_string("peersockets/t")
            flood = 4 * bound
            second.send(b"".join(second.encrypt(header + b"%d" % i) for i in range(flood)))
            link = ps._links[new]
            await wait_until(lambda: link.held is not None and len(link.held) > bound)
            assert len(link.held) <= flood and not new.transport.is_reading()  # type: ignore[union-attr]
            assert len(inbox._inbox) == 0  # nothing overtakes the first connection
            deadline = old.timers.get_timer()
            assert deadline is not None
            old.handle_timer(deadline)  # the first never ended its side: close_timeout
            assert isinstance(await ended_by(old, 5), ConnectionClosed)
            got = [(await next_of(inbox)).message for _ in range(flood)]
            assert got == [b"%d" % i for i in range(flood)]
            assert ps.peers == [joined.peer_id]  # one peer throughout, no leave
        finally:
            await first.close()
            await second.close()
        await ps.close()


# -- max_channels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("drives", [4, 5])
async def test_max_channels_never_refuses_answers_to_our_own_opens(drives: int) -> None:
    """The limit bounds the opens a remote makes us keep; our own channels are the program's
    choice, so a drive we opened is paired even past it (and the connection stays up).
    Opens past the limit that nobody asked for are rejected without state: see
    test_channel_open_flood_is_rejected_without_state and the protomux unit tests."""
    limit = 4
    keys = [bytes([i + 1]) * 32 for i in range(drives)]
    async with Swarm(dht=False, max_channels=limit) as server, Swarm(dht=False) as client:
        log = ConnectionLog(server)
        address = await server.listen("127.0.0.1", 0)
        on_server = [Peersockets(server, k) for k in keys]
        on_client = [Peersockets(client, k) for k in keys]
        await client.connect(*address)
        (conn,) = log.made
        await wait_until(lambda: all(len(ps.peers) == 1 for ps in on_server + on_client))
        assert not conn.is_closed
        for ps in on_server + on_client:
            await ps.close()


# -- topic queue bounds --------------------------------------------------------------------------

MESSAGE = 32 * 1024
OFFERED = 2048  # messages of 32 KiB: 64 MiB offered to a receiver that does not read


def _numbered(i: int, block: bytes = bytes(range(256)) * (MESSAGE // 256)) -> bytes:
    return i.to_bytes(4, "big") + block[4:]


async def _pair(**receiver_options: Any) -> tuple[Swarm, Swarm, Topic, Topic, int]:
    receiver = Swarm(dht=False)
    sender = Swarm(dht=False)
    address = await receiver.listen("127.0.0.1", 0)
    ps_r = Peersockets(receiver, DRIVE, **receiver_options)
    ps_s = Peersockets(sender, DRIVE)
    inbox, outbox = ps_r.join("q"), ps_s.join("q")
    await sender.connect(*address)
    await wait_until(lambda: len(ps_s.peers) == 1 and len(ps_r.peers) == 1)
    return receiver, sender, inbox, outbox, ps_s.peers[0]


async def _stalled(count: list[int], limit: int, rounds: int = 100) -> bool:
    """Whether the counter stops moving (for 0.3 s) before reaching ``limit``."""
    last, still = -1, 0
    for _ in range(rounds):
        await asyncio.sleep(0.1)
        if count[0] >= limit:
            return False
        still = still + 1 if count[0] == last else 0
        last = count[0]
        if still >= 3:
            return True
    return False


async def test_pause_bounds_memory_by_max_queue_bytes_and_loses_nothing() -> None:
    bound = 256 * 1024
    receiver, sender, inbox, outbox, peer = await _pair(max_queue_bytes=bound)
    try:
        rss_before = rss_bytes()
        sent = [0]

        async def send_all() -> None:
            for i in range(OFFERED):
                await outbox.send(peer, _numbered(i))
                sent[0] = i + 1

        task = asyncio.create_task(send_all())
        assert await _stalled(sent, OFFERED), "the sender was never slowed down"
        queued = inbox._inbox.queued_bytes
        # Past the bound, reading stops; what one read already holds may still be queued.
        assert queued <= bound + 1 * MiB, f"{queued} bytes queued for a bound of {bound}"
        assert sent[0] < OFFERED // 2
        assert rss_bytes() - rss_before < 16 * MiB  # while 64 MiB is on offer
        for i in range(OFFERED):
            assert (await next_of(inbox, timeout=10)).message == _numbered(i)
        await asyncio.wait_for(task, 10)
        assert inbox.dropped == 0
    finally:
        await sender.close()
        await receiver.close()


async def test_drop_oldest_never_blocks_the_sender_and_keeps_the_newest() -> None:
    bound = 256 * 1024
    receiver, sender, inbox, outbox, peer = await _pair(
        max_queue_bytes=bound, overflow="drop-oldest"
    )
    try:
        rss_before = rss_bytes()
        for i in range(OFFERED):  # nobody reads, and yet every send returns
            await asyncio.wait_for(outbox.send(peer, _numbered(i)), 10)
        await wait_until(lambda: inbox.dropped + len(inbox._inbox) == OFFERED, 20)
        assert inbox._inbox.queued_bytes <= bound
        assert rss_bytes() - rss_before < 16 * MiB
        kept = [await next_of(inbox) for _ in range(len(inbox._inbox))]
        first = OFFERED - len(kept)
        assert first == inbox.dropped > 0
        assert [m.message for m in kept] == [_numbered(i) for i in range(first, OFFERED)]
    finally:
        await sender.close()
        await receiver.close()


async def test_slow_async_callbacks_are_bounded_like_the_queue() -> None:
    """A Topic with a slow async on_message callback must not start a task per message
    without bound: the queue bounds (and "pause") have to apply to callbacks too."""
    bound = 100
    offered = 5000
    receiver, sender, inbox, outbox, peer = await _pair(max_queue_messages=bound)
    release = asyncio.Event()
    done: list[TopicMessage] = []

    async def slow(message: TopicMessage) -> None:
        await release.wait()
        done.append(message)

    inbox.on_message(slow)
    baseline = task_count()
    sent = [0]

    async def send_all() -> None:
        for i in range(offered):
            await outbox.send(peer, b"%d" % i)
            sent[0] = i + 1

    task = asyncio.create_task(send_all())
    try:
        await _stalled(sent, offered, rounds=50)  # a bounded wait: stalls, or sends it all
        await asyncio.sleep(0.2)
        pending = task_count() - baseline - (0 if task.done() else 1)
        assert pending <= 2 * bound, f"{pending} callback tasks pending for a bound of {bound}"
    finally:
        release.set()
        await wait_until(lambda: len(done) == offered, 20)
        assert sorted(int(m.message) for m in done) == list(range(offered))
        await asyncio.wait_for(task, 10)
        await sender.close()
        await receiver.close()


# -- topic names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 1024, True),
        ("a" * 1025, False),
        ("é" * 512, True),  # 1024 bytes of UTF-8
        ("é" * 513, False),  # 1026 bytes, though only 513 characters
        ("€" * 341 + "a", True),  # 1024 bytes
        ("€" * 342, False),  # 1026 bytes in 342 characters
    ],
)
async def test_topic_names_are_limited_to_1024_utf8_bytes(name: str, ok: bool) -> None:
    async with Swarm(dht=False) as swarm, Peersockets(swarm, DRIVE) as ps:
        if ok:
            assert ps.join(name).name == name
        else:
            with pytest.raises(InvalidTopic, match="1024") as info:
                ps.join(name)
            assert isinstance(info.value, ValueError) and isinstance(info.value, PeersocketsError)


async def test_the_longest_topic_name_works_end_to_end(net: Net) -> None:
    a, b = await net.mesh(2)
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    name = "€" * 341 + "a"
    assert len(name.encode()) == MAX_TOPIC_BYTES
    sender, receiver = ps_a.join(name), ps_b.join(name)
    await wait_until(lambda: len(ps_a.peers) == 1)
    for i in range(3):  # the name travels once, then compressed to "" by hypercore
        await sender.send(ps_a.peers[0], b"%d" % i)
    assert [(await next_of(receiver)).message for _ in range(3)] == [b"0", b"1", b"2"]


# -- max_write_buffer and max_connections ----------------------------------------------------


async def test_a_peer_that_does_not_read_is_ended() -> None:
    from peersockets.connection import Connection
    from peersockets.errors import PeerNotReading
    from peersockets.pipe import create_pipe
    from peersockets.wire.crypto import KeyPair

    a = Connection(KeyPair.generate(), True, max_write_buffer=MiB)
    b = Connection(KeyPair.generate(), False)
    _, tb = create_pipe(a, b)
    await asyncio.wait_for(a.wait_established(), 5)
    await asyncio.wait_for(b.wait_established(), 5)
    tb.pause_reading()  # b stops reading: everything a writes stays unsent
    b.message_handler = lambda m: None
    for _ in range(40):
        if a.is_closed:
            break
        a.send_raw(bytes(64 * 1024))
    error = await asyncio.wait_for(a.wait_closed(), 5)
    assert isinstance(error, PeerNotReading) and str(MiB) in str(error)


async def test_max_connections_refuses_new_incoming() -> None:
    """Full of connections that each have a channel open: a newcomer is refused (a full
    swarm of strangers evicts one instead: test_adversarial_budgets)."""
    from peersockets.errors import TooManyConnections

    async with Swarm(dht=False, max_connections=2) as server, Swarm(dht=False) as c1, Swarm(dht=False) as c2, Swarm(dht=False) as c3:
        address = await server.listen("127.0.0.1", 0)
        server_ps = Peersockets(server, DRIVE)
        members = [Peersockets(c, DRIVE) for c in (c1, c2)]
        await c1.connect(*address)
        await c2.connect(*address)
        await wait_until(lambda: len(server_ps.peers) == 2)
        refused = ConnectionLog(server)
        with pytest.raises((ProtocolError, ConnectionError)):
            await c3.connect(*address, timeout=5)
        await wait_until(lambda: any(isinstance(c.error, TooManyConnections) for c in refused.made))
        assert len(server.connections) == 2 and len(server_ps.peers) == 2
        for ps in (*members, server_ps):
            await ps.close()
