"""Drive line-oriented programs (the ``peersockets`` command, the examples) from asyncio tests.

    async with Processes() as procs:
        chat = await procs.start("a", sys.executable, "-m", "peersockets", "chat", KEY)
        port = int((await chat.expect(r"^listening:\\s+127\\.0\\.0\\.1:(\\d+)$"))[1])
        await chat.send_line("hello")
        await chat.end_input()
        assert await chat.wait() == 0

Every wait has a timeout; on failure the assertion shows the program's recent
output. Whatever is still running at the end is killed and reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from pathlib import Path

__all__ = ["LineProcess", "Processes"]

DEFAULT_TIMEOUT = 20.0


class LineProcess:
    """One running program: its stdout as lines to expect(), its stdin to write lines to.

    ``expect()`` hands out lines in order: it returns the earliest matching line
    that no earlier ``expect()`` returned, whether it came before or during the call.
    """

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[str] = []
        self.stderr_text = ""
        self._used: set[int] = set()
        self._changed = asyncio.Event()
        self._eof = False
        self._readers = [
            asyncio.create_task(self._read_stdout(), name=f"{name} stdout"),
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

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                self.lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                self._changed.set()
        finally:
            self._eof = True
            self._changed.set()

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, line in enumerate(self.lines):
                if index not in self._used and (match := regex.search(line)):
                    self._used.add(index)
                    return match
            if self._eof:
                raise AssertionError(
                    f"{self.name} ended before printing /{pattern}/\n{self.describe()}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name} did not print /{pattern}/ within {timeout:g} s\n{self.describe()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

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
