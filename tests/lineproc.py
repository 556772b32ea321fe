"""Drive line-oriented programs (the ``peersockets`` command, the examples) from asyncio tests.

    async with Processes() as procs:
        chat = await procs.start("a", sys.executable, "-m", "peersockets", "chat", KEY, "--listen", "127.0.0.1:0")
        port = int((await chat.expect(r"^listening:\\s+127\\.0\\.0\\.1:(\\d+)$"))[1])
        await chat.send_line("hello")
        await chat.end_input()
        assert await chat.wait() == 0

Every wait has a timeout; on failure the assertion shows the program's recent
output. Whatever is still running at the end is killed and reaped. In a test,
the ``procs`` fixture is such a ``Processes``; import ``fixture_procs`` to use it.

``Arrivals`` (what a program has printed, for ``expect()`` to hand out) also
serves the JavaScript interop peers (tests/interop/jspeer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Generic, TypeVar

import pytest_asyncio

__all__ = ["Arrivals", "LineProcess", "Processes", "fixture_procs"]

DEFAULT_TIMEOUT = 20.0
REAP_TIMEOUT = 1.0
"""After a program's output ends, how long expect() waits for its exit status to report it."""

T = TypeVar("T")
R = TypeVar("R")


class Arrivals(Generic[T]):
    """What a running program has printed so far (``items``, in order), for expect() to hand out.

    ``expect(find, ...)`` takes the earliest item in which ``find`` finds something
    (not None) and that no earlier ``expect()`` took, whether it arrived before or
    during the call, and returns what ``find`` found. On failure it shows
    ``describe()``: the program's recent output and whether it still runs.
    """

    def __init__(
        self, owner: str, proc: asyncio.subprocess.Process, describe: Callable[[], str]
    ) -> None:
        self.owner = owner
        self.proc = proc
        self.describe = describe
        self.items: list[T] = []
        self.ended = False
        self._pending: list[T] = []
        self._changed = asyncio.Event()

    async def read(self, stream: asyncio.StreamReader, parse: Callable[[str], T | None]) -> None:
        """Add what ``parse`` makes of each line of ``stream`` (None: nothing) until it ends."""
        try:
            while line := await stream.readline():
                item = parse(line.decode("utf-8", "replace").rstrip("\r\n"))
                if item is not None:
                    self.items.append(item)
                    self._pending.append(item)
                    self._changed.set()
        finally:
            self.ended = True
            self._changed.set()

    def pending(self) -> list[T]:
        """The items no expect() has returned yet, in order."""
        return list(self._pending)

    def _take(self, find: Callable[[T], R | None]) -> R | None:
        for index, item in enumerate(self._pending):
            if (found := find(item)) is not None:
                del self._pending[index]
                return found
        return None

    async def expect(self, find: Callable[[T], R | None], wanted: str, timeout: float) -> R:
        """Wait for an item in which ``find`` finds something; ``wanted`` names it on failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if (found := self._take(find)) is not None:
                return found
            if self.ended:
                if self.proc.returncode is None:  # let the report say how it ended
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.proc.wait(), REAP_TIMEOUT)
                raise AssertionError(f"{self.owner} ended with no {wanted}\n{self.describe()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.owner}: no {wanted} within {timeout:g} s\n{self.describe()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


class LineProcess:
    """One running program: its stdout as lines to expect(), its stdin to write lines to.

    ``expect()`` hands out lines in order: it returns the earliest matching line
    that no earlier ``expect()`` returned, whether it came before or during the call.
    """

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.output: Arrivals[str] = Arrivals(name, proc, self.describe)
        self.lines = self.output.items
        """Every line printed on stdout so far."""
        self.stderr_text = ""
        assert proc.stdout is not None
        self._readers = [
            asyncio.create_task(self.output.read(proc.stdout, str), name=f"{name} stdout"),
            asyncio.create_task(self._read_stderr(), name=f"{name} stderr"),
        ]

    @classmethod
    async def start(
        cls, name: str, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> LineProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        return cls(name, proc)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr_text += chunk.decode("utf-8", "replace")

    def describe(self) -> str:
        status = (
            "running" if self.proc.returncode is None else f"exited with {self.proc.returncode}"
        )
        stdout = "\n".join(f"    {line}" for line in self.lines[-40:]) or "    (nothing)"
        stderr = "\n".join(f"    {line}" for line in self.stderr_text.splitlines()[-40:])
        return (
            f"{self.name} ({status})\n  stdout:\n{stdout}\n  stderr:\n{stderr or '    (nothing)'}"
        )

    async def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Wait for a stdout line matching ``pattern`` (re.search); returns the match."""
        regex = re.compile(pattern)
        return await self.output.expect(regex.search, f"line matching /{pattern}/", timeout)

    async def send_line(self, text: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None and not stdin.is_closing(), f"{self.name}: stdin is closed"
        stdin.write((text + "\n").encode("utf-8"))
        await asyncio.wait_for(stdin.drain(), DEFAULT_TIMEOUT)

    async def end_input(self) -> None:
        """Close stdin: the program sees end of input (like Ctrl-D)."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(stdin.wait_closed(), DEFAULT_TIMEOUT)

    def interrupt(self) -> None:
        """Send SIGINT, as Ctrl-C in a terminal does."""
        self.proc.send_signal(signal.SIGINT)

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the exit and the end of its output; kill it after ``timeout`` seconds."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:g} s\n{self.describe()}"
            ) from None
        await asyncio.wait_for(asyncio.gather(*self._readers), DEFAULT_TIMEOUT)
        return code

    async def stop(self) -> None:
        """Kill the program if it still runs; reap it and its pipes."""
        await self.end_input()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await asyncio.wait(self._readers, timeout=5.0)
        for task in self._readers:
            task.cancel()


class Processes:
    """Starts programs and stops every one of them at the end."""

    def __init__(self) -> None:
        self.running: list[LineProcess] = []

    async def start(
        self, name: str, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> LineProcess:
        proc = await LineProcess.start(name, *argv, cwd=cwd, env=env)
        self.running.append(proc)
        return proc

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.running), return_exceptions=True)

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@pytest_asyncio.fixture(name="procs")
async def fixture_procs() -> AsyncIterator[Processes]:
    """The ``procs`` fixture: a ``Processes`` whose programs are all stopped after the test.

    A test module that imports ``fixture_procs`` offers it (named so that the
    ``procs`` arguments of its tests do not shadow the import).
    """
    async with Processes() as group:
        yield group
