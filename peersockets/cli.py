"""The ``peersockets`` command: a local demo, a terminal chat, and key generation.

    peersockets demo                      # three peers in this process chat, then one leaves
    peersockets keygen                    # a key pair and a new drive key
    peersockets chat KEY                  # find the drive's peers on the public Hyperswarm DHT
    peersockets chat KEY --bootstrap 127.0.0.1:49737   # ... on a local DHT ('peersockets dht-node')
    peersockets chat KEY --listen 127.0.0.1:4000       # or by TCP address, no DHT
    peersockets chat KEY --connect 127.0.0.1:4000

Bad arguments and unreachable addresses give one line on stderr and a non-zero
exit status (2 for bad arguments, 1 for everything else), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import select
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO

from . import __version__
from .api import PeerEvents, Peersockets, Topic
from .connection import Connection
from .dht import DEFAULT_BOOTSTRAP
from .errors import (
    ConnectError,
    ConnectionClosed,
    HandshakeTimeout,
    InvalidKey,
    ListenError,
    MessageTooLarge,
    PeerNotFound,
    PeerNotReading,
    PeersocketsError,
    ProtocolError,
)
from .hyperswarm import DiscoveryEvent
from .keys import new_drive_key, parse_drive_key, z32_encode
from .swarm import Swarm
from .wire.crypto import KeyPair

if TYPE_CHECKING:
    import ctypes

__all__ = ["main"]

log = logging.getLogger(__name__)

PROG = "peersockets"
DEFAULT_TOPIC = "chat"
DEFAULT_HOST = "127.0.0.1"
CONNECT_TIMEOUT = 10.0
DEMO_TIMEOUT = 20.0
DEMO_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
SHORT_KEY = 8  # hex characters of a public key shown next to a peer id
# A chat member that stops reading must not hold up the others: each member has its own
# backlog of lines, and one that falls this far behind is reported and disconnected.
BACKLOG_LINES = 1000  # lines queued for one member and not yet accepted by its connection
BACKLOG_BYTES = 1024 * 1024  # bytes of those lines (a longer single line still goes)
STUCK_SECONDS = 30.0  # a member that accepts no line for this long is not reading
FLUSH_SECONDS = 5.0  # at end of input, time left to send what is queued for members
NO_DRIVE_SECONDS = 3.0
"""A peer connected this long that has not opened the drive is reported (a wrong key?);
the swarm ends such a connection after its pair_timeout (10 s)."""
# what the chat says when its last peer leaves, by how peers reach it
WAITING = "waiting for peers"
WAITING_DHT = "waiting for peers (it will be found again when it returns)"
UNREACHABLE = "no peer can reach this chat now (it neither listens nor uses the DHT)"

_PORT = re.compile(r"^[0-9]{1,5}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")


class CliError(Exception):
    """A failure to report as one line on stderr, with exit status 1."""


# -- output ------------------------------------------------------------------------------


def _out(line: str) -> None:
    """One line on stdout, flushed at once (stdout is often a pipe)."""
    if _console is not None:
        _console.line(sys.stdout, line)
        return
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _note(line: str) -> None:
    """One line of commentary on stderr."""
    if _console is not None:
        _console.line(sys.stderr, line)
        return
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes (wide characters two, combining ones none)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


class _Console:
    """Prints lines above the line the user is typing on a terminal, then draws that line again.

    As in line-editing chats: an incoming line must not clobber a half-typed one.
    ``typed()`` is the line typed so far and the index of the cursor in it, or
    None when no line is being read (then lines are printed as they are);
    ``screen`` is the terminal the line is drawn on, ``columns()`` its width.
    Our own writers are serialised by a lock, from any thread. The redraw is best
    effort: readline edits the line in its own thread, so a keystroke echoed in the
    same instant can leave the screen's picture of the line stale until the next
    redraw or keystroke (what was typed is never changed).
    """

    CLEAR = "\r\x1b[J"  # to the start of the line, and erase from there to the end

    def __init__(
        self,
        screen: TextIO,
        typed: Callable[[], tuple[str, int] | None],
        columns: Callable[[], int] = lambda: 80,
    ) -> None:
        self.screen = screen
        self.typed = typed
        self.columns = columns
        self._lock = threading.Lock()

    def line(self, stream: TextIO, text: str) -> None:
        """Print ``text`` as one line on ``stream``, above the line being typed."""
        with self._lock:
            typed = self.typed()
            if typed is not None:
                line, cursor = typed
                up = _columns(line[:cursor]) // max(1, self.columns())  # a line that wrapped
                self.screen.write((f"\x1b[{up}A" if up else "") + self.CLEAR)
                self.screen.flush()
            stream.write(text + "\n")
            stream.flush()
            if typed is not None and typed[0]:
                line, cursor = typed
                self.screen.write(line + self._back_to(line, cursor))
                self.screen.flush()

    def _back_to(self, line: str, cursor: int) -> str:
        """The moves from the end of ``line`` just drawn back to the cursor at ``cursor``,
        rows up first when the line wrapped."""
        end, at = _columns(line), _columns(line[:cursor])
        if at == end:
            return ""
        columns = max(1, self.columns())
        up = end // columns - at // columns
        if up == 0:
            return f"\x1b[{end - at}D"
        column = at % columns
        return f"\x1b[{up}A\r" + (f"\x1b[{column}C" if column else "")


_console: _Console | None = None
"""Set while the chat reads lines typed on a terminal: _out and _note print through it."""


class _LogHandler(logging.Handler):
    """-v: log records on stderr as _note prints (above the line being typed)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _note(self.format(record))
        except Exception:
            self.handleError(record)


def _printable(data: bytes) -> str:
    """A received message as one terminal-safe line: control characters are escaped."""
    text = data.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _short(public_key: bytes) -> str:
    return public_key.hex()[:SHORT_KEY]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- argument types ----------------------------------------------------------------------


def _drive_key(text: str) -> bytes:
    try:
        return parse_drive_key(text)
    except InvalidKey as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(text: str, *, lowest_port: int) -> tuple[str, int]:
    value = text.strip()
    if _PORT.match(value):  # a bare port means 127.0.0.1:PORT
        host, port_text = DEFAULT_HOST, value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not _PORT.match(port_text):
            raise argparse.ArgumentTypeError(
                f"not a HOST:PORT address: {text!r} (for example 127.0.0.1:4000)"
            )
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise argparse.ArgumentTypeError(
                f"not a HOST:PORT address: {text!r} (write IPv6 hosts in brackets: [::1]:4000)"
            )
        host = host or DEFAULT_HOST
        if any(c.isspace() for c in host) or "[" in host or "]" in host:
            raise argparse.ArgumentTypeError(
                f"not a HOST:PORT address: {text!r} (for example 127.0.0.1:4000)"
            )
    port = int(port_text)
    if not lowest_port <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"port {port} out of range in {text!r} (use {lowest_port} to 65535)"
        )
    return host, port


