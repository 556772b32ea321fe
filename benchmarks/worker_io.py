"""What the Python benchmark workers share: their side of the runner's JSON-lines protocol.

``benchmarks/py_worker.py`` (peersockets over TCP) and ``benchmarks/udx_worker.py``
(peersockets.udx) differ in their commands only. Both read commands from stdin, one
JSON object a line, and run them one at a time, in order; they answer with events
on stdout, one JSON object a line. This module holds the plumbing around the
commands:

- ``emit``: write one event;
- ``fail``: report a fatal error (``{"event": "error", ...}``) and exit 1;
- ``Tasks``: background tasks a command leaves running; one that fails is fatal;
- ``CommandProfiler``: cProfile switched on around the timed phases only;
- ``serve``: the command loop (``started`` event, dispatch, ``exit``, timeouts);
- ``run_worker``: the command line (``--uvloop``, ``--cprofile PATH``), the event loop,
  and ``serve`` for a ``CommandWorker`` (its handlers and its ``close``).

The workers are run as scripts (``python benchmarks/py_worker.py``), so they put the
repository root on ``sys.path`` before they import this module.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, NoReturn, Protocol

COMMAND_TIMEOUT = 600.0
"""No single command may take longer than this (seconds)."""
CLOSE_TIMEOUT = 30.0
"""How long the worker's ``close`` may take after the last command (seconds)."""
COMMAND_LINE_LIMIT = 1 << 20
"""The longest command line read from stdin (bytes)."""

now = time.monotonic_ns
"""The workers' clock (CLOCK_MONOTONIC, as Node's ``process.hrtime.bigint()``)."""

Command = dict[str, Any]
CommandHandler = Callable[[Command], Coroutine[Any, Any, None]]


def emit(event: dict[str, Any]) -> None:
    """Write one event line to stdout."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def fail(exc: BaseException | None) -> NoReturn:
    """Report a fatal error (traceback on stderr, an ``error`` event) and exit 1."""
    traceback.print_exception(exc, file=sys.stderr)
    emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
    sys.stderr.flush()
    os._exit(1)


async def read_commands() -> asyncio.StreamReader:
    """An asyncio reader on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=COMMAND_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class Tasks:
    """The background tasks a worker's commands leave running (a receiver waiting for
    its last message, an echo loop): kept until they are done; one that raises ends
    the worker with ``fail``."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background."""
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            fail(task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait for them to finish."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class CommandProfiler:
    """cProfile, switched on by the timed commands for their timed phase only and
    written to ``path`` at exit; does nothing without a path, and writes nothing if
    no command switched it on (an empty stats file breaks ``profile_summary``)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._profile = cProfile.Profile() if path else None
        self._used = False

    def enable(self) -> None:
        """Start (or resume) profiling."""
        if self._profile is not None:
            self._used = True
            self._profile.enable()

    def disable(self) -> None:
        """Pause profiling."""
        if self._profile is not None:
            self._profile.disable()

    def dump(self) -> None:
        """Write the stats to ``path``, if there is one and anything was profiled."""
        if self._profile is not None and self.path and self._used:
            self._profile.dump_stats(self.path)


async def serve(
    handlers: Mapping[str, CommandHandler], close: Callable[[], Awaitable[None]]
) -> None:
    """Announce the worker (the ``started`` event), then run the commands read from
    stdin, one at a time and each within ``COMMAND_TIMEOUT``, until ``exit`` or the
    end of stdin; then ``close`` the worker. An unknown command or a failing one is
    fatal (``fail``)."""
    emit(
        {
            "event": "started",
            "stack": "py",
            "python": sys.version.split()[0],
            "loop": type(asyncio.get_running_loop()).__module__,
            "clock_ns": now(),
            "pid": os.getpid(),
        }
    )
    reader = await read_commands()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if not line.strip():
                continue
            cmd = json.loads(line)
            name = cmd.get("cmd")
            if name == "exit":
                break
            handler = handlers.get(name)
            if handler is None:
                raise ValueError(f"unknown command {name!r}")
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await handler(cmd)
    except Exception as exc:
        fail(exc)
    async with asyncio.timeout(CLOSE_TIMEOUT):
        await close()


class CommandWorker(Protocol):
    """What ``run_worker`` serves: a worker's command handlers and its ``close``."""

    def handlers(self) -> Mapping[str, CommandHandler]:
        """The commands, by name."""
        ...

    async def close(self) -> None:
        """Release everything the commands opened (after the last command)."""
        ...


def run_worker(
    doc: str | None,
    profiled_commands: str,
    make_worker: Callable[[str | None], CommandWorker],
) -> NoReturn:
    """A worker's entry point: parse ``--uvloop`` and ``--cprofile PATH`` (``doc``'s first
    paragraph is the description, ``profiled_commands`` names what ``--cprofile``
    covers); then, on asyncio or uvloop, make the worker (``make_worker(PATH or None)``),
    ``serve`` its commands and exit 0 at once (what is left of the stack is not torn
    down)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--cprofile", metavar="PATH", help=f"profile {profiled_commands} into PATH")
    args = parser.parse_args()

    async def main() -> None:
        worker = make_worker(args.cprofile)
        await serve(worker.handlers(), worker.close)

    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
