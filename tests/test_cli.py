"""The ``peersockets`` command, run as a user runs it: demo, keygen, chat, and bad arguments."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_until
from lineproc import LineProcess, Processes, fixture_procs  # noqa: F401 (the procs fixture)

from peersockets import KeyPair, Peersockets, Swarm, Topic, __version__, parse_drive_key
from peersockets.cli import HINT, _Chat, _Console, build_parser
from peersockets.keys import z32_encode

ROOT = Path(__file__).resolve().parent.parent
COMMAND = (sys.executable, "-m", "peersockets")
KEY = "ab" * 32
RUN_TIMEOUT = 60.0
TIMELINE = re.compile(r"^\+(\d+\.\d{3})s  (\S+(?: -> \S+)?)\s+ (.+)$")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert not _uses_the_public_dht(args), f"this would join the public DHT: {args}"
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )


def _uses_the_public_dht(args: tuple[str, ...]) -> bool:
    """A chat with no address and no --bootstrap looks the drive up on the public DHT: the
    tests never run one (arguments that fail to parse do not get that far)."""
    if args[:1] != ("chat",):
        return False
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            parsed = build_parser().parse_args(list(args))
    except SystemExit:  # a usage error, or --help
        return False
    return not (parsed.listen or parsed.connect or parsed.bootstrap)


def timeline(stdout: str) -> list[tuple[float, str, str]]:
    return [
        (float(m[1]), m[2], m[3]) for line in stdout.splitlines() if (m := TIMELINE.match(line))
    ]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket holds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- demo ----------------------------------------------------------------------------------


def test_demo_prints_the_timeline_and_exits_0() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    events = timeline(result.stdout)
    times = [t for t, _, _ in events]
    assert times == sorted(times)
    names = ["alice", "bob", "carol"]
    said = {(who, what) for _, who, what in events}
    for name in names:
        assert any(w == name and s.startswith("listening on 127.0.0.1:") for w, s in said)
    assert ("bob", f"connected to alice at 127.0.0.1:{_port_of(events, 'alice')}") in said
    joins = [(w, s) for w, s in said if " join the drive as peer " in s]
    assert len(joins) == 6
    for observer in names:
        seen = {re.match(r"sees (\w+) join", s)[1] for w, s in joins if w == observer}  # type: ignore[index]
        assert seen == set(names) - {observer}
    for sender in names:
        for receiver in set(names) - {sender}:
            assert (f"{sender} -> {receiver}", f'"hello {receiver}, I am {sender}"') in said
            assert (f"{receiver} -> {sender}", f'"hi {sender}, {receiver} here"') in said
    assert ("carol", "leaves: closes its Peersockets and its Swarm") in said
    leaves = sorted(
        w for w, s in said if re.fullmatch(r"sees carol \(peer \d+\) leave the drive", s)
    )
    assert leaves == ["alice", "bob"]
    # the leave comes after every message, and nothing is printed about carol after it
    order = [s for _, _, s in events]
    assert order.index("leaves: closes its Peersockets and its Swarm") == len(order) - 3
    assert "Done in" in result.stdout
    assert "3 peers joined, 12 messages, 2 leaves seen" in result.stdout


def _port_of(events: list[tuple[float, str, str]], name: str) -> int:
    for _, who, what in events:
        if who == name and (m := re.match(r"listening on 127\.0\.0\.1:(\d+)", what)):
            return int(m[1])
    raise AssertionError(f"no listening line for {name}")


def test_demo_with_more_peers_and_a_topic() -> None:
    result = run("demo", "--peers", "4", "--topic", "lobby")
    assert result.returncode == 0, result.stderr
    assert "chat on topic 'lobby'" in result.stdout
    events = timeline(result.stdout)
    assert sum(" join the drive as peer " in s for _, _, s in events) == 12
    assert sum(" -> " in w for _, w, _ in events) == 24
    assert sum(s.startswith("sees dave (peer ") for _, _, s in events) == 3
    assert "4 peers joined, 24 messages, 3 leaves seen" in result.stdout


def test_demo_gives_up_with_one_line_when_a_step_does_not_happen() -> None:
    result = run("demo", "--timeout", "0.001")
    assert result.returncode == 1
    assert _one_line(result.stderr).startswith("peersockets demo: error: timed out after 0.001 s")


# -- keygen, --version, --help -------------------------------------------------------------


def test_keygen_prints_a_key_pair_and_a_drive_key() -> None:
    result = run("keygen")
    assert result.returncode == 0, result.stderr
    fields: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"([a-z0-9 ]+):\s+(\S+)", line)
        assert match, f"not a 'name: value' line: {line!r}"
        fields[match[1]] = match[2]
    public, secret, seed = fields["public key"], fields["secret key"], fields["key seed"]
    assert re.fullmatch(r"[0-9a-f]{64}", public) and re.fullmatch(r"[0-9a-f]{128}", secret)
    assert secret == seed + public
    assert KeyPair.from_seed(bytes.fromhex(seed)).public_key.hex() == public
    drive = bytes.fromhex(fields["drive key"])
    assert len(drive) == 32
    assert fields["drive z32"] == z32_encode(drive)
    assert fields["drive url"] == f"hyper://{drive.hex()}/"
    for spelling in (fields["drive key"], fields["drive z32"], fields["drive url"]):
        assert parse_drive_key(spelling) == drive
    assert "--key-seed" in result.stderr  # a hint how to use it
    again = run("keygen").stdout
    assert fields["drive key"] not in again and public not in again


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"peersockets {__version__}"


@pytest.mark.parametrize("command", [[], ["demo"], ["chat"], ["keygen"]])
def test_help_has_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: peersockets" in result.stdout
    assert "example" in result.stdout


# -- bad arguments -------------------------------------------------------------------------


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["chat", "xyz"], "argument DRIVE_KEY: not a drive key: 'xyz'"),
        (["chat", "ab" * 31], f"not a drive key: '{'ab' * 31}'"),
        (["chat", "0" * 52], "0" * 52),  # 52 characters, but not z-base-32
        (["chat", "hyper://nope/"], "not a drive key: 'hyper://nope/'"),
        (
            ["chat", KEY, "--connect", "nohost"],
            "argument --connect: not a HOST:PORT address: 'nohost'",
        ),
        (["chat", KEY, "--connect", "127.0.0.1:http"], "not a HOST:PORT address: '127.0.0.1:http'"),
        (["chat", KEY, "--connect", "127.0.0.1:0"], "port 0 out of range in '127.0.0.1:0'"),
        (["chat", KEY, "--listen", "127.0.0.1:70000"], "port 70000 out of range"),
        (["chat", KEY, "--listen", "::1:4000"], "write IPv6 hosts in brackets"),
        (["chat", KEY, "--key-seed", "zz"], "argument --key-seed: not a key seed: 'zz'"),
        (
            ["chat", KEY, "--bootstrap", "nohost"],
            "argument --bootstrap: not a HOST:PORT address: 'nohost'",
        ),
        (["chat", KEY, "--bootstrap", "127.0.0.1:0"], "port 0 out of range in '127.0.0.1:0'"),
        (["chat", KEY, "--bootstrap", "[::1]:49737"], "'[::1]:49737' (the Hyperswarm DHT is IPv4"),
        (["chat"], "the following arguments are required: DRIVE_KEY"),
        (["demo", "--peers", "1"], "argument --peers: 1: use 2 to 10 peers"),
        (["demo", "--timeout", "-1"], "the timeout must be positive"),
        (["demo", "--topic", ""], "the topic must not be empty"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "choose a command: demo, chat, dht-node or keygen"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith("peersockets")
    assert expected in line
    assert result.stdout == ""


def test_connection_refused_gives_one_line(closed_port: int) -> None:
    result = run("chat", KEY, "--connect", f"127.0.0.1:{closed_port}")
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line == (
        f"peersockets chat: error: cannot connect to 127.0.0.1:{closed_port}:"
        " connection refused (nothing is listening there)"
    )


def test_port_in_use_gives_one_line(busy_port: int) -> None:
    result = run("chat", KEY, "--listen", f"127.0.0.1:{busy_port}")
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith(
        f"peersockets chat: error: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"\x05\x00\x00hello", "the handshake failed (handshake message 2 is 5 bytes"),
        (b"", "the remote closed the connection during the handshake"),
    ],
)
def test_connecting_to_something_that_is_not_a_peer_gives_one_line(
    answer: bytes, expected: str
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        process = subprocess.Popen(
            [*COMMAND, "chat", KEY, "--connect", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            server.settimeout(RUN_TIMEOUT)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(RUN_TIMEOUT)
                conn.recv(4096)  # read the first handshake message, so closing sends FIN, not RST
                conn.sendall(answer)  # then close: not a hypercore peer
            _out, err = process.communicate(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 1
    line = _one_line(err)
    assert line.startswith(f"peersockets chat: error: cannot connect to 127.0.0.1:{port}: ")
    assert expected in line


# -- chat ----------------------------------------------------------------------------------


async def test_two_chats_talk_both_ways_and_exit_0_at_end_of_input(procs: Processes) -> None:
    a = await procs.start("chat a", *COMMAND, "chat", KEY, "--listen", "127.0.0.1:0", cwd=ROOT)
    port = int((await a.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1])
    a_key = (await a.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    # b spells the same drive key in z-base-32, and picks its identity from a seed
    seed = "11" * 32
    b_key = KeyPair.from_seed(bytes.fromhex(seed)).public_key.hex()
    z32 = z32_encode(bytes.fromhex(KEY))
    b = await procs.start(
        "chat b",
        *COMMAND,
        "chat",
        z32,
        "--connect",
        f"127.0.0.1:{port}",
        "--key-seed",
        seed,
        cwd=ROOT,
    )
    assert (await b.expect(r"^drive key:\s+([0-9a-f]{64})"))[1] == KEY
    assert (await b.expect(r"^public key: ([0-9a-f]{64})$"))[1] == b_key
    await b.expect(rf"^connected:\s+127\.0\.0\.1:{port} \(public key {a_key[:8]}\)$")
    await a.expect(rf"^\* peer 1 {b_key[:8]} joined \(1 peer connected\)$")
    await b.expect(rf"^\* peer 1 {a_key[:8]} joined \(1 peer connected\)$")

    await a.send_line("hello from a")
    await b.expect(rf"^\[peer 1 {a_key[:8]}\] hello from a$")
    await b.send_line("grüße from b ✓")
    await a.expect(rf"^\[peer 1 {b_key[:8]}\] grüße from b ✓$")
    await b.send_line("\x1b[31mred\x1b[0m")  # escape sequences from peers are shown, not obeyed
    await a.expect(rf"^\[peer 1 {b_key[:8]}\] \\x1b\[31mred\\x1b\[0m$")

    await a.end_input()
    assert await a.wait() == 0
    # b only dialled a: it says that nobody can reach it now
    await b.expect(
        rf"^\* peer 1 {a_key[:8]} left \(0 peers connected\); no peer can reach this chat now"
        r" \(it neither listens nor uses the DHT\)$"
    )
    await b.send_line("anyone?")
    await b.end_input()
    assert await b.wait() == 0
    assert "nobody has joined the drive yet" in b.stderr_text
    assert "Traceback" not in a.stderr_text + b.stderr_text
    assert not any("left" in line for line in a.lines)  # its own close is not news


async def test_chat_listens_on_a_free_port_and_exits_0_on_ctrl_c(procs: Processes) -> None:
    chat = await procs.start("chat", *COMMAND, "chat", KEY, "--listen", "0", cwd=ROOT)
    await chat.expect(r"^listening:\s+127\.0\.0\.1:\d+$")
    chat.interrupt()
    assert await chat.wait() == 0
    assert "Traceback" not in chat.stderr_text


async def test_chat_exits_0_at_once_when_input_is_empty(procs: Processes) -> None:
    chat = await procs.start(
        "chat", *COMMAND, "chat", f"hyper://{KEY}/", "--listen", "127.0.0.1:0", cwd=ROOT
    )
    await chat.end_input()
    assert await chat.wait() == 0
    assert chat.stderr_text == ""


async def test_three_chats_on_another_topic(procs: Processes) -> None:
    hub = await procs.start(
        "hub", *COMMAND, "chat", KEY, "--topic", "lobby", "--listen", "127.0.0.1:0", cwd=ROOT
    )
    port = int((await hub.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1])
    others = [
        await procs.start(
            name, *COMMAND, "chat", KEY, "--topic", "lobby", "--connect", str(port), cwd=ROOT
        )
        for name in ("one", "two")
    ]
    # a chat on another topic of the same drive hears nothing of the lobby
    stranger = await procs.start(
        "stranger", *COMMAND, "chat", KEY, "--connect", f"127.0.0.1:{port}", cwd=ROOT
    )
    for chat in [*others, stranger]:
        await chat.expect(r"^\* peer 1 [0-9a-f]{8} joined")
    await hub.expect(r"^\* peer \d [0-9a-f]{8} joined \(3 peers connected\)$")
    await hub.send_line("welcome")
    for chat in others:
        await chat.expect(r"^\[peer 1 [0-9a-f]{8}\] welcome$")
    for chat in [hub, *others, stranger]:
        await chat.end_input()
        assert await chat.wait() == 0
    assert not any("welcome" in line for line in stranger.lines)


# The chat command with other per-member limits: argv is BACKLOG_LINES BACKLOG_BYTES
# STUCK_SECONDS, then the command's own arguments.
CHAT_WITH_LIMITS = (
    "import sys\n"
    "from peersockets import cli\n"
    "cli.BACKLOG_LINES, cli.BACKLOG_BYTES = int(sys.argv[1]), int(sys.argv[2])\n"
    "cli.STUCK_SECONDS = float(sys.argv[3])\n"
    "sys.exit(cli.main(sys.argv[4:]))\n"
)
LONG_LINE = 256 * 1024  # long lines fill the stuck member's TCP buffers after a few MiB
MAX_LINES = 320  # 80 MiB at most: far more than loopback TCP buffers hold


async def start_patched_chat(procs: Processes, script: str, *settings: str) -> tuple[LineProcess, int]:
    """``peersockets chat`` on the drive, listening on a free port, run by ``script`` (which
    patches the command with ``settings`` first): the process and its port."""
    chat = await procs.start(
        "chat", sys.executable, "-c", script, *settings, "chat", KEY, "--listen", "127.0.0.1:0", cwd=ROOT
    )
    port = int((await chat.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1])
    return chat, port


@pytest.mark.parametrize(
    ("backlog_lines", "backlog_bytes", "stuck_seconds", "why"),
    [
        (4, 2**30, 60.0, r"5 lines unsent"),
        (100_000, 3 * LONG_LINE, 60.0, r"3 lines unsent"),
        (100_000, 2**30, 1.0, r"no line accepted for 1 s, \d+ lines? unsent"),
    ],
    ids=["backlog-lines", "backlog-bytes", "nothing-accepted"],
)
async def test_a_member_that_stops_reading_is_dropped_and_the_others_never_notice(
    procs: Processes, backlog_lines: int, backlog_bytes: int, stuck_seconds: float, why: str
) -> None:
    """Each member has its own backlog: one that stops reading is reported and disconnected
    when its backlog is full or it accepts nothing for a while; the others get every line."""
    chat, port = await start_patched_chat(
        procs, CHAT_WITH_LIMITS, str(backlog_lines), str(backlog_bytes), str(stuck_seconds)
    )
    async with Swarm(dht=False) as stuck_swarm, Swarm(dht=False) as healthy_swarm:
        # a member whose topic is never read: after two messages its connection stops reading
        stuck = Peersockets(stuck_swarm, KEY, max_queue_messages=2)
        stuck.join("chat")
        healthy = Peersockets(healthy_swarm, KEY)
        topic = healthy.join("chat")
        received: list[bytes] = []
        sent: list[bytes] = []

        async def read() -> None:
            async for message in topic:
                received.append(message.message)

        async def all_arrived() -> None:
            try:
                await wait_until(lambda: len(received) == len(sent), timeout=10.0)
            except AssertionError:
                raise AssertionError(
                    f"the healthy member got {len(received)} of {len(sent)} lines\n"
                    f"{chat.describe()[:4000]}"
                ) from None

        async def say() -> None:
            """Type one long line into the chat; wait until the healthy member has it."""
            line = f"{len(sent):05d} ".encode() + b"x" * LONG_LINE
            sent.append(line)
            await chat.send_line(line.decode())
            await all_arrived()

        reader = asyncio.create_task(read())
        try:
            await stuck_swarm.connect("127.0.0.1", port)  # peer 1: sent to first, before the fix
            await chat.expect(r"^\* peer 1 [0-9a-f]{8} joined \(1 peer connected\)$")
            await healthy_swarm.connect("127.0.0.1", port)
            await chat.expect(r"^\* peer 2 [0-9a-f]{8} joined \(2 peers connected\)$")
            await wait_until(lambda: bool(stuck.peers and healthy.peers))

            for _ in range(MAX_LINES):  # until the chat gives up on the stuck member
                await say()
                if any(" is not reading: " in line for line in chat.lines):
                    break
            stuck_key = stuck_swarm.public_key.hex()[:8]
            await chat.expect(rf"^\* peer 1 {stuck_key} is not reading: disconnected \({why}\)$")
            await chat.expect(rf"^\* peer 1 {stuck_key} left \(1 peer connected\)$")
            for _ in range(3):  # the healthy member goes on as if nothing happened
                await say()
            await chat.end_input()
            assert await chat.wait() == 0
            assert received == sent  # every line, in order, none twice
            assert sum(" is not reading: " in line for line in chat.lines) == 1
            assert "Traceback" not in chat.stderr_text
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stuck.close()
            await healthy.close()


@dataclass
class InProcessChat:
    """A _Chat in this process fed from a queue, and members that record what they get."""

    chat: _Chat
    lines: asyncio.Queue[bytes | None]
    members: list[Swarm]
    received: list[list[bytes]]


@contextlib.asynccontextmanager
async def chat_in_process(members: int, **limits: float) -> AsyncIterator[InProcessChat]:
    """The chat's side of the command with ``members`` peers connected over loopback TCP.

    The body ends the input (puts None); leaving waits for the chat to finish."""
    async with contextlib.AsyncExitStack() as stack:
        chat_swarm = await stack.enter_async_context(Swarm(dht=False))
        host, port = await chat_swarm.listen("127.0.0.1", 0)
        ps = await stack.enter_async_context(Peersockets(chat_swarm, KEY))
        events = ps.watch()
        chat = _Chat(ps, ps.join("chat"), events, **limits)  # type: ignore[arg-type]
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        swarms: list[Swarm] = []
        joined: list[Peersockets] = []
        received: list[list[bytes]] = []
        tasks: list[asyncio.Task[None]] = []

        async def read(topic: Topic, into: list[bytes]) -> None:
            async for message in topic:
                into.append(message.message)

        try:
            tasks.append(asyncio.create_task(chat.run(lines)))
            for _ in range(members):
                swarm = await stack.enter_async_context(Swarm(dht=False))
                member = await stack.enter_async_context(Peersockets(swarm, KEY))
                swarms.append(swarm)
                joined.append(member)
                received.append([])
                tasks.append(asyncio.create_task(read(member.join("chat"), received[-1])))
                await swarm.connect(host, port)
                await wait_until(
                    lambda: len(ps.peers) == len(swarms) and all(m.peers for m in joined)
                )
            yield InProcessChat(chat, lines, swarms, received)
            await asyncio.wait_for(tasks[0], 20.0)  # the test ended the input
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_at_end_of_input_the_chat_sends_what_is_queued_before_it_exits() -> None:
    """Lines still queued for a slow but healthy member when input ends are sent, not lost."""
    async with chat_in_process(1, backlog_bytes=2**30, flush_seconds=60.0) as c:
        conn = c.members[0].connections[0]
        hold = object()
        conn.hold_reading(hold)  # slow, not gone: it reads again once input has ended
        sent = [f"{i:05d} ".encode() + b"x" * LONG_LINE for i in range(80)]  # 20 MiB
        for line in sent:
            c.lines.put_nowait(line)

        def queued() -> int:
            member = c.chat.members.get(1)
            return len(member.backlog) if member is not None else 0

        await wait_until(lambda: c.lines.empty() and queued() > 0, timeout=10.0)
        c.lines.put_nowait(None)  # end of input
        await wait_until(lambda: c.chat.closing)  # it has seen the end, lines still queued
        conn.release_reading(hold)
        await wait_until(lambda: len(c.received[0]) == len(sent), timeout=10.0)
    assert c.received[0] == sent


async def test_a_line_too_long_for_the_topic_is_reported_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The limit is the topic's, the same for every member: one note, not one per member."""
    async with chat_in_process(2) as c:
        too_long = b"x" * (c.chat.topic.max_message_size + 1)
        for line in (b"before", too_long, b"after", None):
            c.lines.put_nowait(line)
        await wait_until(lambda: all(len(got) == 2 for got in c.received), timeout=10.0)
    assert c.received == [[b"before", b"after"]] * 2
    notes = [line for line in capsys.readouterr().err.splitlines() if "not sent" in line]
    assert notes == [
        f"(not sent: the line of {len(too_long)} bytes exceeds the limit of"
        f" {len(too_long) - 1} bytes for topic 'chat')"
    ]