def _listen_address(text: str) -> tuple[str, int]:
    return _host_port(text, lowest_port=0)


def _connect_address(text: str) -> tuple[str, int]:
    return _host_port(text, lowest_port=1)


def _bootstrap_address(text: str) -> tuple[str, int]:
    host, port = _host_port(text, lowest_port=1)
    if ":" in host:
        raise argparse.ArgumentTypeError(
            f"not an IPv4 address or host name: {text!r} (the Hyperswarm DHT is IPv4 only)"
        )
    return host, port


def _key_seed(text: str) -> KeyPair:
    value = text.strip()
    if not _HEX.match(value) or len(value) not in (64, 128):
        raise argparse.ArgumentTypeError(
            f"not a key seed: {text!r} (expected 64 hex characters, or the 128 of a"
            " secret key from 'peersockets keygen')"
        )
    raw = bytes.fromhex(value)
    key_pair = KeyPair.from_seed(raw[:32])
    if len(raw) == 64 and raw[32:] != key_pair.public_key:
        raise argparse.ArgumentTypeError(
            f"not a secret key: {text!r} (its second half is not the public key of its first)"
        )
    return key_pair


def _peer_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 2 <= count <= len(DEMO_NAMES):
        raise argparse.ArgumentTypeError(f"{count}: use 2 to {len(DEMO_NAMES)} peers")
    return count


def _dht_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive, got {text!r}")
    return value


def _topic(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the topic must not be empty")
    if len(text.encode("utf-8")) > 1024:
        raise argparse.ArgumentTypeError("the topic is longer than 1024 bytes")
    return text


# -- stdin -------------------------------------------------------------------------------


class _Lines(Protocol):
    """Where the chat's lines come from: stdin, or a test's queue."""

    async def get(self) -> bytes | None:
        """The next line without its line ending, or None at end of input."""


class _ThreadLines:
    """Lines a daemon thread reads and posts to the loop, so the loop never blocks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def get(self) -> bytes | None:
        """The next line without its line ending, or None at end of input."""
        return await self._queue.get()

    def _post(self, item: bytes | None) -> bool:
        """Hand a line (None: the end) to the loop, from the reader thread; False once the
        loop is closed."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the program is exiting
            return False
        return True


class _StdinLines(_ThreadLines):
    """The lines of stdin, read by a daemon thread so the event loop never blocks.

    Works the same for a terminal, a pipe and a file. The thread reads the file
    descriptor with os.read (no Python-level lock held while it waits), so a
    program that exits while the thread is still waiting exits cleanly.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._thread = threading.Thread(target=self._run, name="peersockets-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # no stdin at all
            self._post(None)
            return
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # another program left the descriptor non-blocking
                with contextlib.suppress(OSError, ValueError):
                    select.select([fd], [], [])
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not self._post(line.rstrip(b"\r")):
                    return
        if pending:
            self._post(pending.rstrip(b"\r"))
        self._post(None)


HINT = "Type a line and press Enter to send it to every peer; Ctrl-D or Ctrl-C quits."


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, OSError, ValueError):  # closed, or no file at all
        return False


class _TerminalLines(_ThreadLines):
    """The lines typed on a terminal, read with readline (its line editing and history).

    Used when stdin and stdout are both terminals and readline is available. A
    daemon thread reads the lines, as _StdinLines does; while a line is being
    typed, what the chat prints goes above it through ``console``, and the line
    is drawn again below. The terminal's settings are saved before and put back
    by close(), however the chat ends: after a Ctrl-C, readline is still waiting
    in its thread with the terminal set its own way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, hint: str | None = None) -> None:
        import readline
        import termios

        super().__init__(loop)
        self._readline = readline
        self._termios = termios
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        self._hint = hint
        self._closed = False
        self.editing = False  # readline is reading a line: its buffer is on the screen
        self._point = _readline_int(readline, "rl_point")
        self._done = _readline_int(readline, "rl_done")
        self.console = _Console(sys.stdout, self.typed, self._columns)
        self._thread = threading.Thread(target=self._run, name="peersockets-stdin", daemon=True)

    @staticmethod
    def usable() -> bool:
        """Whether stdin and stdout are terminals and readline can read the lines."""
        if not (_isatty(sys.stdin) and _isatty(sys.stdout)):
            return False
        try:
            import readline  # noqa: F401
            import termios  # noqa: F401
        except ImportError:
            return False
        return True

    def start(self) -> None:
        """Start reading (after ``console`` is in place: the hint goes through it)."""
        self._readline.set_pre_input_hook(self._reading)
        self._thread.start()

    def typed(self) -> tuple[str, int] | None:
        """The line typed so far and the index of the cursor in it; None while no line is
        being read."""
        if not self.editing or (self._done is not None and self._done.value):
            return None  # (rl_done: Enter was pressed, the buffer is no longer on the screen)
        line: str = self._readline.get_line_buffer()
        if self._point is None:
            return line, len(line)
        point, raw = self._point.value, line.encode("utf-8", "surrogateescape")
        if not 0 <= point < len(raw):
            return line, len(line)
        return line, len(raw[:point].decode("utf-8", "ignore"))

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns or 80  # 0: size not set
        except (OSError, ValueError):
            return 80

    def close(self) -> None:
        """Put the terminal's settings back; end the line if something was typed on it."""
        if self._closed:
            return
        self._closed = True
        typed = self.typed()
        self.editing = False
        with contextlib.suppress(OSError, ValueError, self._termios.error):
            self._termios.tcsetattr(self._fd, self._termios.TCSADRAIN, self._saved)
        if typed is not None and typed[0]:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write("\n")
                sys.stdout.flush()

    def _reading(self) -> None:
        """readline's pre-input hook (in the reader thread): a line is being read now."""
        self.editing = True
        if self._hint is not None:  # said once, as soon as typing works
            hint, self._hint = self._hint, None
            _note(hint)

    def _run(self) -> None:
        while True:
            try:
                text = input()  # readline's, as stdin and stdout are terminals
            except EOFError:  # Ctrl-D on an empty line
                break
            except UnicodeDecodeError:  # not text in the terminal's encoding: not sent
                continue
            except (OSError, ValueError, RuntimeError):  # the terminal went away
                break
            finally:
                self.editing = False
            if not self._post(text.encode("utf-8", "surrogateescape")):
                return
        self._post(None)


