"""The pytest plugin and MemoryNetwork discovery, as a user's test suite would use them."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest
from conftest import next_of
from isolated_env import clean_environ, make_env, run_pytest

from peersockets import Peersockets, Swarm
from peersockets.testing import MemoryNetwork

DRIVE = bytes(range(32))


async def test_memory_network_discovery_connects_swarms_of_a_drive(
    memory_network: MemoryNetwork,
) -> None:
    swarms = [memory_network.swarm() for _ in range(3)]
    sockets = [Peersockets(s, DRIVE) for s in swarms]
    events = sockets[0].watch()
    joins = {(await next_of(events)).public_key for _ in range(2)}
    assert joins == {swarms[1].public_key, swarms[2].public_key}
    outsider = memory_network.swarm()
    Peersockets(outsider, bytes(32))  # another drive: not connected to these
    assert all(c.remote_public_key != outsider.public_key for c in swarms[0].connections)


async def test_make_swarm_fixture_gives_listening_tcp_swarms(
    make_swarm: Callable[..., Awaitable[Swarm]],
) -> None:
    a, b = await make_swarm(), await make_swarm()
    await b.connect(*a.addresses[0])
    ps_a, ps_b = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    topic = ps_b.join("t")
    events = ps_a.watch()
    peer = (await next_of(events)).peer_id
    await ps_a.join("t").send(peer, b"over tcp")
    assert (await next_of(topic)).message == b"over tcp"


def test_this_suite_registers_the_plugin_once(pytestconfig: pytest.Config) -> None:
    """Here conftest.py's pytest_plugins line and the entry point both name the plugin."""
    import peersockets.testing

    manager = pytestconfig.pluginmanager
    names = [name for name, plugin in manager.list_name_plugin() if plugin is peersockets.testing]
    assert names == ["peersockets.testing"]


# The plugin as installed: fresh environments holding only what a user would install (see
# isolated_env), pytest run on a user's test directory in a subprocess.

FIXTURE_TESTS = '''
import pytest

import peersockets.testing
from peersockets import Peersockets

DRIVE = bytes(range(32))


def test_plugin_registered_once(pytestconfig):
    manager = pytestconfig.pluginmanager
    names = [name for name, plugin in manager.list_name_plugin() if plugin is peersockets.testing]
    assert names == ["peersockets.testing"]
    by_entry_point = any(p is peersockets.testing for p, _ in manager.list_plugin_distinfo())
    assert by_entry_point or not AUTOLOAD


@pytest.mark.asyncio
async def test_memory_network(memory_network):
    a, b = memory_network.swarm(), memory_network.swarm()
    alice, bob = Peersockets(a, DRIVE), Peersockets(b, DRIVE)
    inbox = bob.join("t")
    peer = await anext(alice.watch())
    await alice.join("t").send(peer.peer_id, b"hi")
    assert (await anext(inbox)).message == b"hi"


@pytest.mark.asyncio
async def test_make_swarm(make_swarm):
    a, b = await make_swarm(), await make_swarm()
    await b.connect(*a.addresses[0])
    assert [c.remote_public_key for c in b.connections] == [a.public_key]
'''

MISSING_TESTS = '''
import pytest


@pytest.mark.asyncio
async def test_uses_memory_network(memory_network):
    pass


@pytest.mark.asyncio
async def test_uses_make_swarm(make_swarm):
    pass


def test_unrelated():
    pass
'''


@pytest.fixture(scope="module")
def testing_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``pip install "peersockets[testing]"`` installs, and nothing else."""
    return make_env(tmp_path_factory.mktemp("env") / "testing", ["peersockets[testing]"])


@pytest.fixture(scope="module")
def no_asyncio_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """peersockets and pytest, without pytest-asyncio."""
    return make_env(tmp_path_factory.mktemp("env") / "no-asyncio", ["peersockets", "pytest"])


def user_suite(directory: Path, tests: str, conftest: str | None = None) -> Path:
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (directory / "test_user.py").write_text(tests, encoding="utf-8")
    if conftest is not None:
        (directory / "conftest.py").write_text(conftest, encoding="utf-8")
    return directory


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test name -> (passed | failure | error | skipped, message) from a JUnit XML report."""
    found: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome: tuple[str, str] | None = None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = (child.tag, child.get("message", ""))
        found[case.get("name", "")] = outcome or ("passed", "")
    return found


