"""The README's quickstart runs as written: two processes meet on the drive and greet."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart(port: int) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quickstart") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the quickstart has no python block"
    return code[1].replace("4000", str(port))


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
