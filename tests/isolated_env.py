"""Throwaway Python environments holding only some of the installed distributions, to run pytest
as a user of peersockets would: with ``peersockets[testing]``, or without pytest-asyncio.

A new venv (no pip, nothing installed) gets symlinks to the files of the distributions that the
given requirements pull in, as this environment has them installed (peersockets itself
editable, with its entry points): nothing is downloaded, and what is left out is really absent,
its modules and its metadata (a pytest11 entry point included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# variables of this run that must not leak into the user's run
_SCRUBBED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_CURRENT_TEST",
    "PYTEST_XDIST_WORKER",
)


def distributions(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions these requirements need, their dependencies included."""
    found: dict[str, metadata.Distribution] = {}
    done: dict[str, set[str]] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = {"", *requirement.extras}
        if name in done and extras <= done[name]:
            continue
        done.setdefault(name, set()).update(extras)
        dist = found.get(name) or metadata.distribution(name)  # PackageNotFoundError: not here
        found[name] = dist
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return found


def make_env(root: Path, requirements: list[str]) -> Path:
    """A new environment in ``root`` with just what ``requirements`` need; its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    assert site.is_dir(), site
    for dist in distributions(requirements).values():
        assert dist.files is not None, f"{dist.metadata['Name']} lists no files"
        tops = {f.parts[0] for f in dist.files if f.parts and f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target = site / top
            if not target.exists():
                target.symlink_to(Path(str(dist.locate_file(top))).resolve())
    python = root / ("Scripts" if os.name == "nt" else "bin") / Path(sys.executable).name
    assert python.exists(), python
    return python


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without the variables that would steer the user's run."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_pytest(
    python: Path, directory: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``directory`` with ``python`` (no cache written), as its own rootdir."""
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=directory,
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
