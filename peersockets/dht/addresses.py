"""Which addresses a peer tries (HYPERDHT.md 3.5, 3.8): private and reserved ranges (hyperdht's
``bogon``), and the LAN match of two peers behind one public IP. Sans-I/O."""

from __future__ import annotations

import ipaddress

from .messages import Address

__all__ = ["is_bogon", "is_private", "is_reserved", "match_address"]


def _octets(host: str) -> tuple[int, int, int, int] | None:
    try:
        a, b, c, d = ipaddress.IPv4Address(host).packed
    except ValueError:
        return None
    return a, b, c, d


def is_private(host: str) -> bool:
    """10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16."""
    octets = _octets(host)
    if octets is None:
        return False
    a, b, _c, _d = octets
    return (
        a in (10, 127)
        or (a == 100 and 64 <= b <= 127)
        or (a == 169 and b == 254)
        or (a == 172 and 16 <= b <= 31)
        or (a == 192 and b == 168)
    )


def is_reserved(host: str) -> bool:
    """0/8, 192.0.0/24, the three TEST-NETs, 198.18/15, multicast and above."""
    octets = _octets(host)
    if octets is None:
        return True
    a, b, c, _d = octets
    return (
        a == 0
        or (a == 192 and b == 0 and c in (0, 2))
        or (a == 198 and 18 <= b <= 19)
        or (a == 198 and b == 51 and c == 100)
        or (a == 203 and b == 0 and c == 113)
        or a >= 224
    )


def is_bogon(host: str) -> bool:
    """Not routable on the internet: private or reserved."""
    return is_private(host) or is_reserved(host)


def match_address(mine: list[Address], theirs: list[Address]) -> Address | None:
    """The remote local address sharing the longest prefix (/24, /16, /8) with one of ours."""
    best: Address | None = None
    best_depth = 0
    for local in mine:
        a = local[0].split(".")
        for remote in theirs:
            b = remote[0].split(".")
            depth = 0
            while depth < 3 and a[depth] == b[depth]:
                depth += 1
            if depth == 3:
                return remote
            if depth > best_depth:
                best, best_depth = remote, depth
    return best
