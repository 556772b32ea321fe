"""The `speed` extra: everything runs on uvloop too (its transports are not asyncio.Transport)."""

from __future__ import annotations

import asyncio

import uvloop

from peersockets import Peersockets, Swarm

DRIVE = bytes(range(32))


async def _exchange() -> list[bytes]:
    async with Swarm() as a, Swarm() as b:
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