def _readline_int(readline: ModuleType, name: str) -> ctypes.c_int | None:
    """An int of the readline library that the readline module does not give: rl_point (the
    cursor, a byte offset in the line buffer) or rl_done (the line was accepted). None where
    it cannot be read: the cursor is then taken to be at the end of the line, where it is as
    one types."""
    try:
        import ctypes

        return ctypes.c_int.in_dll(ctypes.CDLL(readline.__file__), name)
    except (ImportError, AttributeError, OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def _input_lines(loop: asyncio.AbstractEventLoop) -> Iterator[_Lines]:
    """The chat's lines from stdin: typed with line editing on a terminal, else as they come."""
    global _console
    if not _TerminalLines.usable():
        if _isatty(sys.stdin):
            _note(HINT)
        yield _StdinLines(loop)
        return
    terminal = _TerminalLines(loop, hint=HINT)
    _console = terminal.console
    try:
        terminal.start()
        yield terminal
    finally:
        _console = None
        terminal.close()


# -- keygen ------------------------------------------------------------------------------


def _keygen() -> int:
    key_pair = KeyPair.generate()
    drive_key = new_drive_key()
    _out(f"public key:    {key_pair.public_key.hex()}")
    _out(f"secret key:    {key_pair.secret_key.hex()}")
    _out(f"key seed:      {key_pair.secret_key[:32].hex()}")
    _out(f"drive key:     {drive_key.hex()}")
    _out(f"drive z32:     {z32_encode(drive_key)}")
    _out(f"drive url:     hyper://{drive_key.hex()}/")
    _note(
        "Keep the secret key and the seed private. Chat with this identity on this drive:\n"
        f"  {PROG} chat {drive_key.hex()} --key-seed {key_pair.secret_key[:32].hex()}"
    )
    return 0


# -- chat --------------------------------------------------------------------------------


class _Member:
    """One peer of the chat: the lines not yet accepted for it, and the task that sends them.

    Each member has its own bounded backlog and sender, so a member that stops
    reading holds up nobody but itself.
    """

    def __init__(self, peer_id: int, public_key: bytes) -> None:
        self.peer_id = peer_id
        self.public_key = public_key
        self.backlog: deque[bytes] = deque()  # the head is the line being sent
        self.backlog_bytes = 0
        self.wakeup = asyncio.Event()
        self.ending = False  # no more lines will come: send the backlog, then end
        self.task: asyncio.Task[None] | None = None

    def add(self, line: bytes) -> None:
        """Queue ``line`` for this member."""
        self.backlog.append(line)
        self.backlog_bytes += len(line)
        self.wakeup.set()

    def end(self) -> None:
        """Let the sender end once the backlog is sent."""
        self.ending = True
        self.wakeup.set()


class _Chat:
    """Prints the drive's joins, leaves and messages; sends each line of stdin to every peer.

    Each member gets the lines through its own sender task and bounded backlog
    (``backlog_lines``, ``backlog_bytes``): a member whose backlog is full, or
    that has accepted no line for ``stuck_seconds``, is reported and
    disconnected, and the others never wait for it.
    """

    def __init__(
        self,
        ps: Peersockets,
        topic: Topic,
        events: PeerEvents,
        *,
        backlog_lines: int = BACKLOG_LINES,
        backlog_bytes: int = BACKLOG_BYTES,
        stuck_seconds: float = STUCK_SECONDS,
        flush_seconds: float = FLUSH_SECONDS,
        alone: str = WAITING,
        drive_check: _DriveCheck | None = None,
    ) -> None:
        self.ps = ps
        self.topic = topic
        self.events = events
        self.backlog_lines = backlog_lines
        self.backlog_bytes = backlog_bytes
        self.stuck_seconds = stuck_seconds
        self.flush_seconds = flush_seconds
        self.alone = alone  # said when the last peer leaves
        self.drive_check = drive_check
        self.closing = False
        self.members: dict[int, _Member] = {}
        self.senders: set[asyncio.Task[None]] = set()
        self.dropped: set[int] = set()  # members disconnected for not reading (ids never reused)

    async def run(self, lines: _Lines) -> None:
        """Send each line to every member until end of input, then close the Peersockets."""
        printers = [
            asyncio.create_task(self._show_events(), name="peersockets chat: events"),
            asyncio.create_task(self._show_messages(), name="peersockets chat: messages"),
        ]
        ended = False
        try:
            while (line := await lines.get()) is not None:
                if line.strip():
                    self._send(line)
                    await asyncio.sleep(0)  # let the senders run between lines of a burst
            ended = True
        finally:
            self.closing = True  # our own close makes leaves that are not worth printing
            if self.drive_check is not None:
                self.drive_check.close()  # our close ends the drive's channels: not news either
            await self._stop_senders(flush=ended)
            await self.ps.close()
            _done, pending = await asyncio.wait(printers, timeout=2.0)
            for task in pending:
                task.cancel()

    def _send(self, line: bytes) -> None:
        """Queue ``line`` for every member; a member whose backlog is full is dropped."""
        peers = self.ps.peers
        if not peers:
            lacking = self.drive_check.lacking() if self.drive_check is not None else []
            if lacking:
                who = ", ".join(lacking)
                _note(
                    f"(nobody has joined the drive yet: the message was not sent; connected to"
                    f" {who}, but {'it has' if len(lacking) == 1 else 'they have'} not opened"
                    " this drive: check the key)"
                )
            else:
                _note("(nobody has joined the drive yet: the message was not sent)")
            return
        if len(line) > self.topic.max_message_size:
            _note(
                f"(not sent: the line of {len(line)} bytes exceeds the limit of"
                f" {self.topic.max_message_size} bytes for topic {self.topic.name!r})"
            )
            return
        for peer_id in peers:
            member = self._member(peer_id)
            if member is None:
                continue  # it left meanwhile (its leave is printed) or was dropped
            if member.backlog and (
                len(member.backlog) >= self.backlog_lines
                or member.backlog_bytes + len(line) > self.backlog_bytes
            ):
                self._drop(member, f"{len(member.backlog) + 1} lines unsent")
                continue
            member.add(line)

    def _member(self, peer_id: int) -> _Member | None:
        """The member for ``peer_id``, its sender started on first use; None if it is gone."""
        member = self.members.get(peer_id)
        if member is not None or peer_id in self.dropped:
            return member
        try:
            public_key = self.ps.peer_public_key(peer_id)
        except PeerNotFound:
            return None
        member = _Member(peer_id, public_key)
        self.members[peer_id] = member
        member.task = asyncio.create_task(
            self._feed(member), name=f"peersockets chat: sender to peer {peer_id}"
        )
        self.senders.add(member.task)
        member.task.add_done_callback(self.senders.discard)
        return member

    async def _feed(self, member: _Member) -> None:
        """Send the member's backlog in order, until it leaves, is dropped, or the chat ends."""
        try:
            while True:
                while not member.backlog:
                    if member.ending:
                        return
                    member.wakeup.clear()
                    await member.wakeup.wait()
                line = member.backlog[0]
                try:
                    async with asyncio.timeout(self.stuck_seconds):
                        await self.topic.send(member.peer_id, line)
                except TimeoutError:
                    unsent = len(member.backlog)
                    self._drop(
                        member,
                        f"no line accepted for {self.stuck_seconds:g} s,"
                        f" {unsent} line{'' if unsent == 1 else 's'} unsent",
                    )
                    return
                except MessageTooLarge:
                    pass  # not reached: _send checks the size once for every member
                except PeersocketsError:
                    return  # it left (its leave is printed), or the chat is closing
                member.backlog.popleft()
                member.backlog_bytes -= len(line)
        finally:
            if self.members.get(member.peer_id) is member:
                del self.members[member.peer_id]

    def _drop(self, member: _Member, why: str) -> None:
        """Report a member that is not reading and disconnect it; the others go on."""
        self.dropped.add(member.peer_id)
        self.members.pop(member.peer_id, None)
        if member.task is not None and member.task is not asyncio.current_task():
            member.task.cancel()
        _out(
            f"* peer {member.peer_id} {_short(member.public_key)} is not reading:"
            f" disconnected ({why})"
        )
        error = PeerNotReading(
            f"peer {member.peer_id} {_short(member.public_key)} of the chat is not reading ({why})"
        )
        for conn in self.ps.swarm.connections:
            if conn.remote_public_key == member.public_key:
                conn.abort(error)

    def _forget(self, peer_id: int) -> None:
        """A member left: its sender ends now (nothing more can reach it)."""
        member = self.members.pop(peer_id, None)
        if member is not None and member.task is not None:
            member.task.cancel()

    async def _stop_senders(self, *, flush: bool) -> None:
        """End every sender: after sending what is queued (at most flush_seconds) if ``flush``."""
        for member in list(self.members.values()):
            member.end()
        tasks = list(self.senders)
        if not tasks:
            return
        if flush:
            _done, pending = await asyncio.wait(tasks, timeout=self.flush_seconds)
        else:
            pending = set(tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _show_events(self) -> None:
        async for event in self.events:
            if event.type == "leave":
                self._forget(event.peer_id)
            if self.closing:
                continue
            verb = "joined" if event.type == "join" else "left"
            count = len(self.ps.peers)
            peers = f"{count} peer{'' if count == 1 else 's'} connected"
            alone = f"; {self.alone}" if event.type == "leave" and count == 0 else ""
            _out(f"* peer {event.peer_id} {_short(event.public_key)} {verb} ({peers}){alone}")

    async def _show_messages(self) -> None:
        async for message in self.topic:
            _out(
                f"[peer {message.peer_id} {_short(message.public_key)}] "
                f"{_printable(message.message)}"
            )


def _remote_address(conn: Connection) -> str | None:
    """HOST:PORT of the remote end of ``conn`` (TCP, or UDX on the DHT); None in memory."""
    address = conn.remote_address
    return _address(*address) if address is not None else None


def _who(conn: Connection) -> str:
    """A connected peer as the chat names one: its short key, and its address if it has one."""
    where = _remote_address(conn)
    key = _short(conn.remote_public_key)
    return f"{key} at {where}" if where else key


def _log_connections(swarm: Swarm, name: str = "") -> None:
    """-v: log each connection ``swarm`` keeps, and its end, with the remote's address."""
    if not log.isEnabledFor(logging.INFO):
        return
    prefix = f"{name}: " if name else ""

    def made(conn: Connection) -> None:
        who = _who(conn)
        how = "dialled" if conn.initiator else "accepted"
        over = "on the DHT" if conn.discovered else "over TCP"
        log.info("%sconnected to %s (%s %s)", prefix, who, how, over)

        def lost(conn: Connection) -> None:
            why = f": {conn.error}" if conn.error is not None else ""
            log.info("%sconnection to %s closed%s", prefix, who, why)

        conn.on_closed.append(lost)

    swarm.add_listener(made)


class _DriveCheck:
    """Tells the user of a peer that connected but has not opened this drive (a wrong key?).

    Peersockets counts a peer only once the drive's channel is open both ways, so
    without this such a peer is silent: "nobody has joined" and no hint why. A
    connection whose remote has not opened the drive ``seconds`` after it was made
    is reported once per remote key (the keys told are bounded: past MAX_TOLD
    strangers the memory is cleared, and a stranger may be told of again).
    """

    MAX_TOLD = 1024

    def __init__(self, swarm: Swarm, ps: Peersockets, *, seconds: float = NO_DRIVE_SECONDS) -> None:
        self.swarm = swarm
        self.ps = ps
        self.seconds = seconds
        self.told: set[bytes] = set()
        self.closed = False
        self._timers: set[asyncio.TimerHandle] = set()
        swarm.add_listener(self._on_connection)
        for conn in swarm.connections:
            self._on_connection(conn)

    def _on_connection(self, conn: Connection) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def due() -> None:
            self._timers.discard(handle)
            self._check(conn)

        handle = loop.call_later(self.seconds, due)
        self._timers.add(handle)

    def _joined(self, public_key: bytes) -> bool:
        for peer_id in self.ps.peers:
            with contextlib.suppress(PeerNotFound):
                if self.ps.peer_public_key(peer_id) == public_key:
                    return True
        return False

    def _check(self, conn: Connection) -> None:
        key = conn.remote_public_key
        if self.closed or conn.is_closed or key in self.told or self._joined(key):
            return
        if len(self.told) >= self.MAX_TOLD:
            self.told.clear()  # a flood of keyless strangers must not grow this forever
        self.told.add(key)
        _out(f"* connected to {_who(conn)}, but it has not opened this drive: check the key")

    def lacking(self) -> list[str]:
        """The peers connected now that were reported for not opening the drive."""
        return [
            _who(conn)
            for conn in self.swarm.connections
            if conn.remote_public_key in self.told
            and not conn.is_closed
            and not self._joined(conn.remote_public_key)
        ]

    def close(self) -> None:
        self.closed = True
        self.swarm.remove_listener(self._on_connection)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


# -- chat on the DHT ---------------------------------------------------------------------

_RETRY_IN = re.compile(r"trying again in (\d+) s")
_KNOWN = re.compile(r"(\d+) nodes known")


def _dht(line: str) -> None:
    """One line of DHT progress, in the style of the chat's first lines."""
    _out(f"dht:        {line}")


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class _DHTProgress:
    """Tells the user what the swarm's DHT discovery is doing, while they wait for peers.

    A discovery listener (and connection listener) of the chat's Swarm: prints a
    line when the DHT is up or no bootstrap node answers, when we are announced,
    what the lookups find (a repeated lookup that finds nobody new prints
    nothing), and each connection made. ``verbose`` prints every step.
    """

    def __init__(self, swarm: Swarm, bootstrap: Sequence[str], *, public: bool, verbose: bool) -> None:
        self.swarm = swarm
        self.names = ", ".join(name.rpartition("@")[2] for name in bootstrap)
        self.public = public
        self.verbose = verbose
        self.chat: _Chat | None = None  # set once the chat runs: its close ends the reports
        self.peersockets: Peersockets | None = None
        self.failures = 0
        self.lookups = 0
        self.dialling: set[bytes] = set()  # dials under way (a "connecting" event, no outcome yet)
        self.reported: set[bytes] = set()  # peers a lookup line has counted already
        self.failed: set[bytes] = set()  # peers whose failed dial was reported
        self.last_error = ""

    @property
    def where(self) -> str:
        return "the public DHT" if self.public else f"the DHT (bootstrap {self.names})"

    @property
    def stopped(self) -> bool:
        return self.swarm.closed or (self.chat is not None and self.chat.closing)

    def start(self) -> None:
        """Listen to the swarm (before it joins the drive) and say what comes."""
        self.swarm.add_discovery_listener(self.on_event)
        self.swarm.add_listener(self.on_connection)
        _dht(f"looking up the drive on {self.where}...")

    def on_connection(self, connection: Connection) -> None:
        """A connection the swarm keeps: report the ones made on the DHT (here rather than at
        the "connected" event, which comes later: after the peer's join is printed)."""
        key = connection.remote_public_key
        self.dialling.discard(key)
        if connection.discovered and not self.stopped:
            _dht(f"connected to {_short(key)}{'' if connection.initiator else ' (it found us)'}")

    def on_event(self, event: DiscoveryEvent) -> None:
        if self.stopped:
            return
        kind, key = event.kind, event.public_key
        short = _short(key) if key is not None else "?"
        if kind == "bootstrap-failed":
            self._bootstrap_failed(event.detail)
        elif kind == "started":
            answered = "a bootstrap node answered: " if self.failures else ""
            known = _KNOWN.fullmatch(event.detail)
            nodes = f"{_count(int(known[1]), 'node')} known" if known else event.detail
            _dht(f"{answered}{nodes}")
        elif kind == "listening" and self.verbose:
            _dht(f"listening for connections to our public key ({event.detail})")
        elif kind == "announced":
            _dht("announced: others can find us now")
        elif kind == "lookup":
            # the dials of the peers found start as the loop runs on: count them after that
            found = int(event.detail) if event.detail.isdigit() else 0
            asyncio.get_running_loop().call_soon(self._looked_up, found)
        elif kind == "connecting" and key is not None:
            self.dialling.add(key)
            if self.verbose:
                _dht(f"connecting to {short}...")
        elif kind == "connected" and key is not None:  # printed by on_connection
            self.dialling.discard(key)
            self.failed.discard(key)
        elif kind == "connect-failed" and key is not None:
            self.dialling.discard(key)
            if key not in self.failed or self.verbose:
                self.failed.add(key)
                _dht(f"could not connect to {short} ({event.detail}); it may have left")
        elif kind == "disconnected" and self.verbose:
            _dht(f"disconnected from {short}")
        elif kind == "error":
            # a failure repeated on every retry is told once (every time with -v)
            same = _RETRY_IN.sub("", event.detail)
            if same != self.last_error or self.verbose:
                self.last_error = same
                _dht(f"error: {event.detail}")

    def _bootstrap_failed(self, detail: str) -> None:
        self.failures += 1
        retry = _RETRY_IN.search(detail)
        again = f" (again in {retry[1]} s)" if retry else ""
        if self.failures > 1 and not self.verbose:
            _dht(f"still no bootstrap node answered: still trying{again}")
            return
        dht = self.swarm.dht
        unresolved = dht is not None and not dht.node.bootstrap_nodes
        why = ": the names do not resolve" if unresolved else ""
        if self.public:
            hint = "; is this machine online?"
        else:
            hint = "; is a DHT node running there?"
            host, _, port = self.names.rpartition(":")
            if host in ("127.0.0.1", "localhost"):
                hint += f" ('{PROG} dht-node --port {port}' starts one)"
        _dht(f"no bootstrap node answered ({self.names}{why}): still trying{again}{hint}")

    def _looked_up(self, found: int) -> None:
        if self.stopped:
            return
        self.lookups += 1
        first = self.lookups == 1
        new = {k for k in self.dialling - self.reported if self.swarm.connection_to(k) is None}
        self.reported |= new
        if found == 0:
            connected = bool(self.swarm.connections) or bool(
                self.peersockets is not None and self.peersockets.peers
            )
            if first and not connected:
                _dht("nobody has joined this drive yet; waiting for peers (they will find us)")
            elif self.verbose:
                _dht("looked up the drive: no other peer announced it")
        elif new:
            dialled = "" if len(new) == found else f" {len(new)} of them"
            _dht(f"found {_count(found, 'peer')}, connecting{dialled}...")
        elif first or self.verbose:
            _dht(f"found {_count(found, 'peer')}, connected already")


async def _listen(swarm: Swarm, host: str, port: int) -> tuple[str, int]:
    try:
        return await swarm.listen(host, port)
    except ListenError as exc:
        raise CliError(str(exc)) from None


async def _connect(swarm: Swarm, host: str, port: int) -> bytes:
    where = _address(host, port)
    try:
        conn = await swarm.connect(host, port, timeout=CONNECT_TIMEOUT)
    except ConnectError as exc:
        raise CliError(str(exc)) from None
    except HandshakeTimeout:
        raise CliError(
            f"cannot connect to {where}: no handshake within {CONNECT_TIMEOUT:g} s"
        ) from None
    except ConnectionClosed:
        raise CliError(
            f"cannot connect to {where}: the remote closed the connection during the handshake"
        ) from None
    except ProtocolError as exc:
        raise CliError(
            f"cannot connect to {where}: the handshake failed ({exc}); is it a peer?"
        ) from None
    except PeersocketsError as exc:
        raise CliError(f"cannot connect to {where}: {exc}") from None
    return conn.remote_public_key


async def _chat(args: argparse.Namespace) -> int:
    drive_key: bytes = args.drive_key
    connects: list[tuple[str, int]] = args.connect
    listen: tuple[str, int] | None = args.listen
    bootstrap = [f"{host}:{port}" for host, port in args.bootstrap]
    # neither --listen nor --connect: find the peers on the DHT (the public one unless
    # --bootstrap names another); --bootstrap adds the DHT to --listen and --connect
    use_dht = bool(bootstrap) or (listen is None and not connects)
    key_pair: KeyPair = args.key_seed if args.key_seed is not None else KeyPair.generate()
    if use_dht and not args.verbose:
        # what the DHT warns of (no bootstrap node answers, ...) the progress lines say
        logging.getLogger("peersockets.dht").setLevel(logging.ERROR)
    swarm = (
        Swarm(key_pair, bootstrap=bootstrap or None) if use_dht else Swarm(key_pair, dht=False)
    )
    _log_connections(swarm)
    async with swarm:
        _out(f"drive key:  {drive_key.hex()}  (topic {args.topic!r})")
        _out(f"public key: {swarm.public_key.hex()}")
        if listen is not None:
            host, port = await _listen(swarm, *listen)
            _out(f"listening:  {_address(host, port)}")
        progress: _DHTProgress | None = None
        if use_dht:
            progress = _DHTProgress(
                swarm,
                bootstrap or DEFAULT_BOOTSTRAP,
                public=not bootstrap,
                verbose=args.verbose,
            )
            progress.start()
        ps = Peersockets(swarm, drive_key)  # joins the drive: on the DHT, looks it up
        if progress is not None:
            progress.peersockets = ps
        drive_check = _DriveCheck(swarm, ps, seconds=NO_DRIVE_SECONDS)  # before connecting
        try:
            events = ps.watch()  # before connecting, so that no join is missed
            topic = ps.join(args.topic)
            for host, port in connects:
                remote = await _connect(swarm, host, port)
                _out(f"connected:  {_address(host, port)} (public key {_short(remote)})")
            chat = _Chat(
                ps,
                topic,
                events,
                backlog_lines=BACKLOG_LINES,
                backlog_bytes=BACKLOG_BYTES,
                stuck_seconds=STUCK_SECONDS,
                flush_seconds=FLUSH_SECONDS,
                alone=WAITING_DHT if use_dht else WAITING if listen is not None else UNREACHABLE,
                drive_check=drive_check,
            )
            if progress is not None:
                progress.chat = chat
            with _input_lines(asyncio.get_running_loop()) as lines:
                await chat.run(lines)
        finally:
            drive_check.close()
            await ps.close()
    return 0


# -- demo --------------------------------------------------------------------------------


@dataclass
class _Count:
    expected: int
    seen: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self) -> None:
        self.seen += 1
        if self.seen >= self.expected:
            self.done.set()


@dataclass
class _DemoPeer:
    name: str
    swarm: Swarm
    address: tuple[str, int]
    ps: Peersockets
    events: PeerEvents
    topic: Topic
    left: bool = False


class _Demo:
    """N peers in one process, each with its own Swarm on loopback TCP, chat on one drive."""

    def __init__(self, count: int, topic: str) -> None:
        self.count = count
        self.topic_name = topic
        self.names = list(DEMO_NAMES[:count])
        self.peers: list[_DemoPeer] = []
        self.swarms: list[Swarm] = []
        self.by_key: dict[bytes, str] = {}
        pairs = count * (count - 1)
        self.joins = _Count(pairs)
        self.greetings = _Count(pairs)
        self.replies = _Count(pairs)
        self.leaves = _Count(count - 1)
        self.stage = "starting the peers"
        self.waiting: _Count | None = None
        self.finished = False
        self.width = max(len(f"{a} -> {b}") for a in self.names for b in self.names if a != b)
        self.start = time.monotonic()

    def say(self, who: str, what: str) -> None:
        _out(f"+{time.monotonic() - self.start:.3f}s  {who:<{self.width}}  {what}")

    def progress(self) -> str:
        if self.waiting is None:
            return self.stage
        return f"{self.stage} ({self.waiting.seen} of {self.waiting.expected})"

    async def run(self) -> None:
        drive_key = KeyPair.generate().public_key
        _out(
            f"peersockets demo: {self.count} peers in this process, each with its own Swarm"
            f" on 127.0.0.1,\nchat on topic {self.topic_name!r} of a new drive"
            f" hyper://{drive_key.hex()}/\n"
        )
        self.start = time.monotonic()
        for name in self.names:
            swarm = Swarm(dht=False)
            self.swarms.append(swarm)
            _log_connections(swarm, name)
            address = await swarm.listen(DEFAULT_HOST, 0)
            self.by_key[swarm.public_key] = name
            ps = Peersockets(swarm, drive_key)
            peer = _DemoPeer(name, swarm, address, ps, ps.watch(), ps.join(self.topic_name))
            self.peers.append(peer)
            self.say(
                name,
                f"listening on {_address(*address)}, public key {_short(swarm.public_key)}",
            )
        try:
            async with asyncio.TaskGroup() as group:
                for peer in self.peers:
                    group.create_task(self._watch(peer))
                    group.create_task(self._read(peer))
                await self._script()
                for peer in self.peers:
                    await peer.ps.close()  # ends the watch and read tasks
        except ExceptionGroup as failure:
            first = failure.exceptions[0]
            reason = str(first) or type(first).__name__
            raise CliError(f"failed while {self.progress()}: {reason}") from None

    async def _wait(self, count: _Count, stage: str) -> None:
        self.stage, self.waiting = stage, count
        await count.done.wait()
        self.waiting = None

    async def _script(self) -> None:
        self.stage = "connecting the peers"
        for i, peer in enumerate(self.peers):
            for other in self.peers[:i]:
                await peer.swarm.connect(*other.address, timeout=CONNECT_TIMEOUT)
                self.say(peer.name, f"connected to {other.name} at {_address(*other.address)}")
        await self._wait(self.joins, "waiting for every peer to see the others join the drive")

        self.stage = "greeting"
        for peer in self.peers:
            for peer_id in peer.ps.peers:
                name = self.by_key[peer.ps.peer_public_key(peer_id)]
                await peer.topic.send(peer_id, f"hello {name}, I am {peer.name}".encode())
        await self._wait(self.greetings, "waiting for the greetings")
        await self._wait(self.replies, "waiting for the replies")

        leaver = self.peers[-1]
        self.stage = f"closing {leaver.name}"
        self.say(leaver.name, "leaves: closes its Peersockets and its Swarm")
        leaver.left = True
        await leaver.ps.close()
        await leaver.swarm.close()
        await self._wait(self.leaves, f"waiting for the others to see {leaver.name} leave")
        self.finished = True
        elapsed = time.monotonic() - self.start
        messages = self.greetings.seen + self.replies.seen
        _out(
            f"\nDone in {elapsed:.2f} s: {self.count} peers joined, {messages} messages,"
            f" {self.leaves.seen} leave{'' if self.leaves.seen == 1 else 's'} seen.\n"
            "Now try it between two terminals (use one drive key from 'peersockets keygen'):\n"
            f"  {PROG} chat KEY --listen 127.0.0.1:4000\n"
            f"  {PROG} chat KEY --connect 127.0.0.1:4000"
        )

    async def _watch(self, peer: _DemoPeer) -> None:
        async for event in peer.events:
            if peer.left or self.finished:
                continue
            other = self.by_key.get(event.public_key, _short(event.public_key))
            if event.type == "join":
                self.say(peer.name, f"sees {other} join the drive as peer {event.peer_id}")
                self.joins.add()
            else:
                self.say(peer.name, f"sees {other} (peer {event.peer_id}) leave the drive")
                self.leaves.add()

    async def _read(self, peer: _DemoPeer) -> None:
        async for message in peer.topic:
            if self.finished:
                continue
            sender = self.by_key.get(message.public_key, _short(message.public_key))
            text = _printable(message.message)
            self.say(f"{sender} -> {peer.name}", f'"{text}"')
            if text.startswith("hello "):
                self.greetings.add()
                await peer.topic.send(message.peer_id, f"hi {sender}, {peer.name} here".encode())
            else:
                self.replies.add()

    async def close(self) -> None:
        for peer in self.peers:
            await peer.ps.close()
        for swarm in self.swarms:
            await swarm.close()


async def _demo(args: argparse.Namespace) -> int:
    demo = _Demo(args.peers, args.topic)
    try:
        async with asyncio.timeout(args.timeout):
            await demo.run()
    except TimeoutError:
        raise CliError(f"timed out after {args.timeout:g} s while {demo.progress()}") from None
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await demo.close()
    return 0


# -- argument parsing --------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_FORMATTER = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``peersockets`` command."""
    parser = _Parser(
        prog=PROG,
        formatter_class=_FORMATTER,
        description=(
            "Exchange topic messages with the peers of a hyperdrive, over the real Hypercore\n"
            "wire (JavaScript hyperdrive 13 apps are peers too)."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} demo                          see three local peers chat, then one leave\n"
            f"  {PROG} keygen                        make a drive key to meet on\n"
            f"  {PROG} chat KEY                      find the drive's peers on the public DHT\n"
            f"  {PROG} chat KEY --listen 127.0.0.1:4000\n"
            f"  {PROG} chat KEY --connect 127.0.0.1:4000\n"
            f"  {PROG} dht-node --port 49737           a DHT node of a new local network\n\n"
            f"'{PROG} COMMAND --help' tells more about each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a few local peers that chat on a new drive, then one leaves",
        formatter_class=_FORMATTER,
        description=(
            "Start N peers in this process, each with its own Swarm listening on\n"
            "127.0.0.1 (a free port), all on one new random drive. They connect, watch()\n"
            "each other join, greet each other on a topic and reply; then one peer leaves\n"
            "and the others see it go. Prints a timeline and exits 0, or exits 1 with a\n"
            "one-line reason if a step does not happen within --timeout seconds."
        ),
        epilog=f"example:\n  {PROG} demo --peers 4 --topic lobby",
    )
    demo.add_argument(
        "--peers", type=_peer_count, default=3, metavar="N", help="how many peers (default 3)"
    )
    demo.add_argument(
        "--topic",
        type=_topic,
        default=DEFAULT_TOPIC,
        metavar="NAME",
        help=f"the topic to chat on (default {DEFAULT_TOPIC})",
    )
    demo.add_argument(
        "--timeout",
        type=_seconds,
        default=DEMO_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this long (default {DEMO_TIMEOUT:g})",
    )
    demo.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log to stderr the event loop, and each connection made and closed, with its address",
    )

    chat = commands.add_parser(
        "chat",
        help="chat on a drive's topic from the terminal",
        formatter_class=_FORMATTER,
        description=(
            "Chat with the peers of a drive: every line you type is sent to every peer\n"
            "of the drive on the topic; messages, joins and leaves are printed as they\n"
            "come. Prints its public key first. Ctrl-D (end of input) or Ctrl-C quits.\n\n"
            "With neither --listen nor --connect it finds the drive's peers on the\n"
            "Hyperswarm DHT, as JavaScript hyperswarm apps do: it announces the drive,\n"
            "looks it up, connects to the peers found, and lets them connect to it,\n"
            "saying what happens as it goes (lines starting 'dht:'). That is the public\n"
            "DHT (needs the internet) unless --bootstrap names the nodes of another,\n"
            f"such as a local one from '{PROG} dht-node'. If no bootstrap node answers,\n"
            "it says so and keeps trying.\n\n"
            "With --listen or --connect it uses those TCP addresses only, never the DHT;\n"
            "--bootstrap adds that DHT to them.\n\n"
            "A peer that stops reading never holds up the others: one that falls\n"
            f"{BACKLOG_LINES} lines (or {BACKLOG_BYTES // 1024 // 1024} MiB) behind, or takes no"
            f" line for {STUCK_SECONDS:g} s, is\nreported and disconnected.\n\n"
            "A peer that connects but has not opened the drive after"
            f" {NO_DRIVE_SECONDS:g} s is reported\n(is its drive key another?). When the last"
            " peer leaves, it says whether others\ncan still reach this chat. On a terminal,"
            " lines that arrive while you type\nare printed above the line you are typing.\n\n"
            "DRIVE_KEY is 64 hex characters, 52 z-base-32 characters, or hyper://KEY/\n"
            "(a JavaScript hyperdrive's drive.key, or one from 'peersockets keygen')."
        ),
        epilog=(
            "example, in two terminals (the public DHT):\n"
            f"  {PROG} chat KEY\n"
            f"  {PROG} chat KEY\n\n"
            "on a local DHT, in three terminals:\n"
            f"  {PROG} dht-node --port 49737\n"
            f"  {PROG} chat KEY --bootstrap 127.0.0.1:49737\n"
            f"  {PROG} chat KEY --bootstrap 127.0.0.1:49737\n\n"
            "by address, without the DHT:\n"
            f"  {PROG} chat KEY --listen 127.0.0.1:4000\n"
            f"  {PROG} chat KEY --connect 127.0.0.1:4000\n\n"
            "HOST:PORT may be just PORT (on 127.0.0.1); port 0 listens on any free port."
        ),
    )
    chat.add_argument("drive_key", type=_drive_key, metavar="DRIVE_KEY", help="the drive's key")
    chat.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help="accept peers on this address (port 0: any free port)",
    )
    chat.add_argument(
        "--connect",
        type=_connect_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="dial a peer at this address (repeat for more)",
    )
    chat.add_argument(
        "--bootstrap",
        type=_bootstrap_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a node of the DHT to find peers on (repeat for more); default: the public DHT",
    )
    chat.add_argument(
        "--topic",
        type=_topic,
        default=DEFAULT_TOPIC,
        metavar="NAME",
        help=f"the topic to chat on (default {DEFAULT_TOPIC})",
    )
    chat.add_argument(
        "--key-seed",
        type=_key_seed,
        metavar="HEX",
        help="a 32-byte seed (64 hex) for a stable identity; default: a new key pair",
    )
    chat.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=(
            "log to stderr the event loop, and each connection made and closed, with its"
            " address; print every step of the DHT discovery ('dht:' lines)"
        ),
    )

    node = commands.add_parser(
        "dht-node",
        help="run a node of the Hyperswarm DHT (a new local network, or one more node of one)",
        formatter_class=_FORMATTER,
        description=(
            "Run a persistent DHT node that stores announcements and values for others,\n"
            "on UDP HOST:PORT. Without --bootstrap it starts a network of its own (other\n"
            "nodes and clients then bootstrap from it); with --bootstrap it joins that\n"
            "network. Prints its address, then a line of statistics every minute.\n"
            "Ctrl-C quits (exit status 0). Its bound address must be its public one: use\n"
            "it on one machine or a local network."
        ),
        epilog=(
            "example, a local network of two nodes:\n"
            f"  {PROG} dht-node --port 49737\n"
            f"  {PROG} dht-node --port 49738 --bootstrap 127.0.0.1:49737"
        ),
    )
    node.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1)")
    node.add_argument("--port", type=_dht_port, default=0, help="the UDP port (default 0: any free port)")
    node.add_argument(
        "--bootstrap",
        type=_connect_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a node of the network to join (repeat for more); none: start a new network",
    )
    node.add_argument(
        "--stats-interval",
        type=_seconds,
        default=DHT_STATS_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between statistics lines (default {DHT_STATS_INTERVAL:g})",
    )
    node.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log to stderr the event loop, and the node's changes of state (reachable, ...)",
    )

    commands.add_parser(
        "keygen",
        help="print a new key pair and a new drive key",
        formatter_class=_FORMATTER,
        description=(
            "Print a new Ed25519 key pair (public key, secret key, and the seed to pass to\n"
            "'chat --key-seed'), and a new random drive key in hex, in z-base-32 and as a\n"
            "hyper:// URL."
        ),
        epilog=f"example:\n  {PROG} keygen",
    )
    return parser


