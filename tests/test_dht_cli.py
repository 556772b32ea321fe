"""`peersockets dht-node` and `peersockets chat` on the DHT, from the command line as a user runs them.

The chats use a local network (a DHTTestnet in the test's process) or a closed port: never the
public DHT.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from lineproc import LineProcess, Processes, fixture_procs  # noqa: F401 (the procs fixture)

from peersockets.dht import DHT
from peersockets.testing import DHTTestnet
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


# -- peersockets chat on the DHT --------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
COMMAND = (sys.executable, "-m", "peersockets")
KEY = "cd" * 32
DHT_LINE = r"^dht:\s+"
NO_ADDRESS_YET = 6.0 + TIMEOUT
"""A bootstrap node that does not answer is given up on after about 6 s (4 sends of 1 s)."""

# The peersockets command, made safe and quick for a test of the public DHT's case: a DHT
# request to anything but loopback ends it (exit 97); the public DHT's bootstrap list is
# replaced by names that do not resolve until the file $ONLINE exists (then they are
# 127.0.0.1, as if the machine came online), and bootstrap is retried every $RETRY seconds.
# Run it on asyncio's loop: uvloop resolves names without socket.getaddrinfo.
OFFLINE_COMMAND = """
import os, socket, sys
from peersockets import cli, hyperswarm
from peersockets.dht.node import RPCNode

send = RPCNode._send_request
def loopback_only(self, address, *args, **kwargs):
    if not address[0].startswith("127."):
        sys.stderr.write(f"refused: a DHT request to {address}\\n")
        os._exit(97)
    return send(self, address, *args, **kwargs)
RPCNode._send_request = loopback_only

resolve = socket.getaddrinfo
def offline_until_told(host, *args, **kwargs):
    if str(host).endswith(".invalid"):
        if not os.path.exists(os.environ["ONLINE"]):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        host = "127.0.0.1"
    return resolve(host, *args, **kwargs)
socket.getaddrinfo = offline_until_told

