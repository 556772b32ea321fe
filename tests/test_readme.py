"""The README's examples run as written: the quickstart's two processes meet on the drive and
greet; the test of "Testing your app" passes under pytest where peersockets[testing] is installed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from isolated_env import make_env, run_pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart(port: int) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quickstart") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the quickstart has no python block"
    return code[1].replace("4000", str(port))


def section_code(heading: str) -> str:
    """The first python block of a README section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, f"README's {heading!r} has no python block"
    return code[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_quickstart_listen_and_connect(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart(port), encoding="utf-8")
    run = [sys.executable, str(script)]
    listener = subprocess.Popen(
        [*run, "listen"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # wait until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and listener.poll() is None, listener.communicate()
            time.sleep(0.05)
        connector = subprocess.run([*run, "connect"], capture_output=True, text=True, timeout=30)
        out, err = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()
    assert connector.returncode == 0, connector.stderr
    assert listener.returncode == 0, err
    assert "says hello from connect" in out and out.startswith("join peer 1")
    assert "says hello from listen" in connector.stdout


def test_testing_your_app_example_passes(tmp_path: Path) -> None:
    """The example runs as a user's test file, in an environment with only peersockets[testing]
    installed and no conftest: the fixture comes from the entry point."""
    code = section_code("Testing your app")
    assert "memory_network" in code
    python = make_env(tmp_path / "env", ["peersockets[testing]"])
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (suite / "test_example.py").write_text(code, encoding="utf-8")
    run = run_pytest(python, suite, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout, run.stdout