@pytest.mark.parametrize(
    ("env", "loop"), [({}, "uvloop"), ({"PEERSOCKETS_LOOP": "asyncio"}, "asyncio")]
)
def test_the_command_runs_on_uvloop_when_it_is_installed(env: dict[str, str], loop: str) -> None:
    """uvloop (the speed extra, installed with the test extra) makes round trips cheaper;
    PEERSOCKETS_LOOP=asyncio asks for asyncio's own loop."""
    result = subprocess.run(
        [*COMMAND, "demo", "-v"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    assert f"event loop: {loop}" in result.stderr


# -- chat on a terminal ----------------------------------------------------------------------


def test_the_console_prints_a_line_above_the_line_being_typed() -> None:
    """The redraw: erase the input line, print, then draw what was typed again below, with the
    cursor where it was."""
    screen, errors = io.StringIO(), io.StringIO()
    typed: list[tuple[str, int] | None] = [("hel", 3)]  # the line, and the cursor's index in it
    console = _Console(screen, lambda: typed[0], lambda: 20)

    def drawn() -> str:
        text = screen.getvalue()
        screen.seek(0)
        screen.truncate()
        return text

    console.line(screen, "[peer 1 cd85ce91] hi")
    assert drawn() == "\r\x1b[J[peer 1 cd85ce91] hi\nhel"
    console.line(errors, "(a note)")  # on stderr: the input line is drawn on stdout's terminal
    assert drawn() == "\r\x1b[Jhel"
    assert errors.getvalue() == "(a note)\n"
    typed[0] = ("hexllo", 2)  # the cursor moved back: after the line, it goes back 4 columns
    console.line(screen, "x")
    assert drawn() == "\r\x1b[Jx\nhexllo\x1b[4D"
    typed[0] = ("日本 ok", 1)  # wide characters take two columns
    console.line(screen, "x")
    assert drawn() == "\r\x1b[Jx\n日本 ok\x1b[5D"
    typed[0] = ("y" * 45, 45)  # wrapped on a terminal 20 columns wide: up two rows first
    console.line(screen, "x")
    assert drawn() == "\x1b[2A\r\x1b[Jx\n" + "y" * 45
    typed[0] = ("z" * 45, 10)  # wrapped, the cursor on its first row: up two, then right 10
    console.line(screen, "x")
    assert drawn() == "\r\x1b[Jx\n" + "z" * 45 + "\x1b[2A\r\x1b[10C"
    typed[0] = ("w" * 45, 20)  # at the start of the second row: up one, column 0
    console.line(screen, "x")
    assert drawn() == "\x1b[1A\r\x1b[Jx\n" + "w" * 45 + "\x1b[1A\r"
    typed[0] = ("", 0)  # reading a line, nothing typed yet: nothing to draw again
    console.line(screen, "* peer 1 cd85ce91 left (0 peers connected)")
    assert drawn() == "\r\x1b[J* peer 1 cd85ce91 left (0 peers connected)\n"
    typed[0] = None  # no line being read (input ended): plain lines
    console.line(screen, "plain")
    assert drawn() == "plain\n"


def _controlling_terminal() -> None:
    """In the child, after setsid: make its stdin (the pty) the controlling terminal, so that
    Ctrl-C typed on it sends SIGINT as in a terminal window."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A program on a pseudo-terminal (stdin, stdout and stderr), as in a terminal window.

    ``screen`` is everything it wrote (the tty turns "\\n" into "\\r\\n"); ``expect()``
    hands out matches in order, as LineProcess does for lines.
    """

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.attributes = termios.tcgetattr(self.slave)
        self.screen = bytearray()
        self.seen = 0
        self.changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *argv: str) -> None:
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._read)
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=ROOT,
            env={**os.environ, "TERM": "xterm"},
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.screen += data
        self.changed.set()

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    async def expect(self, pattern: bytes, timeout: float = 20.0) -> re.Match[bytes]:
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while not (match := regex.search(self.screen, self.seen)):
                self.changed.clear()
                try:
                    await self.changed.wait()
                except asyncio.CancelledError:
                    raise AssertionError(
                        f"no {pattern!r} on the terminal within {timeout:g} s:\n"
                        f"{bytes(self.screen[-3000:])!r}"
                    ) from None
        self.seen = match.end()
        return match

    async def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running:\n{bytes(self.screen[-3000:])!r}") from None

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


