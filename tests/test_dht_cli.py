"""`peersockets dht-node`: a DHT node from the command line, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest

from peersockets.dht import DHT
from peersockets.wire.crypto import KeyPair

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 20.0
ADDRESS = re.compile(r"^dht-node on (\S+):(\d+) \(node id [0-9a-f]{16}\)$")


async def start_node(*args: str) -> tuple[asyncio.subprocess.Process, tuple[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peersockets", "dht-node", "--host", "127.0.0.1", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().strip()
    match = ADDRESS.match(line)
    assert match, line
    return proc, (match.group(1), int(match.group(2)))


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    try:
        return await asyncio.wait_for(proc.wait(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


async def test_two_nodes_make_a_network_that_clients_use_and_ctrl_c_exits_0() -> None:
    first, address = await start_node("--stats-interval", "0.3")
    second, _ = await start_node("--bootstrap", f"{address[0]}:{address[1]}", "--stats-interval", "0.3")
    try:
        assert first.stdout is not None and second.stdout is not None
        line = (await asyncio.wait_for(first.stdout.readline(), TIMEOUT)).decode()
        assert "a new network" in line and f"--bootstrap {address[0]}:{address[1]}" in line
        assert "joined the network" in (await asyncio.wait_for(second.stdout.readline(), TIMEOUT)).decode()
        topic, kp = os.urandom(32), KeyPair.generate()
        async with DHT(bootstrap=[address], host="127.0.0.1") as a, DHT(bootstrap=[address], host="127.0.0.1") as b:
            await asyncio.wait_for(a.announce(topic, kp), TIMEOUT)
            assert [p.public_key async for p in b.lookup(topic)] == [kp.public_key]
        for _ in range(50):
            line = (await asyncio.wait_for(first.stdout.readline(), TIMEOUT)).decode()
            assert line.startswith("stats: ")
            if " 1 records on 1 topics" in line:
                break
        else:
            pytest.fail("the stats lines never showed the stored record")
    finally:
        codes = [await stop(first), await stop(second)]
    assert codes == [0, 0]


async def test_a_bad_port_is_a_usage_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peersockets", "dht-node", "--port", "70000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2
    assert b"a port is 0-65535, got '70000'" in err


async def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    first, address = await start_node()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "peersockets", "dht-node", "--host", "127.0.0.1", "--port", str(address[1]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 1
        assert err.decode().count("\n") == 1 and str(address[1]) in err.decode()
    finally:
        assert await stop(first) == 0