hyperswarm.DEFAULT_BOOTSTRAP = cli.DEFAULT_BOOTSTRAP = tuple(os.environ["PUBLIC"].split(","))
hyperswarm.BOOTSTRAP_RETRY = (float(os.environ["RETRY"]),)
sys.exit(cli.main(sys.argv[1:]))
"""


def bootstrap_of(testnet: DHTTestnet) -> str:
    host, port = testnet.bootstrap[0]
    return f"{host}:{port}"


@pytest.fixture
def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 where nothing listens (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def start_chat(procs: Processes, name: str, *args: str) -> tuple[LineProcess, str]:
    """``peersockets chat KEY *args``: the program and its public key."""
    chat = await procs.start(name, *COMMAND, "chat", KEY, *args, cwd=ROOT)
    return chat, (await chat.expect(r"^public key: ([0-9a-f]{64})$"))[1]


async def expect_in_order(chat: LineProcess, *patterns: str, timeout: float = TIMEOUT) -> None:
    """Lines matching ``patterns`` come, in this order (other lines may come between)."""
    at = -1
    for pattern in patterns:
        match = await chat.expect(pattern, timeout)
        index = chat.lines.index(match.string, at + 1)
        assert index > at, f"{pattern!r} came out of order\n{chat.describe()}"
        at = index


async def stop_with_ctrl_c(chat: LineProcess, within: float = 3.0) -> None:
    """Ctrl-C ends the chat promptly, with exit status 0 and no traceback."""
    started = time.monotonic()
    chat.interrupt()
    assert await chat.wait(timeout=TIMEOUT) == 0
    assert time.monotonic() - started < within, f"Ctrl-C took {time.monotonic() - started:.1f} s"
    assert "Traceback" not in chat.stderr_text


async def test_two_chats_meet_on_the_dht_with_no_address(procs: Processes, dht_testnet: DHTTestnet) -> None:
    where = bootstrap_of(dht_testnet)
    a, a_key = await start_chat(procs, "chat a", "--bootstrap", where)
    await expect_in_order(
        a,
        rf"{DHT_LINE}looking up the drive on the DHT \(bootstrap {re.escape(where)}\)\.\.\.$",
        rf"{DHT_LINE}\d+ nodes? known$",
        rf"{DHT_LINE}announced: others can find us now$",
        rf"{DHT_LINE}nobody has joined this drive yet; waiting for peers \(they will find us\)$",
    )
    b, b_key = await start_chat(procs, "chat b", "--bootstrap", where)
    await expect_in_order(
        b,
        rf"{DHT_LINE}looking up the drive on the DHT",
        rf"{DHT_LINE}\d+ nodes? known$",
        rf"{DHT_LINE}announced: others can find us now$",
        rf"{DHT_LINE}found 1 peer, connecting\.\.\.$",
        rf"{DHT_LINE}connected to {a_key[:8]}$",
        rf"^\* peer 1 {a_key[:8]} joined \(1 peer connected\)$",
    )
    await expect_in_order(
        a,
        rf"{DHT_LINE}connected to {b_key[:8]} \(it found us\)$",
        rf"^\* peer 1 {b_key[:8]} joined \(1 peer connected\)$",
    )
    await b.send_line("found you on the DHT")
    await a.expect(rf"^\[peer 1 {b_key[:8]}\] found you on the DHT$")
    await a.send_line("hello back")
    await b.expect(rf"^\[peer 1 {a_key[:8]}\] hello back$")
    await a.end_input()
    assert await a.wait() == 0
    await b.expect(
        rf"^\* peer 1 {a_key[:8]} left \(0 peers connected\);"
        r" waiting for peers \(it will be found again when it returns\)$"
    )
    await stop_with_ctrl_c(b)
    assert not any("nobody has joined" in line for line in b.lines)
    assert a.stderr_text == "" and b.stderr_text == ""


async def test_listen_and_bootstrap_together_take_peers_from_both(
    procs: Processes, dht_testnet: DHTTestnet
) -> None:
    where = bootstrap_of(dht_testnet)
    hub, _ = await start_chat(procs, "hub", "--listen", "127.0.0.1:0", "--bootstrap", where)
    port = (await hub.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1]
    await hub.expect(rf"{DHT_LINE}nobody has joined this drive yet")
    _by_dht, dht_key = await start_chat(procs, "by dht", "--bootstrap", where)
    _by_tcp, tcp_key = await start_chat(procs, "by tcp", "--connect", port)
    await hub.expect(rf"{DHT_LINE}connected to {dht_key[:8]} \(it found us\)$")
    await hub.expect(rf"^\* peer \d {dht_key[:8]} joined")
    await hub.expect(rf"^\* peer \d {tcp_key[:8]} joined")
    assert not any(tcp_key[:8] in line for line in hub.lines if line.startswith("dht:"))
    await stop_with_ctrl_c(hub)


async def test_no_bootstrap_node_answering_is_a_warning_the_chat_goes_on_and_ctrl_c_exits(
    procs: Processes, closed_udp_port: int
) -> None:
    where = f"127.0.0.1:{closed_udp_port}"
    chat, _ = await start_chat(procs, "chat", "--bootstrap", where)
    await chat.expect(rf"{DHT_LINE}looking up the drive on the DHT \(bootstrap {where}\)\.\.\.$")
    await chat.expect(
        rf"{DHT_LINE}no bootstrap node answered \({where}\): still trying \(again in 5 s\);"
        rf" is a DHT node running there\? \('peersockets dht-node --port {closed_udp_port}' starts one\)$",
        timeout=NO_ADDRESS_YET,
    )
    await chat.send_line("anyone?")  # it still reads its input, and says nobody is there
    for _ in range(200):
        if "nobody has joined the drive yet" in chat.stderr_text:
            break
        await asyncio.sleep(0.02)
    assert "(nobody has joined the drive yet: the message was not sent)" in chat.stderr_text
    assert chat.proc.returncode is None
    await stop_with_ctrl_c(chat)
    assert sum(line.startswith("dht:") for line in chat.lines) == 2


async def test_public_dht_names_that_do_not_resolve_are_retried_until_they_do(
    procs: Processes, dht_testnet: DHTTestnet, tmp_path: Path
) -> None:
    """As on a machine offline: the public DHT's names do not resolve. The chat says so, keeps
    trying, and finds the network once they resolve; Ctrl-C exits at any point."""
    online = tmp_path / "online"
    port = dht_testnet.bootstrap[0][1]
    env = {
        **os.environ,
        "PEERSOCKETS_LOOP": "asyncio",
        "ONLINE": str(online),
        "PUBLIC": f"node1.invalid:{port},node2.invalid:{port}",
        "RETRY": "1",
    }
    chat = await procs.start(
        "chat", sys.executable, "-c", OFFLINE_COMMAND, "chat", KEY, cwd=ROOT, env=env
    )
    await expect_in_order(
        chat,
        rf"{DHT_LINE}looking up the drive on the public DHT\.\.\.$",
        rf"{DHT_LINE}no bootstrap node answered \(node1\.invalid:{port}, node2\.invalid:{port}:"
        r" the names do not resolve\): still trying \(again in 1 s\); is this machine online\?$",
        rf"{DHT_LINE}still no bootstrap node answered: still trying \(again in 1 s\)$",
    )
    online.touch()
    await expect_in_order(
        chat,
        rf"{DHT_LINE}a bootstrap node answered: \d+ nodes? known$",
        rf"{DHT_LINE}announced: others can find us now$",
        rf"{DHT_LINE}nobody has joined this drive yet; waiting for peers",
    )
    await stop_with_ctrl_c(chat)
    assert "refused" not in chat.stderr_text


async def test_the_python_example_meets_peersockets_chat_on_the_dht(
    procs: Processes, dht_testnet: DHTTestnet
) -> None:
    where = bootstrap_of(dht_testnet)
    cli, cli_key = await start_chat(procs, "peersockets chat", "--bootstrap", where)
    await cli.expect(rf"{DHT_LINE}nobody has joined this drive yet")
    example = await procs.start(
        "chat.py", sys.executable, str(ROOT / "examples" / "chat.py"), KEY, "--bootstrap", where, cwd=ROOT
    )
    example_key = (await example.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    await expect_in_order(
        example,
        rf"{DHT_LINE}looking up the drive on the DHT \(bootstrap {re.escape(where)}\)\.\.\.$",
        rf"{DHT_LINE}announced: others can find us now$",
        rf"{DHT_LINE}found 1 peer$",
    )
    await example.expect(rf"^\* peer 1 {cli_key[:8]} joined \(1 peer connected\)$")
    await example.expect(rf"{DHT_LINE}connected to {cli_key[:8]}$")
    await cli.expect(rf"^\* peer 1 {example_key[:8]} joined \(1 peer connected\)$")
    await example.send_line("hello from examples/chat.py")
    await cli.expect(rf"^\[peer 1 {example_key[:8]}\] hello from examples/chat.py$")
    await cli.send_line("hello from peersockets chat")
    await example.expect(rf"^\[peer 1 {cli_key[:8]}\] hello from peersockets chat$")
    await example.end_input()
    assert await example.wait() == 0
    await cli.expect(rf"^\* peer 1 {example_key[:8]} left")
    await stop_with_ctrl_c(cli)
    assert "Traceback" not in example.stderr_text


GONE = r"; waiting for peers \(it will be found again when it returns\)$"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("first", ["a", "b"], ids=["b-finds-a", "a-finds-b"])
async def test_a_peer_that_leaves_is_met_again_when_it_returns(
    procs: Processes, dht_testnet: DHTTestnet, first: str
) -> None:
    """Chat a and chat b meet; b quits; a says it waits; b comes back (the same key, a new
    process) and the two meet again and talk. ``first``: which chat starts first (the other
    one finds it on the DHT and dials it)."""
    where = bootstrap_of(dht_testnet)
    seed = "22" * 32
    b_key = KeyPair.from_seed(bytes.fromhex(seed)).public_key.hex()

    async def start_b(name: str) -> LineProcess:
        b, _ = await start_chat(procs, name, "--bootstrap", where, "--key-seed", seed)
        return b

    if first == "a":
        a, a_key = await start_chat(procs, "chat a", "--bootstrap", where)
        await a.expect(rf"{DHT_LINE}nobody has joined this drive yet")
        b = await start_b("chat b")
    else:
        b = await start_b("chat b")
        await b.expect(rf"{DHT_LINE}nobody has joined this drive yet")
        a, a_key = await start_chat(procs, "chat a", "--bootstrap", where)
    await a.expect(rf"^\* peer 1 {b_key[:8]} joined \(1 peer connected\)$")
    await b.expect(rf"^\* peer 1 {a_key[:8]} joined \(1 peer connected\)$")

    await b.end_input()
    assert await b.wait() == 0
    await a.expect(rf"^\* peer 1 {b_key[:8]} left \(0 peers connected\){GONE}")

    back = await start_b("chat b, back")
    await a.expect(rf"^\* peer 2 {b_key[:8]} joined \(1 peer connected\)$")
    await back.expect(rf"^\* peer 1 {a_key[:8]} joined \(1 peer connected\)$")
    await back.send_line("back again")
    await a.expect(rf"^\[peer 2 {b_key[:8]}\] back again$")
    await a.send_line("welcome back")
    await back.expect(rf"^\[peer 1 {a_key[:8]}\] welcome back$")
    await stop_with_ctrl_c(back)
    await stop_with_ctrl_c(a)
    assert a.stderr_text == ""


async def test_a_peer_on_the_dht_that_has_not_opened_the_drive_is_reported(
    procs: Processes, dht_testnet: DHTTestnet
) -> None:
    """A peer that dials the chat by its public key on the DHT, but has another drive."""
    from peersockets import Peersockets, Swarm

    chat, chat_key = await start_chat(procs, "chat", "--bootstrap", bootstrap_of(dht_testnet))
    await chat.expect(rf"{DHT_LINE}nobody has joined this drive yet")
    async with Swarm(bootstrap=dht_testnet.bootstrap) as swarm, Peersockets(swarm, "ef" * 32):
        swarm.join_peer(bytes.fromhex(chat_key))
        stranger = swarm.public_key.hex()[:8]
        await chat.expect(rf"{DHT_LINE}connected to {stranger} \(it found us\)$")
        await chat.expect(
            rf"^\* connected to {stranger} at 127\.0\.0\.1:\d+, but it has not opened this drive:"
            r" check the key$"
        )
    await stop_with_ctrl_c(chat)
    assert not any(re.match(r"^\* peer ", line) for line in chat.lines)


async def test_verbose_chat_on_the_dht_prints_every_step_and_logs_its_connections(
    procs: Processes, dht_testnet: DHTTestnet
) -> None:
    where = bootstrap_of(dht_testnet)
    quiet, quiet_key = await start_chat(procs, "chat", "--bootstrap", where)
    await quiet.expect(rf"{DHT_LINE}nobody has joined this drive yet")
    loud, loud_key = await start_chat(procs, "chat -v", "--bootstrap", where, "-v")
    await expect_in_order(
        loud,
        rf"{DHT_LINE}listening for connections to our public key \(\d+ relays?\)$",
        rf"{DHT_LINE}announced: others can find us now$",
        rf"{DHT_LINE}connecting to {quiet_key[:8]}\.\.\.$",
        rf"{DHT_LINE}connected to {quiet_key[:8]}$",
        rf"^\* peer 1 {quiet_key[:8]} joined \(1 peer connected\)$",
    )
    await quiet.expect(rf"^\* peer 1 {loud_key[:8]} joined \(1 peer connected\)$")
    await stop_with_ctrl_c(quiet)
    await loud.expect(rf"{DHT_LINE}disconnected from {quiet_key[:8]}$")
    await stop_with_ctrl_c(loud)
    logged = loud.stderr_text.splitlines()
    assert re.fullmatch(r"peersockets\.cli: event loop: (uvloop|asyncio)", logged[0]), logged
    made = rf"peersockets\.cli: connected to {quiet_key[:8]} at 127\.0\.0\.1:\d+ \(dialled on the DHT\)"
    closed = rf"peersockets\.cli: connection to {quiet_key[:8]} at 127\.0\.0\.1:\d+ closed"
    assert any(re.fullmatch(made, line) for line in logged), logged
    assert any(re.match(closed, line) for line in logged), logged
    # without -v: the steps worth knowing only, and nothing logged
    assert quiet.stderr_text == ""
    assert not any("connecting to" in line or "listening for" in line for line in quiet.lines)
