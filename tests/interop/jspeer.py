"""Drive the JavaScript interop peers (tests/interop/js/*.mjs) from asyncio tests.

Each peer script prints one JSON object per line on stdout ({"event": ...}),
reads JSON-line commands on stdin ({"cmd": ...}) and logs to stderr.

    peer = await JsPeer.start("secretstream_peer.mjs", "--listen")
    port = (await peer.expect("listening"))["port"]
    ...
    await peer.close()

The JavaScript dependencies are pinned in tests/interop/js/package.json; when
node or the installed packages are missing, start() raises JsPeerSetupError
(the interop tests fail, they are never skipped).

Waiting for events is ``Arrivals.expect`` from tests/lineproc.py, the helper
that also waits for the lines of the ``peersockets`` command and the examples.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from lineproc import Arrivals  # tests/ is on sys.path: the interop package's root

__all__ = ["JS_DIR", "JsPeer", "JsPeerSetupError", "close_all", "pattern"]

JS_DIR = Path(__file__).resolve().parent / "js"
"""The folder holding the peer scripts and their node_modules."""

_INSTALL_HINT = "install the pinned JavaScript packages with: npm ci --prefix tests/interop/js"
_REQUIRED_PACKAGES = (
    "@hyperswarm/secret-stream",
    "protomux",
    "hypercore",
    "corestore",
    "hyperdrive",
    "compact-encoding",
    "hypercore-crypto",
    "udx-native",
    "hyperdht",
    "hyperswarm",
)
_LINE_LIMIT = 64 * 1024 * 1024
_STDERR_LINES = 2000
_CLOSE_TIMEOUT = 5.0


class JsPeerSetupError(RuntimeError):
    """node or the pinned npm packages are not available."""


def pattern(size: int, seed: int = 0) -> bytes:
    """The deterministic payload used by every interop peer: byte i = (seed + i) % 251."""
    if size < 0:
        raise ValueError("size must be >= 0")
    start = seed % 251
    period = bytes((start + i) % 251 for i in range(251))
    repeats = -(-size // 251)
    return (period * repeats)[:size]


def _node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise JsPeerSetupError(
            f"node is not on PATH; the interop peers need Node.js 20+ ({_INSTALL_HINT})"
        )
    modules = JS_DIR / "node_modules"
    missing = [
        name for name in _REQUIRED_PACKAGES if not (modules / name / "package.json").is_file()
    ]
    if missing:
        raise JsPeerSetupError(
            f"missing npm packages in {modules}: {', '.join(missing)}; {_INSTALL_HINT}"
        )
    return node


def _matches(event: dict[str, Any], name: str, match: dict[str, Any]) -> bool:
    if event.get("event") != name:
        return False
    return all(key in event and event[key] == value for key, value in match.items())


class JsPeer:
    """One running peer script.

    ``events`` is the history of every event the peer printed, in order.
    ``expect()`` hands out events in arrival order: it returns the earliest
    matching event that no earlier ``expect()`` returned, whether it arrived
    before or during the call (see ``Arrivals``).
    """

    def __init__(
        self, script: str, args: tuple[str, ...], proc: asyncio.subprocess.Process
    ) -> None:
        self.script = script
        self.args = args
        self.proc = proc
        self.arrivals: Arrivals[dict[str, Any]] = Arrivals(script, proc, self._describe)
        self.events = self.arrivals.items
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self.stdout_garbage: list[str] = []
        self.returncode: int | None = None
        self._closed = False
        assert proc.stdout is not None
        self._stdout_task = asyncio.create_task(
            self.arrivals.read(proc.stdout, self._parse), name=f"{script} stdout"
        )
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"{script} stderr")

    @classmethod
    async def start(cls, script: str, *args: str) -> JsPeer:
        """Run ``node tests/interop/js/<script> args...``."""
        node = _node_executable()
        path = JS_DIR / script
        if not path.is_file():
            raise JsPeerSetupError(f"no such peer script: {path}")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(path),
            *args,
            cwd=str(JS_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        return cls(script, tuple(args), proc)

    async def __aenter__(self) -> JsPeer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ io

    def _parse(self, line: str) -> dict[str, Any] | None:
        """A stdout line as an event; anything but a JSON object goes to stdout_garbage."""
        text = line.strip()
        if not text:
            return None
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self.stdout_garbage.append(text)
            return None
        return event

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    @property
    def stderr(self) -> str:
        """Everything (up to the last 2000 lines) the peer wrote to stderr."""
        return "\n".join(self.stderr_lines)

    def _describe(self, limit: int = 40) -> str:
        recent = self.events[-limit:]
        events = "\n".join(f"    {json.dumps(e)}" for e in recent) or "    (none)"
        stderr = (
            "\n".join(f"    {line}" for line in list(self.stderr_lines)[-limit:]) or "    (none)"
        )
        status = (
            "running" if self.proc.returncode is None else f"exited with {self.proc.returncode}"
        )
        garbage = ""
        if self.stdout_garbage:
            garbage = "\n  non-JSON stdout:\n" + "\n".join(
                f"    {line}" for line in self.stdout_garbage[-10:]
            )
        return (
            f"{self.script} {' '.join(self.args)} ({status})\n"
            f"  recent events:\n{events}\n  recent stderr:\n{stderr}{garbage}"
        )

    # ------------------------------------------------------------------ api

    async def expect(self, event: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Wait for an event named ``event`` whose fields equal ``match``."""
        wanted = f"event {event!r}" + (f" with {match}" if match else "")
        return await self.arrivals.expect(
            lambda e: e if _matches(e, event, match) else None, wanted, timeout
        )

    def pending(self, event: str | None = None) -> list[dict[str, Any]]:
        """Events not yet returned by expect() (optionally only those named ``event``)."""
        return [e for e in self.arrivals.pending() if event is None or e.get("event") == event]

    def seen(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """Every event so far named ``event`` with fields equal to ``match``."""
        return [e for e in self.events if _matches(e, event, match)]

    async def send(self, cmd: dict[str, Any]) -> None:
        """Write one JSON-line command to the peer's stdin."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.proc.returncode is not None:
            raise AssertionError(f"cannot send {cmd!r}: peer is not running\n{self._describe()}")
        try:
            stdin.write((json.dumps(cmd) + "\n").encode())
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as err:
            raise AssertionError(f"cannot send {cmd!r}: {err}\n{self._describe()}") from err

    async def close(self) -> None:
        """Send exit, wait up to 5 s, then kill; always reaps the process and collects stderr."""
        if self._closed:
            return
        self._closed = True
        stdin = self.proc.stdin
        if self.proc.returncode is None and stdin is not None and not stdin.is_closing():
            try:
                stdin.write(b'{"cmd":"exit"}\n')
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
        if stdin is not None:
            stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), _CLOSE_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            self.returncode = self.proc.returncode
            await asyncio.gather(self._stdout_task, self._stderr_task, return_exceptions=True)


async def close_all(peers: Iterable[JsPeer]) -> None:
    """Close several peers concurrently."""
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
