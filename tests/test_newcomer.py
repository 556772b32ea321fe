"""A newcomer's first ten minutes: a fresh virtual environment, pip install, the demo, the examples.

One virtual environment per test session (made in a temporary folder from a
copy of the repository, as a clone would be) serves every test here. The
commands run from a temporary folder, so that the package comes from that
environment and never from the working tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from lineproc import LineProcess, Processes, fixture_procs  # noqa: F401 (the procs fixture)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
JS_MODULES = ROOT / "tests" / "interop" / "js" / "node_modules"
INSTALL_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "results",
)


@dataclass(frozen=True)
class Newcomer:
    """A virtual environment with peersockets installed by pip, and a folder to work in."""

    python: Path
    command: Path
    home: Path
    env: dict[str, str]


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed with exit status {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )


@pytest.fixture(scope="session")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Newcomer:
    base = tmp_path_factory.mktemp("newcomer")
    source = base / "peersockets-src"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    venv = base / "venv"
    env = _clean_env()
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            env=env,
        ),
        "python -m venv",
    )
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _check(
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(source)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            env=env,
            cwd=base,
        ),
        f"pip install {source}",
    )
    home = base / "home"
    home.mkdir()
    return Newcomer(python, bindir / "peersockets", home, env)


def _run(newcomer: Newcomer, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=newcomer.home,
        env=newcomer.env,
        stdin=subprocess.DEVNULL,
    )


def test_the_package_comes_from_the_new_environment(newcomer: Newcomer) -> None:
    result = _run(
        newcomer, newcomer.python, "-c", "import peersockets; print(peersockets.__file__)"
    )
    _check(result, "import peersockets")
    installed = Path(result.stdout.strip()).resolve()
    assert newcomer.python.parent.parent.resolve() in installed.parents
    assert ROOT not in installed.parents


def test_peersockets_demo_runs_from_the_new_environment(newcomer: Newcomer) -> None:
    version = _run(newcomer, newcomer.command, "--version")
    _check(version, "peersockets --version")
    assert version.stdout.startswith("peersockets ")
    result = _run(newcomer, newcomer.command, "demo")
    _check(result, "peersockets demo")
    assert re.search(
        r"^\+\d+\.\d{3}s  bob -> alice\s+\"hello alice, I am bob\"$", result.stdout, re.M
    )
    assert "3 peers joined, 12 messages, 2 leaves seen" in result.stdout


def _js_available() -> None:
    assert shutil.which("node"), "node is not on PATH (the examples need Node.js 20+)"
    assert (JS_MODULES / "hyperdrive" / "package.json").is_file(), (
        "the pinned npm packages are missing: npm ci --prefix tests/interop/js"
    )


async def test_python_example_connects_to_the_javascript_example(
    newcomer: Newcomer, procs: Processes
) -> None:
    """The header of examples/js/chat.mjs, first way: JavaScript creates the drive and listens."""
    js, key, js_key, port = await _javascript_example_listens(newcomer, procs)
    py, py_key = await _python_example(newcomer, procs, key, "--connect", f"127.0.0.1:{port}")
    await py.expect(rf"^connected:\s+127\.0\.0\.1:{port}$")
    await _talk(js, js_key, py, py_key)


async def test_javascript_example_connects_to_the_python_example(
    newcomer: Newcomer, procs: Processes
) -> None:
    """The other way: a drive key from `peersockets keygen`, Python listens, JavaScript opens it."""
    keygen = _run(newcomer, newcomer.command, "keygen")
    _check(keygen, "peersockets keygen")
    key = re.search(r"^drive z32:\s+(\S+)$", keygen.stdout, re.M)[1]  # type: ignore[index]
    py, py_key = await _python_example(
        newcomer, procs, f"hyper://{key}/", "--listen", "127.0.0.1:0"
    )
    port = (await py.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1]
    js = await _javascript_example(newcomer, procs, "--key", key, "--connect", f"127.0.0.1:{port}")
    assert (await js.expect(r"^drive key:\s+[0-9a-f]{64}\s+\(z32 (\w+)\)$"))[1] == key
    js_key = (await js.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    await _talk(js, js_key, py, py_key)


async def test_peersockets_chat_talks_to_the_javascript_example(
    newcomer: Newcomer, procs: Processes
) -> None:
    js, key, js_key, port = await _javascript_example_listens(newcomer, procs, "--topic", "lobby")
    cli = await _start(
        newcomer,
        procs,
        "peersockets chat",
        newcomer.command,
        "chat",
        key,
        "--connect",
        f"127.0.0.1:{port}",
        "--topic",
        "lobby",
    )
    cli_key = (await cli.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    await _talk(js, js_key, cli, cli_key)


async def _start(newcomer: Newcomer, procs: Processes, name: str, *argv: str | Path) -> LineProcess:
    """Start a program as the newcomer would: from their folder, in their environment."""
    return await procs.start(name, *map(str, argv), cwd=newcomer.home, env=newcomer.env)


async def _python_example(
    newcomer: Newcomer, procs: Processes, *args: str
) -> tuple[LineProcess, str]:
    """examples/chat.py with ``args``: the program and its public key."""
    py = await _start(newcomer, procs, "chat.py", newcomer.python, EXAMPLES / "chat.py", *args)
    return py, (await py.expect(r"^public key: ([0-9a-f]{64})$"))[1]


async def _javascript_example(newcomer: Newcomer, procs: Processes, *args: str) -> LineProcess:
    """examples/js/chat.mjs with ``args``."""
    _js_available()
    return await _start(newcomer, procs, "chat.mjs", "node", EXAMPLES / "js" / "chat.mjs", *args)


async def _javascript_example_listens(
    newcomer: Newcomer, procs: Processes, *options: str
) -> tuple[LineProcess, str, str, str]:
    """examples/js/chat.mjs creates a drive and listens on 127.0.0.1.

    Returns the program, the drive key, the program's public key and its port.
    """
    js = await _javascript_example(newcomer, procs, "--listen", "127.0.0.1:0", *options)
    key = (await js.expect(r"^drive key:\s+([0-9a-f]{64})\s"))[1]
    js_key = (await js.expect(r"^public key: ([0-9a-f]{64})$"))[1]
    port = (await js.expect(r"^listening:\s+127\.0\.0\.1:(\d+)$"))[1]
    return js, key, js_key, port


async def _talk(js: LineProcess, js_key: str, py: LineProcess, py_key: str) -> None:
    """Both see the join, a message crosses each way, the Python side leaves, both exit 0.

    The three chats (examples/chat.py, examples/js/chat.mjs, ``peersockets chat``) print
    joins, messages and leaves alike.
    """
    await py.expect(rf"^\* peer 1 {js_key[:8]} joined \(1 peer connected\)$")
    await js.expect(rf"^\* peer 1 {py_key[:8]} joined \(1 peer connected\)$")
    await js.send_line("hello from javascript ✓")
    await py.expect(rf"^\[peer 1 {js_key[:8]}\] hello from javascript ✓$")
    await py.send_line("hello from python ✓")
    await js.expect(rf"^\[peer 1 {py_key[:8]}\] hello from python ✓$")
    await py.end_input()
    assert await py.wait() == 0
    await js.expect(rf"^\* peer 1 {py_key[:8]} left \(0 peers connected\)")
    await js.end_input()
    assert await js.wait() == 0
    assert "Traceback" not in py.stderr_text
    assert "Error" not in js.stderr_text
