"""The `speed` extra: everything runs on uvloop too (its transports are not asyncio.Transport)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvloop

from peersockets import ConnectError, Peersockets, Swarm

DRIVE = bytes(range(32))


async def _exchange() -> list[bytes]:
    async with Swarm(dht=False) as a, Swarm(dht=False) as b:
        await b.connect(*(await a.listen("127.0.0.1", 0)))
        ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
        topic_a, topic_b = ps_a.join("t"), ps_b.join("t")
        events = ps_a.watch()
        peer = (await asyncio.wait_for(anext(events), 5)).peer_id
        for i in range(100):
            await topic_a.send(peer, b"%d" % i)
        got = [(await asyncio.wait_for(anext(topic_b), 5)).message for _ in range(100)]
        await ps_a.close()
        await ps_b.close()
        return got


def test_tcp_exchange_on_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.get_loop().__class__.__module__.startswith("uvloop")
        assert runner.run(_exchange()) == [b"%d" % i for i in range(100)]


async def _udx_transfer() -> tuple[bytes, bytes]:
    from peersockets.udx import UDXSocket

    async with await UDXSocket.bind("127.0.0.1", 0) as a, await UDXSocket.bind("127.0.0.1", 0) as b:
        ra, wa = await a.open_stream(1, 2, b.address, min_rto=0.05)
        rb, wb = await b.open_stream(2, 1, a.address, min_rto=0.05)
        data = bytes(range(256)) * 32 * 1024  # 8 MiB in drained chunks: timers armed, moved, overdue
        reading = asyncio.ensure_future(rb.read())
        for start in range(0, len(data), 65536):
            wa.write(data[start : start + 65536])
            await asyncio.wait_for(wa.drain(), 20)
        wa.write_eof()
        got = await asyncio.wait_for(reading, 20)
        wb.write(b"done")
        wb.write_eof()
        reply = await asyncio.wait_for(ra.read(), 20)
        await asyncio.wait_for(wa.wait_closed(), 20)
        return got[:1024] + got[-1024:] if got == data else b"corrupted", reply


def test_udx_on_uvloop() -> None:
    """uvloop's call_at returns a plain Handle for a deadline already past (no when())."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        got, reply = runner.run(_udx_transfer())
        data = bytes(range(256)) * 32 * 1024
        assert got == data[:1024] + data[-1024:]
        assert reply == b"done"


async def _arm_past_then_future() -> bool:
    from peersockets.udx import UDXSocket

    async with await UDXSocket.bind("127.0.0.1", 0) as a:
        _r, w = await a.open_stream(1, 2, ("127.0.0.1", 9))
        stream = w.transport
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        stream.core.get_timer = lambda: loop.time() - 1.0  # type: ignore[attr-defined, method-assign]
        stream._on_timer = fired.set  # type: ignore[attr-defined, method-assign]
        stream._arm_timer(loop.time())  # type: ignore[attr-defined]
        stream.core.get_timer = lambda: loop.time() + 5.0  # type: ignore[attr-defined, method-assign]
        stream._arm_timer(loop.time())  # type: ignore[attr-defined]  # compares with the past one
        await asyncio.wait_for(fired.wait(), 5)
        stream.abort()
        return True


def test_udx_timer_armed_for_a_past_deadline_on_uvloop() -> None:
    """uvloop's call_at returns a plain Handle (no when()) for a deadline already past."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_arm_past_then_future())


async def _failed_connect_then_close() -> tuple[int, bool]:
    swarm = Swarm(dht=False)
    probe = Swarm(dht=False)
    port = (await probe.listen("127.0.0.1", 0))[1]
    await probe.close()  # nothing listens there now: refused
    with contextlib.suppress(ConnectError):
        await swarm.connect("127.0.0.1", port)
    left = len(swarm._all)
    close = asyncio.ensure_future(swarm.close())
    await asyncio.sleep(0.2)  # far below the close's 2 s wait for a connection to end
    return left, close.done()


def test_a_refused_connect_on_uvloop_leaves_nothing_for_close_to_wait_for() -> None:
    """uvloop makes the protocol before the socket connects: a refused dial left a
    Connection that never ended, and Swarm.close waited its full timeout for it."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_failed_connect_then_close()) == (0, True)


async def _close_during_a_dial() -> tuple[bool, bool]:
    # a listener whose accept queue is full: a further dial waits (its SYNs are dropped)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    swarm = Swarm(dht=False)
    dial = asyncio.ensure_future(swarm.connect(*listener.getsockname(), timeout=30))
    await asyncio.sleep(0.1)
    dialling = not dial.done()
    close = asyncio.ensure_future(swarm.close())
    await asyncio.sleep(0.3)  # far below the close's 2 s wait for a connection to end
    closed = close.done()
    dial.cancel()
    await asyncio.gather(dial, close, return_exceptions=True)
    for sock in (listener, *fillers):
        sock.close()
    return dialling, closed


def test_closing_a_swarm_during_a_dial_on_uvloop_does_not_wait_for_the_dial() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_close_during_a_dial()) == (True, True)