@contextlib.asynccontextmanager
async def chat_on_a_terminal() -> AsyncIterator[tuple[Terminal, Swarm, Topic, Peersockets]]:
    """``peersockets chat`` on a pseudo-terminal, and a peer connected to it; typing works
    once this yields (the chat has said how to type)."""
    terminal = Terminal()
    try:
        await terminal.start(*COMMAND, "chat", KEY, "--listen", "127.0.0.1:0")
        port = int((await terminal.expect(rb"listening:\s+127\.0\.0\.1:(\d+)\r\n"))[1])
        await terminal.expect(re.escape(HINT.encode()))  # said as readline starts reading
        async with Swarm(dht=False) as swarm, Peersockets(swarm, KEY) as ps:
            topic = ps.join("chat")
            await swarm.connect("127.0.0.1", port)
            await terminal.expect(rb"\* peer 1 [0-9a-f]{8} joined \(1 peer connected\)\r\n")
            await wait_until(lambda: bool(ps.peers))
            yield terminal, swarm, topic, ps
    finally:
        await terminal.close()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
async def test_on_a_terminal_a_line_that_arrives_goes_above_the_line_being_typed() -> None:
    async with chat_on_a_terminal() as (terminal, _swarm, topic, ps):
        terminal.type(b"hel")
        await terminal.expect(rb"hel")  # readline echoes what it took
        await topic.send(ps.peers[0], b"hi there")
        # the half-typed line is erased, the message printed, and the line drawn again
        await terminal.expect(rb"\r\x1b\[J\[peer 1 [0-9a-f]{8}\] hi there\r\nhel")
        terminal.type(b"lo\r")  # the user goes on typing: the whole line is sent
        message = await asyncio.wait_for(anext(topic), 20.0)
        assert message.message == b"hello"
        # nothing typed (or not reading yet, the line just sent): nothing drawn after it
        await topic.send(ps.peers[0], b"again")
        await terminal.expect(rb"(\r\x1b\[J)?\[peer 1 [0-9a-f]{8}\] again\r\n")
        terminal.type(b"wrld\x1b[D\x1b[D\x1b[D")  # three times the left arrow key
        await terminal.expect(rb"wrld\x08\x08\x08")  # readline moved the cursor after the w
        await topic.send(ps.peers[0], b"third")
        await terminal.expect(rb"\r\x1b\[J\[peer 1 [0-9a-f]{8}\] third\r\nwrld\x1b\[3D")
        terminal.type(b"o\r")  # typed where the cursor is
        message = await asyncio.wait_for(anext(topic), 20.0)
        assert message.message == b"world"
        terminal.type(b"\x04")  # Ctrl-D on an empty line: end of input
        assert await terminal.wait() == 0
        assert termios.tcgetattr(terminal.slave) == terminal.attributes  # the terminal as it was
    assert b"Traceback" not in terminal.screen


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
async def test_on_a_terminal_ctrl_c_quits_and_puts_the_terminal_back() -> None:
    async with chat_on_a_terminal() as (terminal, _swarm, _topic, _ps):
        terminal.type(b"half a li")
        await terminal.expect(rb"half a li")
        terminal.type(b"\x03")  # Ctrl-C: SIGINT from the terminal, readline still reading
        assert await terminal.wait() == 0
        # readline left its settings (no echo, no line editing by the tty): put back
        assert termios.tcgetattr(terminal.slave) == terminal.attributes
    assert b"Traceback" not in terminal.screen
    assert terminal.screen.endswith(b"half a li\r\n")  # the shell's prompt on a line of its own


