"""The layering of docs/architecture.md: imports go down only; the wire cores are sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "peersockets"
LAYERS = ["wire", "connection", "swarm", "api", "cli"]  # bottom up


def _imports(path: Path) -> set[str]:
    """The peersockets modules (and asyncio) that ``path`` imports, as layer names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                found.add(module.split(".")[0])
            elif path.parent.name == "wire" and node.level == 1:
                found.add("wire")
            else:
                found.add(module.split(".")[0] if module else "")
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "wire").glob("*.py")), ids=lambda p: p.name)
def test_the_wire_cores_are_sans_io(path: Path) -> None:
    imported = _imports(path)
    assert not imported & {"asyncio", "socket", "selectors", "time"}, imported
    assert not imported & set(LAYERS[1:]), imported


@pytest.mark.parametrize("layer", LAYERS[1:])
def test_imports_go_down_only(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    imported = _imports(PACKAGE / f"{layer}.py")
    assert not imported & above, f"{layer}.py imports {imported & above}"


SANS_IO_CORES = [
    "udx/packet.py",
    "udx/stream.py",
    "udx/congestion.py",
    "dht/messages.py",
    "dht/rpc.py",
    "dht/query.py",
    "dht/routing.py",
    "dht/tokens.py",
    "dht/nat.py",
    "dht/records.py",
    "dht/store.py",
    "dht/peer_messages.py",
    "dht/addresses.py",
]


@pytest.mark.parametrize("name", SANS_IO_CORES)
def test_the_udx_and_dht_cores_are_sans_io(name: str) -> None:
    source = (PACKAGE / name).read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"asyncio", "socket", "selectors", "time"}, imported


@pytest.mark.parametrize("path", sorted((PACKAGE / "udx").glob("*.py")), ids=lambda p: p.name)
def test_udx_sits_below_connection_and_above_errors_only(path: Path) -> None:
    """udx/ is a transport: it imports nothing of peersockets but errors and itself."""
    tree = ast.parse(path.read_text())
    relative = {
        (node.level, node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
    }
    outside = {module for level, module in relative if level >= 2 and module != "errors"}
    assert not outside, f"{path.name} imports {outside}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "dht").glob("*.py")), ids=lambda p: p.name)
def test_dht_sits_on_udx_and_the_wire_codecs_only(path: Path) -> None:
    """dht/ imports errors, udx (its sockets), wire's codecs and crypto, and connection (the
    secret-stream protocol its connections run, as TCP ones do): nothing above (swarm, api)."""
    tree = ast.parse(path.read_text())
    relative = {
        (node.level, node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
    }
    outside = {
        module
        for level, module in relative
        if level >= 2
        and module not in ("errors", "udx", "connection")
        and not module.startswith(("wire.", "udx."))
    }
    assert not outside, f"{path.name} imports {outside}"
