"""The package as a package index would get it: the sdist and the wheel build (without
downloading anything: --no-isolation, from the test extra), pass `twine check --strict`, hold
what they should and nothing else, and carry metadata whose links work off GitHub."""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import peersockets

ROOT = Path(__file__).resolve().parent.parent
VERSION = peersockets.__version__

pytestmark = pytest.mark.timeout(180)


@dataclass
class Dist:
    sdist: Path
    wheel: Path

    def sdist_names(self) -> list[str]:
        with tarfile.open(self.sdist) as archive:
            prefix = f"peersockets-{VERSION}/"
            names = [m.name for m in archive.getmembers() if m.isfile()]
        assert all(n.startswith(prefix) for n in names), names
        return [n[len(prefix) :] for n in names]

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as archive:
            text = archive.read(f"peersockets-{VERSION}.dist-info/METADATA").decode("utf-8")
        return email.parser.Parser().parsestr(text)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    # the sdist, then the wheel built from the unpacked sdist (so the sdist is complete)
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, f"python -m build failed:\n{build.stdout}\n{build.stderr}"
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert [p.name for p in sdists] == [f"peersockets-{VERSION}.tar.gz"]
    assert [p.name for p in wheels] == [f"peersockets-{VERSION}-py3-none-any.whl"]
    return Dist(sdists[0], wheels[0])


def package_files() -> set[str]:
    """The package's files in the source tree: every module and py.typed."""
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "peersockets").rglob("*.py")}
    files.add("peersockets/py.typed")
    return {f for f in files if "__pycache__" not in f}


def test_twine_check_strict_passes(dist: Dist) -> None:
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist.sdist), str(dist.wheel)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("PASSED") == 2, check.stdout


def test_the_sdist_holds_the_package_and_its_notes_and_no_development_files(dist: Dist) -> None:
    names = set(dist.sdist_names())
    for wanted in ("pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md",
                   "SECURITY.md", "MANIFEST.in"):
        assert wanted in names, f"{wanted} is not in the sdist"
    missing = package_files() - names
    assert not missing, f"package files not in the sdist: {sorted(missing)}"
    # tests are left out whole (they need the JavaScript peers and the repository), and so is
    # everything else that is not the package
    unwanted = (".venv/", "node_modules/", "site/", "tests/", "benchmarks/", "examples/",
                "docs/", "scripts/", ".ci/", ".git/", "build/", "dist/", ".hypothesis/",
                ".mypy_cache/", ".ruff_cache/", ".pytest_cache/", "mkdocs.yml")
    stray = sorted(n for n in names if n.startswith(unwanted) or "/node_modules/" in n)
    assert not stray, f"development files in the sdist: {stray}"
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    allowed_top = {"peersockets", "peersockets.egg-info", "pyproject.toml", "PKG-INFO",
                   "README.md", "LICENSE", "CHANGELOG.md", "SECURITY.md", "MANIFEST.in",
                   "setup.cfg"}
    assert {n.split("/")[0] for n in names} <= allowed_top, sorted(names)


def test_the_wheel_holds_the_typed_package_and_no_tests(dist: Dist) -> None:
    names = set(dist.wheel_names())
    info = f"peersockets-{VERSION}.dist-info/"
    missing = package_files() - names
    assert not missing, f"package files not in the wheel: {sorted(missing)}"
    assert "peersockets/py.typed" in names
    assert f"{info}licenses/LICENSE" in names
    assert {n.split("/")[0] for n in names} == {"peersockets", info.rstrip("/")}, sorted(names)
    with zipfile.ZipFile(dist.wheel) as archive:
        entry_points = archive.read(f"{info}entry_points.txt").decode()
    assert "peersockets = peersockets.cli:main" in entry_points
    assert "peersockets.testing = peersockets.testing" in entry_points  # the pytest11 plugin


def test_the_metadata_is_complete_and_valid(dist: Dist) -> None:
    import trove_classifiers  # the test extra has it
    meta = dist.metadata()
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.11"
    classifiers = meta.get_all("Classifier") or []
    unknown = [c for c in classifiers if c not in trove_classifiers.classifiers]
    assert not unknown, f"classifiers a package index refuses: {unknown}"
    assert not [c for c in classifiers if c.startswith("License ::")]  # SPDX says it
    for wanted in ("Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.13",
                   "Programming Language :: Python :: 3 :: Only", "Typing :: Typed",
                   "Framework :: AsyncIO", "Development Status :: 3 - Alpha"):
        assert wanted in classifiers, wanted
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(u.startswith("https://") for u in urls.values()), urls
    assert "hyperdrive" in meta["Keywords"] and "asyncio" in meta["Keywords"]
    assert meta["Description-Content-Type"] == "text/markdown"


def markdown_links(text: str) -> list[str]:
    """Every link target of a Markdown text, outside code blocks and code spans."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)
    text = re.sub(r"(`+).+?\1", "code", text)
    links = re.findall(r"\]\(\s*<?([^)\s>]+)", text)  # [text](target), ![alt](target)
    links += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", text, flags=re.M)  # [ref]: target
    links += re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)""", text)  # raw HTML
    return links


def test_every_link_of_the_long_description_works_on_a_package_index(dist: Dist) -> None:
    description = dist.metadata().get_payload()
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.md").read_text(encoding="utf-8").strip()
    links = markdown_links(description)
    assert len(links) > 5, links
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert not relative, (
        "README.md is the package index's long description, where relative links go nowhere: "
        f"make these absolute (https://github.com/peersockets/peersockets/blob/main/...): {relative}"
    )


def test_markdown_links_finds_every_kind_of_link() -> None:
    text = "a [x](docs/a.md) b ![i](img.png) `[no](code.md)`\n[r]: ref.md\n<a href='h.md'>\n```\n[no](fence.md)\n```\n"
    assert markdown_links(text) == ["docs/a.md", "img.png", "ref.md", "h.md"]


def test_one_version_everywhere() -> None:
    assert importlib.metadata.version("peersockets") == VERSION
    script = Path(sys.executable).parent / "peersockets"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "peersockets"]
    run = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"peersockets {VERSION}"
    with (ROOT / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "peersockets.__version__"}