# -- a peer without the drive, -v ------------------------------------------------------------

# The chat command with another NO_DRIVE_SECONDS: argv is the seconds, then the command's own
# arguments.
CHAT_WITH_DRIVE_CHECK = (
    "import sys\n"
    "from peersockets import cli\n"
    "cli.NO_DRIVE_SECONDS = float(sys.argv[1])\n"
    "sys.exit(cli.main(sys.argv[2:]))\n"
)
OTHER_KEY = "ef" * 32


async def test_a_peer_that_has_not_opened_the_drive_is_reported_and_one_that_has_never_is(
    procs: Processes,
) -> None:
    chat, port = await start_patched_chat(procs, CHAT_WITH_DRIVE_CHECK, "0.5")
    async with contextlib.AsyncExitStack() as stack:

        async def peer(drive_key: str) -> tuple[str, int]:
            """A peer of ``drive_key`` connects: its short key, and its port as the chat sees it."""
            swarm = await stack.enter_async_context(Swarm(dht=False))
            await stack.enter_async_context(Peersockets(swarm, drive_key))
            conn = await swarm.connect("127.0.0.1", port)
            return swarm.public_key.hex()[:8], conn.transport.get_extra_info("sockname")[1]

        def lacks(key: str, port: int) -> str:
            return (
                rf"connected to {key} at 127\.0\.0\.1:{port}, but it has not opened this drive:"
                r" check the key"
            )

        stranger, stranger_port = await peer(OTHER_KEY)  # the same chat, on another drive
        await chat.expect(rf"^\* {lacks(stranger, stranger_port)}$")
        await chat.send_line("anyone?")  # what was not sent, and why
        await wait_until(lambda: "not sent" in chat.stderr_text)
        assert re.search(
            rf"^\(nobody has joined the drive yet: the message was not sent; {lacks(stranger, stranger_port)}\)$",
            chat.stderr_text,
            re.M,
        ), chat.describe()

        friend, _ = await peer(KEY)
        await chat.expect(rf"^\* peer 1 {friend} joined \(1 peer connected\)$")
        # a second stranger after the friend: by its report, the friend's check has run too
        second, second_port = await peer(OTHER_KEY)
        await chat.expect(rf"^\* {lacks(second, second_port)}$")
        assert [line for line in chat.lines if "has not opened" in line] == [
            f"* connected to {stranger} at 127.0.0.1:{stranger_port}, but it has not opened"
            " this drive: check the key",
            f"* connected to {second} at 127.0.0.1:{second_port}, but it has not opened"
            " this drive: check the key",
        ]
        await chat.end_input()
        assert await chat.wait() == 0
    assert "Traceback" not in chat.stderr_text


