"""Shared fixtures: the peersockets.testing plugin, plus a network fixture that runs each
API test twice, on the in-memory network and over loopback TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from peersockets import Swarm

pytest_plugins = ["peersockets.testing"]  # also its pytest11 entry point's name: registered once


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never contact the public DHT: a DHT request to anything but loopback is refused
    and fails the test (a Swarm that joins without dht=False or a bootstrap list would try)."""
    from peersockets.dht.node import RPCNode

    original = RPCNode._send_request
    refused: list[str] = []

    def guarded(self: RPCNode, address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        if not (address[0].startswith("127.") or address[0] == "::1"):
            refused.append(f"{address[0]}:{address[1]}")
            raise AssertionError(f"a test sent a DHT request to {address[0]}:{address[1]}, not loopback")
        return original(self, address, *args, **kwargs)

    monkeypatch.setattr(RPCNode, "_send_request", guarded)
    yield
    assert not refused, f"DHT requests to the internet were attempted: {refused}"

@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


T = TypeVar("T")


async def next_of(iterator: Any, timeout: float = 5.0) -> Any:
    """The next item of an async iterator, failing the test after ``timeout`` seconds."""
    return await asyncio.wait_for(iterator.__anext__(), timeout)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


class Net:
    """Makes swarms on one kind of network and connects them."""

    def __init__(self, kind: str) -> None:
        from peersockets.testing import MemoryNetwork  # after pytest_plugins has loaded it

        self.kind = kind
        self.memory = MemoryNetwork()
        self.swarms: list[Swarm] = []
        self.addresses: dict[Swarm, tuple[str, int]] = {}

    async def swarm(self, **options: Any) -> Swarm:
        if self.kind == "memory":
            swarm = Swarm(dht=False, **options)  # connected by hand below, not by discovery
        else:
            swarm = Swarm(dht=False, **options)
            self.addresses[swarm] = await swarm.listen("127.0.0.1", 0)
        self.swarms.append(swarm)
        return swarm

    async def connect(self, a: Swarm, b: Swarm) -> None:
        """Connect a (initiator) to b and wait for the secure stream on both ends."""
        if self.kind == "memory":
            conn_a, conn_b = self.memory.connect(a, b)
            await conn_a.wait_established()
            await conn_b.wait_established()
        else:
            await a.connect(*self.addresses[b])
        await wait_until(lambda: any(c.remote_public_key == a.public_key for c in b.connections))

    async def mesh(self, n: int) -> list[Swarm]:
        swarms = [await self.swarm() for _ in range(n)]
        for i, a in enumerate(swarms):
            for b in swarms[:i]:
                await self.connect(a, b)
        return swarms

    async def close(self) -> None:
        for swarm in self.swarms:
            await swarm.close()
        await self.memory.close()


@pytest_asyncio.fixture(params=["memory", "tcp"])
async def net(request: pytest.FixtureRequest) -> AsyncIterator[Net]:
    network = Net(request.param)
    try:
        yield network
    finally:
        await network.close()
        await asyncio.sleep(0)
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leftover, f"tasks left running after close: {leftover}"


Maker = Callable[..., Awaitable[T]]


@pytest_asyncio.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    """Every async test must end every task it started (directly or through peersockets)."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    for _ in range(20):  # let tasks that are finishing finish
        leftover = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left running after the test: {leftover}")
