"""Test helpers: MemoryNetwork (real secret-stream and protomux over in-memory pipes), a local
DHT testnet, and pytest fixtures.

The fixtures: ``memory_network`` (a MemoryNetwork), ``make_swarm`` (a factory of *TCP* swarms
listening on 127.0.0.1: real sockets, no DHT) and ``dht_testnet`` (a DHTTestnet of 4 nodes).
``pip install "peersockets[testing]"`` brings what they need (pytest, pytest-asyncio) and
registers them: this module is a pytest plugin (entry point ``pytest11``), loaded in every pytest
run of the environment (``-p no:peersockets.testing`` leaves it out). ``pytest_plugins =
["peersockets.testing"]`` in a conftest.py still works alongside it (the plugin is registered
once, under that name), and loads the fixtures when plugin autoloading is off.
Without pytest-asyncio the fixtures still exist, and a test that uses one fails with a message
that says so; the rest of the suite is untouched. Without pytest this module imports all the same
(MemoryNetwork and DHTTestnet need no pytest).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .connection import Connection
from .dht import DHT
from .pipe import create_pipe
from .swarm import Swarm
from .wire.crypto import KeyPair


class MemoryNetwork:
    """A discovery and transport in one process: swarms that join a key get connected by pipes."""

    def __init__(self) -> None:
        self._topics: dict[bytes, list[Swarm]] = {}
        self._swarms: list[Swarm] = []

    def swarm(self, key_pair: KeyPair | None = None, **options: Any) -> Swarm:
        """A new Swarm on this network (keyword options go to Swarm; no DHT unless dht= says)."""
        options.setdefault("dht", False)
        swarm = Swarm(key_pair, discovery=self, **options)
        self._swarms.append(swarm)
        return swarm

    def connect(self, initiator: Swarm, responder: Swarm) -> tuple[Connection, Connection]:
        """Join two swarms with a pipe now; the handshake completes as the loop runs."""
        a = initiator.make_connection(True)
        b = responder.make_connection(False)
        create_pipe(a, b)
        return a, b

    def join(self, swarm: Swarm, discovery_key: bytes) -> None:
        members = self._topics.setdefault(discovery_key, [])
        if swarm in members:
            return
        for other in members:
            if other.closed or other is swarm:
                continue
            if any(c.remote_public_key == other.public_key for c in swarm.connections):
                continue  # already connected: one connection carries every drive
            if any(c.remote_public_key == swarm.public_key for c in other.connections):
                continue
            self.connect(swarm, other)
        members.append(swarm)

    def leave(self, swarm: Swarm, discovery_key: bytes) -> None:
        members = self._topics.get(discovery_key, [])
        if swarm in members:
            members.remove(swarm)

    async def close(self) -> None:
        """Close every swarm made by this network."""
        for swarm in self._swarms:
            await swarm.close()
        self._swarms.clear()
        self._topics.clear()


class DHTTestnet:
    """A DHT of its own: ``size`` persistent Python nodes on ``host``, for tests and examples.

        async with DHTTestnet(4) as testnet:
            async with DHT(bootstrap=testnet.bootstrap) as dht: ...   # or: await testnet.client()

    The first node starts the network (no bootstrap); the others bootstrap from it,
    then look themselves up once more so that every table holds every node.
    """

    def __init__(self, size: int = 4, host: str = "127.0.0.1", **options: Any) -> None:
        if size < 1:
            raise ValueError(f"a testnet needs at least 1 node, got {size}")
        self.size = size
        self.host = host
        self.options = options
        """Keyword options for every node (DHT's: attempt_timeout, ...)."""
        self.nodes: list[DHT] = []
        self._clients: list[DHT] = []

    @property
    def bootstrap(self) -> list[tuple[str, int]]:
        """The bootstrap list of this network: the first node's (host, port)."""
        if not self.nodes:
            raise RuntimeError("the testnet is not started")
        host, port = self.nodes[0].address
        return [(host, port)]

    async def start(self) -> None:
        """Start every node."""
        first = DHT(bootstrap=[], host=self.host, ephemeral=False, **self.options)
        self.nodes.append(first)
        await first.open()
        for _ in range(self.size - 1):
            node = DHT(bootstrap=self.bootstrap, host=self.host, ephemeral=False, **self.options)
            self.nodes.append(node)
            await node.open()
        for node in self.nodes[1:]:
            await node.node.bootstrap()

    async def client(self, **options: Any) -> DHT:
        """An ephemeral node on this network, closed with the testnet."""
        client = DHT(bootstrap=self.bootstrap, host=self.host, **{**self.options, **options})
        self._clients.append(client)
        await client.open()
        return client

    async def close(self) -> None:
        """Close the clients, then the nodes."""
        for dht in [*self._clients, *self.nodes]:
            await dht.close()
        self._clients.clear()
        self.nodes.clear()

    async def __aenter__(self) -> DHTTestnet:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


try:
    import pytest
except ImportError:  # outside pytest: MemoryNetwork and DHTTestnet only, no fixtures
    pass
else:
    _FIXTURES: set[Callable[..., Any]] = set()
    _PYTEST_ASYNCIO_ERROR: ImportError | None = None
    try:
        import pytest_asyncio
    except ImportError as error:
        _PYTEST_ASYNCIO_ERROR = error

    def _fixture(function: Callable[..., Any]) -> Any:
        """A fixture run by pytest-asyncio; without it, one that pytest_fixture_setup fails."""
        _FIXTURES.add(function)
        if _PYTEST_ASYNCIO_ERROR is None:
            return pytest_asyncio.fixture(function)
        return pytest.fixture(function)

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
        """Fail a test that uses one of these fixtures, with one clear message, when pytest-asyncio
        is missing or not loaded (instead of a "fixture not found" or an unawaited coroutine)."""
        if fixturedef.func not in _FIXTURES:
            return  # not ours, or already wrapped by pytest-asyncio
        plugin = sys.modules.get("pytest_asyncio.plugin")
        if plugin is not None and request.config.pluginmanager.is_registered(plugin):
            return
        fixture = f"the peersockets fixture {fixturedef.argname!r}"
        if _PYTEST_ASYNCIO_ERROR is not None:
            pytest.fail(
                f"{fixture} needs pytest-asyncio, which cannot be imported "
                f'({_PYTEST_ASYNCIO_ERROR}): pip install "peersockets[testing]"',
                pytrace=False,
            )
        pytest.fail(
            f"{fixture} needs pytest-asyncio, which is installed but its plugin is not loaded "
            "(-p no:asyncio, or plugin autoloading turned off?): load it with -p asyncio",
            pytrace=False,
        )

    @_fixture
    async def memory_network() -> AsyncIterator[MemoryNetwork]:
        """A MemoryNetwork (in-memory pipes, no sockets) closed after the test."""
        network = MemoryNetwork()
        try:
            yield network
        finally:
            await network.close()

    @_fixture
    async def make_swarm() -> AsyncIterator[Callable[..., Awaitable[Swarm]]]:
        """A factory of TCP swarms: ``await make_swarm(**swarm_options)`` is a Swarm listening on
        127.0.0.1 (a real TCP socket; no DHT unless dht= says), all closed after the test.
        Connect them with ``await a.connect(*b.addresses[0])``."""
        swarms: list[Swarm] = []

        async def factory(**options: Any) -> Swarm:
            swarm = Swarm(**{"dht": False, **options})
            await swarm.listen("127.0.0.1", 0)
            swarms.append(swarm)
            return swarm

        try:
            yield factory
        finally:
            for swarm in swarms:
                await swarm.close()

    @_fixture
    async def dht_testnet() -> AsyncIterator[DHTTestnet]:
        """A DHTTestnet of 4 Python nodes on 127.0.0.1, closed after the test."""
        async with DHTTestnet(4) as testnet:
            yield testnet
