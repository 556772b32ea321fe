"""peersockets.dht.tokens: dht-rpc's two rotating token secrets (HYPERDHT.md 1.4)."""

from __future__ import annotations

import nacl.encoding
import nacl.hash
import pytest

from peersockets.dht.tokens import ROTATE_TICKS, ROTATION_MS, TICK_MS, Tokens
from peersockets.errors import InvalidSetting

S0, S1 = bytes(range(32)), bytes(range(100, 132))


def fixed(*secrets: bytes) -> Tokens:
    queue = list(secrets)
    return Tokens(lambda n: queue.pop(0))


def generichash(message: bytes, key: bytes) -> bytes:
    """libsodium's crypto_generichash (what dht-rpc calls), through pynacl."""
    digest: bytes = nacl.hash.blake2b(message, digest_size=32, key=key, encoder=nacl.encoding.RawEncoder)
    return digest


def test_constants() -> None:
    assert (TICK_MS, ROTATE_TICKS, ROTATION_MS) == (750, 10, 7500)


def test_secret_source_fills_slot_0_then_slot_1() -> None:
    asked: list[int] = []

    def source(n: int) -> bytes:
        asked.append(n)
        return (S0, S1)[len(asked) - 1]

    tokens = Tokens(source)
    assert asked == [32, 32]
    assert tokens.secrets == (S0, S1)


def test_a_token_is_the_host_string_keyed_with_secret_1() -> None:
    tokens = fixed(S0, S1)
    assert tokens.token("127.0.0.1") == generichash(b"127.0.0.1", S1)
    assert tokens.token("127.0.0.1") != generichash(b"127.0.0.1", S0)
    assert len(tokens.token("10.0.0.1")) == 32
    assert tokens.token("10.0.0.1") != tokens.token("10.0.0.2")


def test_valid_under_either_secret_and_only_for_its_host() -> None:
    tokens = fixed(S0, S1)
    assert tokens.valid("1.2.3.4", generichash(b"1.2.3.4", S1))
    assert tokens.valid("1.2.3.4", generichash(b"1.2.3.4", S0))
    assert not tokens.valid("1.2.3.5", generichash(b"1.2.3.4", S1))
    assert not tokens.valid("1.2.3.4", bytes(32))
    assert tokens.valid("1.2.3.4", bytearray(tokens.token("1.2.3.4")))
    assert tokens.valid("1.2.3.4", memoryview(tokens.token("1.2.3.4")))


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_tokens_of_another_size_are_invalid(size: int) -> None:
    tokens = fixed(S0, S1)
    assert not tokens.valid("1.2.3.4", (tokens.token("1.2.3.4") * 3)[:size])


def test_rotate_swaps_and_hashes_the_secret_moving_to_slot_1() -> None:
    """dht-rpc's _drain: tmp = s[0]; s[0] = s[1]; s[1] = tmp; crypto_generichash(tmp, tmp)."""
    tokens = fixed(S0, S1)
    tokens.rotate()
    assert tokens.secrets == (S1, generichash(S0, b""))
    tokens.rotate()
    assert tokens.secrets == (generichash(S0, b""), generichash(S1, b""))


def test_a_token_lives_through_one_rotation_not_two() -> None:
    tokens = fixed(S0, S1)
    issued = tokens.token("8.8.8.8")
    tokens.rotate()
    assert tokens.valid("8.8.8.8", issued)
    assert tokens.token("8.8.8.8") != issued  # new tokens come from the new current secret
    tokens.rotate()
    assert not tokens.valid("8.8.8.8", issued)


def test_tick_rotates_every_tenth_tick() -> None:
    tokens = fixed(S0, S1)
    issued = tokens.token("8.8.8.8")
    results = [tokens.tick() for _ in range(3 * ROTATE_TICKS)]
    assert [i for i, rotated in enumerate(results, 1) if rotated] == [10, 20, 30]
    assert not tokens.valid("8.8.8.8", issued)
    again = fixed(S0, S1)
    for _ in range(ROTATE_TICKS - 1):
        again.tick()
    assert again.secrets == (S0, S1)
    again.tick()
    assert again.secrets == (S1, generichash(S0, b""))


def test_the_host_is_utf8_and_the_port_is_not_part_of_it() -> None:
    tokens = fixed(S0, S1)
    assert tokens.token("h\u00f6st") == generichash("h\u00f6st".encode(), S1)


def test_default_secrets_are_random() -> None:
    a, b = Tokens(), Tokens()
    assert a.secrets != b.secrets and a.secrets[0] != a.secrets[1]
    assert a.token("1.1.1.1") != b.token("1.1.1.1")


@pytest.mark.parametrize("size", [0, 31, 33])
def test_secret_source_must_give_32_bytes(size: int) -> None:
    with pytest.raises(InvalidSetting, match=f"got {size}"):
        Tokens(lambda n: bytes(size))