@pytest.mark.parametrize(
    ("conftest_line", "autoload"),
    [(False, True), (True, True), (True, False)],
    ids=["entry-point", "entry-point-and-conftest", "conftest-without-autoload"],
)
def test_installed_plugin_gives_the_fixtures(
    testing_env: Path, tmp_path: Path, conftest_line: bool, autoload: bool
) -> None:
    """Installed with its testing extra, the fixtures are there by the entry point alone, or with
    the conftest line too (registered once, by the entry point), or by the conftest line alone
    when plugin autoloading is off."""
    conftest = 'pytest_plugins = ["peersockets.testing"]\n' if conftest_line else None
    suite = user_suite(tmp_path, FIXTURE_TESTS.replace("AUTOLOAD", str(autoload)), conftest)
    args, env = ["--junitxml", "report.xml"], {}
    if not autoload:
        args += ["-p", "asyncio"]
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    run = run_pytest(testing_env, suite, *args, **env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(outcomes(suite / "report.xml").values()) == {("passed", "")}, run.stdout
    assert "3 passed" in run.stdout, run.stdout


def test_fixtures_without_pytest_asyncio_fail_each_use_clearly(
    no_asyncio_env: Path, tmp_path: Path
) -> None:
    """No crash at collection, no "fixture not found": each test that uses a fixture fails with
    the message that says what to install, and the other tests run."""
    suite = user_suite(tmp_path, MISSING_TESTS)
    run = run_pytest(no_asyncio_env, suite, "--junitxml", "report.xml")
    assert run.returncode == 1, run.stdout + run.stderr
    results = outcomes(suite / "report.xml")
    assert results["test_unrelated"] == ("passed", ""), run.stdout
    for test, fixture in [
        ("test_uses_memory_network", "memory_network"),
        ("test_uses_make_swarm", "make_swarm"),
    ]:
        outcome, message = results[test]
        assert outcome == "error", run.stdout
        assert f"the peersockets fixture '{fixture}' needs pytest-asyncio, which cannot be imported" in message
        assert message.endswith('pip install "peersockets[testing]""'), message  # junit quotes it
    assert "1 passed" in run.stdout and "2 errors" in run.stdout, run.stdout
    assert "not found" not in run.stdout and "Traceback" not in run.stdout, run.stdout


def test_plugin_without_pytest_asyncio_leaves_other_suites_alone(
    no_asyncio_env: Path, tmp_path: Path
) -> None:
    """The entry point loads in every pytest run of the environment: one that uses no fixture
    passes as before."""
    suite = user_suite(tmp_path, "def test_unrelated():\n    pass\n")
    run = run_pytest(no_asyncio_env, suite, "-W", "error")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "warning" not in run.stdout.lower(), run.stdout


def test_fixtures_with_pytest_asyncio_disabled_say_so(testing_env: Path, tmp_path: Path) -> None:
    suite = user_suite(tmp_path, MISSING_TESTS)
    run = run_pytest(testing_env, suite, "-p", "no:asyncio", "--junitxml", "report.xml")
    assert run.returncode == 1, run.stdout + run.stderr
    results = outcomes(suite / "report.xml")
    assert results["test_unrelated"] == ("passed", "")
    outcome, message = results["test_uses_memory_network"]
    assert outcome == "error" and "installed but its plugin is not loaded" in message, message


def test_testing_module_imports_without_pytest(tmp_path: Path) -> None:
    """MemoryNetwork and DHTTestnet serve outside pytest: no pytest in the environment at all."""
    python = make_env(tmp_path / "env", ["peersockets"])
    script = """
import asyncio, sys
from peersockets import Peersockets
from peersockets.testing import DHTTestnet, MemoryNetwork

async def main():
    network = MemoryNetwork()
    try:
        alice = Peersockets(network.swarm(), bytes(32))
        bob = Peersockets(network.swarm(), bytes(32))
        inbox = bob.join("t")
        peer = await asyncio.wait_for(anext(alice.watch()), 10)
        await alice.join("t").send(peer.peer_id, b"no pytest")
        print((await asyncio.wait_for(anext(inbox), 10)).message.decode())
    finally:
        await network.close()

asyncio.run(main())
assert "pytest" not in sys.modules and "_pytest" not in sys.modules, "pytest was imported"
assert DHTTestnet(1).size == 1
"""
    run = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=60, env=clean_environ()
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "no pytest\n"
