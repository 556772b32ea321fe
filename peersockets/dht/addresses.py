"""Which addresses a peer shares and tries (HYPERDHT.md 3.5, 3.8): its local ones, private and
reserved ranges (hyperdht's ``bogon``), and the LAN match of two peers behind one public IP."""

from __future__ import annotations

import contextlib
import socket as _socket
import struct
import sys

from .messages import Address

__all__ = ["is_bogon", "is_private", "is_reserved", "local_addresses", "match_address"]


def _octets(host: str) -> tuple[int, int, int, int] | None:
    try:
        packed = _socket.inet_aton(host)
    except OSError:
        return None
    a, b, c, d = packed
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


def _interface_addresses() -> list[str]:
    """The IPv4 addresses of this machine's non-loopback interfaces (Linux; none elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    siocgifaddr = 0x8915
    found: list[str] = []
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as probe:
        for _index, name in _socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
                host = _socket.inet_ntoa(answer[20:24])
                if not host.startswith("127.") and host not in found:
                    found.append(host)
    return found


def local_addresses(bound: Address) -> list[Address]:
    """The addresses a socket bound to ``bound`` can be reached at on the local network."""
    host, port = bound
    if host == "127.0.0.1":
        return [(host, port)]
    if host not in ("0.0.0.0", ""):
        return [(host, port)]
    found = [(address, port) for address in _interface_addresses()]
    return found or [("127.0.0.1", port)]


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
