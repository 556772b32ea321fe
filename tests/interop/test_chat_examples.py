"""The three chats print alike: ``peersockets chat``, examples/chat.py and examples/js/chat.mjs.

Each one listens on 127.0.0.1 and the same Python peers (the same key pairs) join it, write to
it and leave in the same order; the joins, leaves, messages, notes and errors each chat prints
must be the same lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import wait_until
from lineproc import LineProcess, Processes, fixture_procs  # noqa: F401 (the procs fixture)

from peersockets import KeyPair, Peersockets, Swarm, Topic

from .jspeer import _node_executable

ROOT = Path(__file__).resolve().parents[2]
KEY = "ab" * 32
SEEDS = ("31" * 32, "32" * 32)
ALICE, BOB = (KeyPair.from_seed(bytes.fromhex(seed)) for seed in SEEDS)
A, B = ALICE.public_key.hex()[:8], BOB.public_key.hex()[:8]

PROGRAMS = {
    "peersockets chat": (sys.executable, "-m", "peersockets", "chat", KEY),
    "chat.py": (sys.executable, str(ROOT / "examples" / "chat.py"), KEY),
    "chat.mjs": ("node", str(ROOT / "examples" / "js" / "chat.mjs"), "--key", KEY),
}

# What every chat prints, in this order, for the script of talk() below.
EVENTS = [
    f"* peer 1 {A} joined (1 peer connected)",
    f"[peer 1 {A}] hello ✓",
    f"[peer 1 {A}] \\x1b[31mred\\x1b[0m \\t tab",  # what a terminal would obey is shown
    f"* peer 1 {A} left (0 peers connected); waiting for peers",
    f"* peer 2 {A} joined (1 peer connected)",  # back: a new id, never one used before
    f"* peer 3 {B} joined (2 peers connected)",
    f"[peer 3 {B}] from bob",
    f"* peer 2 {A} left (1 peer connected)",
    f"* peer 3 {B} left (0 peers connected); waiting for peers",
]
NOT_SENT = "(nobody has joined the drive yet: the message was not sent)"


def _command(name: str, *args: str) -> tuple[str, ...]:
    if name == "chat.mjs":
        _node_executable()  # node and the pinned packages are there, or a clear failure
    return (*PROGRAMS[name], *args)


class Member:
    """A Python peer of the drive with a fixed key pair."""

    def __init__(self, key_pair: KeyPair) -> None:
        self.key_pair = key_pair
        self.swarm: Swarm | None = None
        self.ps: Peersockets | None = None
        self.topic: Topic | None = None

    async def join(self, port: int) -> None:
        self.swarm = Swarm(self.key_pair, dht=False)
        self.ps = Peersockets(self.swarm, KEY)
        self.topic = self.ps.join("chat")
        await self.swarm.connect("127.0.0.1", port)
        await wait_until(lambda: bool(self.ps and self.ps.peers), timeout=10.0)

    async def say(self, text: bytes) -> None:
        assert self.ps is not None and self.topic is not None
        await self.topic.send(self.ps.peers[0], text)

    async def leave(self) -> None:
        assert self.ps is not None and self.swarm is not None
        await self.ps.close()
        await self.swarm.close()


async def talk(chat: LineProcess, port: int) -> None:
    """Alice joins, writes, leaves, comes back; Bob joins and writes; both leave."""
    alice, bob = Member(ALICE), Member(BOB)
    try:
        await alice.join(port)
        await chat.expect(rf"^\* peer 1 {A} joined")
        await alice.say("hello ✓".encode())
        await chat.expect(rf"^\[peer 1 {A}\] hello")
        await alice.say(b"\x1b[31mred\x1b[0m \t tab")
        await chat.expect(rf"^\[peer 1 {A}\] .*red")
        await alice.leave()
        await chat.expect(rf"^\* peer 1 {A} left")
        await alice.join(port)
        await chat.expect(rf"^\* peer 2 {A} joined")
        await bob.join(port)
        await chat.expect(rf"^\* peer 3 {B} joined")
        await bob.say(b"from bob")
        await chat.expect(rf"^\[peer 3 {B}\] from bob")
        await alice.leave()
        await chat.expect(rf"^\* peer 2 {A} left")
        await bob.leave()
        await chat.expect(rf"^\* peer 3 {B} left")
    finally:
        for member in (alice, bob):
            if member.swarm is not None and not member.swarm.closed:
                await member.leave()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(PROGRAMS))
async def test_each_chat_prints_joins_leaves_messages_and_notes_alike(
    procs: Processes, name: str
) -> None:
    chat = await procs.start(name, *_command(name, "--listen", "127.0.0.1:0"), cwd=ROOT)
    port = int((await chat.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1])
    await talk(chat, port)
    await chat.send_line("anyone?")  # nobody is left
    await wait_until(lambda: NOT_SENT in chat.stderr_text, timeout=10.0)
    await chat.end_input()
    assert await chat.wait() == 0
    events = [line for line in chat.lines if line.startswith(("* ", "["))]
    assert events == EVENTS, chat.describe()
    assert chat.stderr_text.splitlines() == [NOT_SENT], chat.describe()


@pytest.mark.parametrize("name", list(PROGRAMS))
async def test_each_chat_says_alike_that_it_cannot_connect(
    procs: Processes, name: str, closed_port: int
) -> None:
    chat = await procs.start(name, *_command(name, "--connect", f"127.0.0.1:{closed_port}"), cwd=ROOT)
    assert await chat.wait() == 1
    assert chat.stderr_text == (
        f"{name}: error: cannot connect to 127.0.0.1:{closed_port}:"
        " connection refused (nothing is listening there)\n"
    )


async def test_the_chats_talk_to_each_other(procs: Processes) -> None:
    """The JavaScript example listens; the Python example and the command join it: each prints
    the others' joins and messages as the others do."""
    js = await procs.start("chat.mjs", *_command("chat.mjs", "--listen", "127.0.0.1:0"), cwd=ROOT)
    port = (await js.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1]
    js_key = (await js.expect(r"^public key: ([0-9a-f]{64})$"))[1][:8]
    chats = {"chat.mjs": js}
    keys = {"chat.mjs": js_key}
    for name in ("chat.py", "peersockets chat"):
        chats[name] = await procs.start(name, *_command(name, "--connect", port), cwd=ROOT)
        keys[name] = (await chats[name].expect(r"^public key: ([0-9a-f]{64})$"))[1][:8]
    # the JavaScript chat relays nothing: the Python chats meet it, not each other
    await js.expect(rf"^\* peer 1 {keys['chat.py']} joined \(1 peer connected\)$")
    await js.expect(rf"^\* peer 2 {keys['peersockets chat']} joined \(2 peers connected\)$")
    for name in ("chat.py", "peersockets chat"):
        await chats[name].expect(rf"^\* peer 1 {js_key} joined \(1 peer connected\)$")
        await chats[name].send_line(f"hello from {name}")
        await js.expect(rf"^\[peer \d {keys[name]}\] hello from {name}$")
    await js.send_line("hello from chat.mjs")
    for name in ("chat.py", "peersockets chat"):
        await chats[name].expect(rf"^\[peer 1 {js_key}\] hello from chat\.mjs$")
    await js.end_input()
    assert await js.wait() == 0
    for name in ("chat.py", "peersockets chat"):
        await chats[name].expect(
            rf"^\* peer 1 {js_key} left \(0 peers connected\); no peer can reach this chat now"
            r" \(it neither listens nor uses the DHT\)$"
        )
        await chats[name].end_input()
        assert await chats[name].wait() == 0