DHT_STATS_INTERVAL = 60.0
"""Seconds between the statistics lines of ``dht-node``."""


async def _dht_node(args: argparse.Namespace) -> int:
    """Run one persistent DHT node until Ctrl-C: a new network, or one more node of another."""
    from .dht import DHT
    from .errors import InvalidSetting, ListenError

    bootstrap = list(args.bootstrap)
    dht = DHT(bootstrap=bootstrap, host=args.host, port=args.port, ephemeral=False)
    try:
        await dht.open()
    except (ListenError, InvalidSetting) as exc:
        await dht.close()
        raise CliError(str(exc)) from None
    try:
        host, port = dht.address
        _out(f"dht-node on {host}:{port} (node id {dht.node.id.hex()[:16]})")
        if bootstrap:
            _out(f"joined the network of {', '.join(f'{h}:{p}' for h, p in dht.node.bootstrap_nodes)}")
        else:
            _out("a new network: other nodes and clients bootstrap with --bootstrap " f"{host}:{port}")
        while True:
            await asyncio.sleep(args.stats_interval)
            stats = dht.stats
            _out(
                f"stats: {stats['nodes']} nodes known, {stats['requests_in']} requests in, "
                f"{stats['requests_out']} out, {stats['timeouts']} timed out, {stats['refused']} refused, "
                f"{stats.get('records', 0)} records on {stats.get('targets', 0)} topics, "
                f"{stats.get('mutables', 0) + stats.get('immutables', 0)} values"
            )
    finally:
        await dht.close()


LOOP_ENV = "PEERSOCKETS_LOOP"
"""Set to "asyncio" to run the command on asyncio's own loop even when uvloop is installed."""


def event_loop() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop the command runs on, and its name: uvloop when it is installed (the
    ``speed`` extra; a round trip costs less), else asyncio's; PEERSOCKETS_LOOP=asyncio
    chooses asyncio's."""
    if os.environ.get(LOOP_ENV, "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop, "uvloop"
    return None, "asyncio"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``peersockets`` command; returns its exit status."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: demo, chat, dht-node or keygen")
    if getattr(args, "verbose", False):
        logging.basicConfig(
            level=logging.INFO, format="%(name)s: %(message)s", handlers=[_LogHandler()]
        )
    try:
        if args.command == "keygen":
            return _keygen()
        runner = {"demo": _demo, "chat": _chat, "dht-node": _dht_node}[args.command]
        loop_factory, loop_name = event_loop()
        log.info("event loop: %s", loop_name)
        with asyncio.Runner(loop_factory=loop_factory) as loop_runner:
            return loop_runner.run(runner(args))
    except CliError as exc:
        _note(f"{PROG} {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0  # Ctrl-C: the chat and the demo close their connections on the way out
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): exit quietly, without a second error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
