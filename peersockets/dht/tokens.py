"""dht-rpc's request tokens: proof that a requester really receives at its address (HYPERDHT.md 1.4).

A node keeps two random 32-byte secrets. A token for a host is keyed BLAKE2b-256
of the UTF-8 dotted host string (not the port) with the current secret; a token
a request brings is valid under either secret. dht-rpc (``lib/io.js``) keeps them
as ``secrets[0]`` and ``secrets[1]``, issues with ``secrets[1]`` and, every 10
ticks of its 750 ms drain timer, swaps the two and replaces the one that moved
to ``secrets[1]`` (the older) by BLAKE2b-256 of itself. So a token stays valid
for one to two rotations: 7.5 to 15 s after it was issued.

Sans-I/O: the caller calls ``tick`` every TICK_MS (or ``rotate`` itself).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Final

from ..errors import InvalidSetting
from ..wire.crypto import blake2b_256
from ..wire.encoding import Buffer

__all__ = ["ROTATE_TICKS", "ROTATION_MS", "SECRET_SIZE", "TICK_MS", "TOKEN_SIZE", "Tokens"]

TICK_MS: Final = 750
"""dht-rpc's drain timer, which also counts down to the next rotation."""
ROTATE_TICKS: Final = 10
"""Drain ticks between rotations."""
ROTATION_MS: Final = TICK_MS * ROTATE_TICKS
"""7.5 s: a token is valid for one to two of these."""
SECRET_SIZE: Final = 32
TOKEN_SIZE: Final = 32


class Tokens:
    """The two rotating secrets and the tokens they make.

    ``secret_source(32)`` is called twice, for ``secrets[0]`` then ``secrets[1]``
    (dht-rpc's order). dht-rpc draws them on first use and counts down only from then;
    here they are drawn at construction and ``tick`` counts from construction."""

    __slots__ = ("_countdown", "_secrets")

    def __init__(self, secret_source: Callable[[int], bytes] = os.urandom) -> None:
        secrets = [bytes(secret_source(SECRET_SIZE)) for _ in range(2)]
        for secret in secrets:
            if len(secret) != SECRET_SIZE:
                raise InvalidSetting(
                    f"secret_source must return {SECRET_SIZE} bytes, got {len(secret)}: {secret.hex()}"
                )
        self._secrets = secrets
        self._countdown = ROTATE_TICKS

    @property
    def secrets(self) -> tuple[bytes, bytes]:
        """(secrets[0], secrets[1]) in dht-rpc's slots: the previous one, the current one."""
        return self._secrets[0], self._secrets[1]

    def token(self, host: str) -> bytes:
        """The token to give ``host`` now (made with the current secret, dht-rpc's ``token(addr, 1)``)."""
        return blake2b_256(host.encode("utf-8"), key=self._secrets[1])

    def valid(self, host: str, token: Buffer) -> bool:
        """Whether ``token`` is one of the two tokens ``host`` may bring now."""
        if len(token) != TOKEN_SIZE:
            return False
        message = host.encode("utf-8")
        # Both are computed (no early exit) so timing tells nothing about which secret matched.
        current = hmac.compare_digest(token, blake2b_256(message, key=self._secrets[1]))
        previous = hmac.compare_digest(token, blake2b_256(message, key=self._secrets[0]))
        return current or previous

    def rotate(self) -> None:
        """Swap the secrets; the one that moves to ``secrets[1]`` becomes BLAKE2b-256 of itself."""
        older = self._secrets[0]
        self._secrets[0] = self._secrets[1]
        self._secrets[1] = blake2b_256(older)

    def tick(self) -> bool:
        """One TICK_MS drain tick: rotates on every ROTATE_TICKS-th; True when it did."""
        self._countdown -= 1
        if self._countdown:
            return False
        self._countdown = ROTATE_TICKS
        self.rotate()
        return True
