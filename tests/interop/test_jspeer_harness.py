"""Checks of the JavaScript peer harness itself (tests/interop/jspeer.py)."""

from __future__ import annotations

import hashlib

import pytest

from .jspeer import JsPeer, pattern


def test_pattern() -> None:
    assert pattern(0, 0) == b""
    assert pattern(5, 0) == bytes([0, 1, 2, 3, 4])
    assert pattern(3, 250) == bytes([250, 0, 1])
    assert pattern(4, 251 + 7) == pattern(4, 7)
    big = pattern(16 * 1024 * 1024, 3)
    assert len(big) == 16 * 1024 * 1024
    for i in (0, 1, 250, 251, 252, 1_000_003, len(big) - 1):
        assert big[i] == (3 + i) % 251
    slow = bytes((9 + i) % 251 for i in range(3000))
    assert pattern(3000, 9) == slow
    # the same digest the JavaScript peers report for pattern(1000, 1)
    assert (
        hashlib.sha256(pattern(1000, 1)).hexdigest()
        == hashlib.sha256(bytes((1 + i) % 251 for i in range(1000))).hexdigest()
    )


@pytest.mark.asyncio
async def test_secretstream_peer_listens() -> None:
    peer = await JsPeer.start("secretstream_peer.mjs", "--listen")
    try:
        event = await peer.expect("listening")
        assert isinstance(event["port"], int) and 0 < event["port"] < 65536
    finally:
        await peer.close()
    assert peer.returncode == 0, peer.stderr