VERBOSE_CONNECTION = r"^peersockets\.cli: connected to {key} at 127\.0\.0\.1:\d+ \({how} over TCP\)$"
VERBOSE_CLOSED = r"^peersockets\.cli: connection to {key} at 127\.0\.0\.1:\d+ closed"


async def test_verbose_chat_logs_the_event_loop_and_each_connection_and_quiet_chat_does_not(
    procs: Processes,
) -> None:
    loud = await procs.start(
        "chat -v", *COMMAND, "chat", KEY, "--listen", "127.0.0.1:0", "-v", cwd=ROOT
    )
    port = int((await loud.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1])
    loud_key = (await loud.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    quiet = await procs.start("chat", *COMMAND, "chat", KEY, "--connect", str(port), cwd=ROOT)
    quiet_key = (await quiet.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    await loud.expect(rf"^\* peer 1 {quiet_key[:8]} joined")
    await quiet.expect(rf"^\* peer 1 {loud_key[:8]} joined")
    await quiet.end_input()
    assert await quiet.wait() == 0
    await loud.expect(rf"^\* peer 1 {quiet_key[:8]} left \(0 peers connected\); waiting for peers$")
    await loud.end_input()
    assert await loud.wait() == 0
    logged = loud.stderr_text.splitlines()
    assert re.fullmatch(r"peersockets\.cli: event loop: (uvloop|asyncio)", logged[0]), logged
    connected = VERBOSE_CONNECTION.format(key=quiet_key[:8], how="accepted")
    assert sum(bool(re.match(connected, line)) for line in logged) == 1, logged
    assert sum(bool(re.match(VERBOSE_CLOSED.format(key=quiet_key[:8]), line)) for line in logged) == 1
    # without -v: none of it
    assert quiet.stderr_text == ""
    assert "event loop" not in quiet.stderr_text


def test_verbose_demo_logs_the_event_loop_and_each_connection() -> None:
    result = run("demo", "-v")
    assert result.returncode == 0, result.stderr
    logged = result.stderr.splitlines()
    assert re.fullmatch(r"peersockets\.cli: event loop: (uvloop|asyncio)", logged[0]), logged
    made = [
        line
        for line in logged
        if re.fullmatch(
            r"peersockets\.cli: (alice|bob|carol): connected to [0-9a-f]{8} at 127\.0\.0\.1:\d+"
            r" \((dialled|accepted) over TCP\)",
            line,
        )
    ]
    closed = [line for line in logged if re.search(r": connection to [0-9a-f]{8} at 127\.0\.0\.1:\d+ closed", line)]
    assert len(made) == 6 and len(closed) == 6, logged  # three peers, each to the two others
    assert run("demo").stderr == ""  # without -v: nothing


def test_verbose_dht_node_logs_the_event_loop() -> None:
    def node(*args: str) -> str:
        process = subprocess.Popen(
            [*COMMAND, "dht-node", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("dht-node on 127.0.0.1:")
            process.send_signal(signal.SIGINT)
            _out, err = process.communicate(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        return err

    assert re.match(r"peersockets\.cli: event loop: (uvloop|asyncio)\n", node("-v"))
    assert node() == ""


async def test_the_drive_check_forgets_strangers_past_its_bound(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Peers that connect without the drive are told of once each, and remembered in a
    bounded set: a flood of new keys cannot grow it past MAX_TOLD."""
    from types import SimpleNamespace

    from peersockets.cli import _DriveCheck

    swarm = Swarm(dht=False)
    ps = Peersockets(swarm, KEY)
    check = _DriveCheck(swarm, ps)
    monkeypatch.setattr(_DriveCheck, "MAX_TOLD", 8)
    strangers = [
        SimpleNamespace(remote_public_key=bytes([i]) * 32, is_closed=False, remote_address=None)
        for i in range(20)
    ]
    for stranger in strangers:
        check._check(stranger)  # type: ignore[arg-type]
        check._check(stranger)  # type: ignore[arg-type]
        assert len(check.told) <= 8
    told = [line for line in capsys.readouterr().out.splitlines() if "not opened this drive" in line]
    assert len(told) == 20  # each once, though checked twice
    check.close()
    await ps.close()
    await swarm.close()
