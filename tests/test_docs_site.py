"""The documentation site (mkdocs.yml) builds with every warning an error, has its tutorial,
how-to and note pages, and an API reference that names every public name; the testing
tutorial's example suite passes."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import peersockets
import peersockets.dht
import peersockets.errors
import peersockets.udx

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)

PAGES = [
    "index.html",
    "tutorial/quickstart/index.html",
    "tutorial/chat/index.html",
    "tutorial/javascript/index.html",
    "tutorial/testing/index.html",
    "howto/limits/index.html",
    "howto/speed/index.html",
    "dht/index.html",
    "udx/index.html",
    "security/index.html",
    "wire/index.html",
    "architecture/index.html",
    "changelog/index.html",
    "reference/index.html",
    "reference/peersockets/index.html",
    "reference/errors/index.html",
    "reference/dht/index.html",
    "reference/udx/index.html",
    "reference/testing/index.html",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, f"the docs build failed:\n{build.stdout}\n{build.stderr}"
    assert "WARNING" not in build.stderr, build.stderr
    return out


def page(site: Path, name: str) -> str:
    return (site / name).read_text(encoding="utf-8")


def anchors(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def test_every_page_is_built_and_every_include_expanded(site: Path) -> None:
    for name in PAGES:
        assert (site / name).is_file(), f"{name} was not built"
        html = page(site, name)
        assert "<!-- include" not in html and "--8&lt;--" not in html, f"{name}: an include was left"
    assert (site / "objects.inv").is_file()  # the inventory other projects' docs link to


def test_pages_hold_the_text_of_their_one_source(site: Path) -> None:
    # the included files and sections, not copies
    assert "quickstart.py" in page(site, "tutorial/quickstart/index.html")
    assert "registerExtension" in page(site, "tutorial/javascript/index.html")
    limits = page(site, "howto/limits/index.html")
    assert "handshake_timeout" in limits and "max_receive_buffer" in limits
    assert "What a member can do" in page(site, "security/index.html")
    assert "compact-encoding" in page(site, "wire/index.html")
    assert "Unreleased" in page(site, "changelog/index.html")
    testing = page(site, "tutorial/testing/index.html")
    assert "peersockets[testing]" in testing and "dht_testnet" in testing and "make_swarm" in testing
    # README's absolute links to files the site has a page for point at those pages
    assert "github.com/peersockets/peersockets/blob/main/docs/dht.md" not in page(
        site, "tutorial/quickstart/index.html"
    )


def test_the_api_reference_names_every_public_name(site: Path) -> None:
    top = anchors(page(site, "reference/peersockets/index.html"))
    missing = [name for name in peersockets.__all__ if f"peersockets.{name}" not in top]
    assert not missing, f"peersockets names missing from reference/peersockets.md: {missing}"
    for wanted in ("Peersockets", "Topic.send", "Topic.broadcast", "Swarm", "Swarm.connect",
                   "Peersockets.wait_for_peers", "PeerEvent.address"):
        assert f"peersockets.{wanted}" in top, wanted

    for module, name in ((peersockets.dht, "dht"), (peersockets.udx, "udx")):
        ids = anchors(page(site, f"reference/{name}/index.html"))
        missing = [n for n in module.__all__ if f"peersockets.{name}.{n}" not in ids]
        assert not missing, f"peersockets.{name} names missing from its reference: {missing}"
    assert "peersockets.dht.DHT.connect" in anchors(page(site, "reference/dht/index.html"))

    errors = anchors(page(site, "reference/errors/index.html"))
    classes = [
        name
        for name, value in vars(peersockets.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "peersockets.errors"
    ]
    assert "PeersocketsError" in classes and len(classes) > 30
    missing = [name for name in classes if f"peersockets.errors.{name}" not in errors]
    assert not missing, f"error classes missing from reference/errors.md: {missing}"

    testing = anchors(page(site, "reference/testing/index.html"))
    for name in ("MemoryNetwork", "DHTTestnet", "memory_network", "make_swarm", "dht_testnet"):
        assert f"peersockets.testing.{name}" in testing, name


def test_the_testing_tutorial_example_passes(tmp_path: Path) -> None:
    text = (ROOT / "docs/tutorial/testing.md").read_text(encoding="utf-8")
    section = text[text.index("## The three fixtures") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the testing tutorial has no example suite"
    (tmp_path / "test_chat.py").write_text(code[1], encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
        encoding="utf-8",
    )
    # -p: the fixtures whether or not the entry point is installed (it is skipped if it is)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "peersockets.testing",
         "test_chat.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout, run.stdout
