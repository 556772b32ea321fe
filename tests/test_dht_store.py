"""A persistent node's record store (peersockets.dht.store, HYPERDHT.md 2.5): what it answers,
what it keeps, for how long, and how much."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest

from peersockets.dht import records as r
from peersockets.dht import store as store_module
from peersockets.dht.records import (
    Announce,
    HyperdhtErrorCode,
    MutablePutRequest,
    PeerRecord,
)
from peersockets.dht.store import Forward, RecordStore, Reply
from peersockets.errors import InvalidSetting
from peersockets.wire.crypto import KeyPair, blake2b_256

NODE_ID = blake2b_256(b"node")
TOKEN = blake2b_256(b"token")
SOURCE = ("10.0.0.9", 4000)
NOW_MS = 1_700_000_000_000
ROTATION = 800.0  # ceil(2/3 * 20 min)
VALUE_ROTATION = 115_200.0  # ceil(2/3 * 48 h)
ACK = Reply(token=False, closer_nodes=False)

_seeds = itertools.count(1)


def keys() -> KeyPair:
    return KeyPair.from_seed(next(_seeds).to_bytes(32, "little"))


def topic(n: int = 0) -> bytes:
    return blake2b_256(b"topic %d" % n)


def relays(n: int, base: int = 1) -> tuple[tuple[str, int], ...]:
    return tuple((f"10.0.{base}.{i}", 1000 + i) for i in range(n))


def signed(
    key_pair: KeyPair,
    target: bytes,
    *,
    relay_addresses: tuple[tuple[str, int], ...] = (),
    refresh: bytes | None = None,
    bump: int = 0,
    unannounce: bool = False,
    node_id: bytes = NODE_ID,
    token: bytes = TOKEN,
) -> Announce:
    peer = PeerRecord(key_pair.public_key, relay_addresses)
    sign = r.sign_unannounce if unannounce else r.sign_announce
    return Announce(peer, refresh, sign(key_pair, target, node_id, token, peer, refresh), bump)


def announce(
    store: RecordStore,
    target: bytes,
    ann: Announce,
    now: float = 0.0,
    source: tuple[str, int] = SOURCE,
    unix_ms: int = NOW_MS,
) -> Reply | None:
    return store.announce(target, NODE_ID, TOKEN, source, ann, now, unix_ms=unix_ms)


def lookup(
    store: RecordStore, target: bytes, now: float = 0.0, seed: int = 0
) -> r.LookupReply | None:
    reply = store.lookup(target, now, random.Random(seed).random)
    assert reply is not None and reply.token and reply.closer_nodes and reply.error == 0
    return None if reply.value is None else r.decode_lookup_reply(reply.value)


def looked_up_keys(store: RecordStore, target: bytes, now: float = 0.0) -> set[bytes]:
    reply = lookup(store, target, now)
    return set() if reply is None else {p.public_key for p in reply.peers}


def found(store: RecordStore, target: bytes, now: float = 0.0) -> PeerRecord | None:
    reply = store.find_peer(target, now)
    assert reply is not None and reply.token and reply.closer_nodes
    return None if reply.value is None else r.decode_peer_record(reply.value)


@pytest.fixture
def store() -> RecordStore:
    return RecordStore(0.0)


# -- announce and lookup --------------------------------------------------------------------------


def test_announce_on_a_topic_is_found_by_lookup(store: RecordStore) -> None:
    k = keys()
    assert announce(store, topic(), signed(k, topic(), relay_addresses=relays(2))) == ACK
    assert lookup(store, topic()) == r.LookupReply((PeerRecord(k.public_key, relays(2)),), 0)
    assert lookup(store, topic(1)) is None
    assert found(store, topic()) is None  # a topic record is not a forward
    assert store.sizes()["records"] == 1 and store.sizes()["forwards"] == 0


def test_lookup_with_nothing_replies_without_value(store: RecordStore) -> None:
    assert store.lookup(topic(), 0.0) == Reply(None)


def test_self_announce_becomes_a_forward(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    source = ("192.168.1.5", 5555)
    assert (
        announce(store, target, signed(k, target, relay_addresses=relays(1)), source=source) == ACK
    )
    record = PeerRecord(k.public_key, relays(1))
    assert found(store, target) == record
    assert store.forward(target, 0.0) == Forward(source, r.encode_peer_record(record))
    assert store.sizes()["records"] == 0 and store.sizes()["forwards"] == 1
    # a lookup of the key's hash includes the forward's record
    assert lookup(store, target) == r.LookupReply((record,), 0)


def test_lookup_appends_the_forward_when_there_is_room(store: RecordStore) -> None:
    server = keys()
    target = blake2b_256(server.public_key)
    announce(store, target, signed(server, target))
    others = [keys() for _ in range(20)]
    for k in others[:19]:
        announce(store, target, signed(k, target))
    reply = lookup(store, target)
    assert reply is not None and len(reply.peers) == 20
    assert reply.peers[-1].public_key == server.public_key  # after the 19 drawn records
    announce(store, target, signed(others[19], target))
    assert server.public_key not in looked_up_keys(store, target)  # 20 records: no room


def test_lookup_draws_at_most_20_distinct_records_at_random(store: RecordStore) -> None:
    key_pairs = [keys() for _ in range(45)]
    all_keys = {k.public_key for k in key_pairs}
    for k in key_pairs:
        announce(store, topic(), signed(k, topic()))
    seen: set[bytes] = set()
    for seed in range(30):
        reply = lookup(store, topic(), seed=seed)
        assert reply is not None
        picked = [p.public_key for p in reply.peers]
        assert len(picked) == 20 == len(set(picked))
        seen |= set(picked)
    assert seen == all_keys
    # the same records and the same random source give the same reply (each draw reorders
    # the set, as in record-cache, so compare two stores built alike)
    twin = RecordStore(0.0)
    for k in key_pairs:
        announce(twin, topic(), signed(k, topic()))
    for seed in range(30):
        twin.lookup(topic(), 0.0, random.Random(seed).random)
    a = store.lookup(topic(), 0.0, random.Random(7).random)
    b = twin.lookup(topic(), 0.0, random.Random(7).random)
    assert a is not None and b is not None and a.value == b.value


def test_lookup_uses_record_caches_draw() -> None:
    """record-cache picks index floor(random * remaining) and swaps the pick to the end."""
    store = RecordStore(0.0)
    a, b, c = keys(), keys(), keys()
    for k in (a, b, c):
        announce(store, topic(), signed(k, topic()))
    reply = store.lookup(topic(), 0.0, lambda: 0.0)
    assert reply is not None and reply.value is not None
    picked = [p.public_key for p in r.decode_lookup_reply(reply.value).peers]
    # [a, b, c]: pick a, swap -> [c, b, a]; pick c, swap -> [b, c, a]; pick b
    assert picked == [a.public_key, c.public_key, b.public_key]


def test_at_most_three_relay_addresses_are_kept(store: RecordStore) -> None:
    k = keys()
    assert announce(store, topic(), signed(k, topic(), relay_addresses=relays(5))) == ACK
    reply = lookup(store, topic())
    assert reply is not None and reply.peers[0].relay_addresses == relays(3)
    server = keys()
    target = blake2b_256(server.public_key)
    announce(store, target, signed(server, target, relay_addresses=relays(4)))
    peer = found(store, target)
    assert peer is not None and peer.relay_addresses == relays(3)


def test_reannounce_in_the_same_generation_keeps_the_first_record(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic(), relay_addresses=relays(1, base=1)))
    announce(store, topic(), signed(k, topic(), relay_addresses=relays(1, base=2)), now=10)
    reply = lookup(store, topic(), now=10)
    assert reply is not None and reply.peers[0].relay_addresses == relays(1, base=1)
    # after a rotation the record is stale; announcing again moves the new one in
    announce(store, topic(), signed(k, topic(), relay_addresses=relays(1, base=2)), now=ROTATION)
    reply = lookup(store, topic(), now=ROTATION)
    assert reply is not None and reply.peers == (PeerRecord(k.public_key, relays(1, base=2)),)
    assert store.sizes()["records"] == 1


def test_a_forward_is_replaced_by_every_self_announce(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    announce(store, target, signed(k, target, relay_addresses=relays(1, 1)), source=("1.1.1.1", 1))
    announce(store, target, signed(k, target, relay_addresses=relays(1, 2)), source=("2.2.2.2", 2))
    forward = store.forward(target, 0.0)
    assert forward is not None and forward.relay == ("2.2.2.2", 2)
    assert r.decode_peer_record(forward.record).relay_addresses == relays(1, 2)


# -- what gets no reply ---------------------------------------------------------------------------


def test_announces_that_get_no_reply(store: RecordStore) -> None:
    k = keys()
    good = signed(k, topic())
    assert store.announce(None, NODE_ID, TOKEN, SOURCE, good, 0.0, unix_ms=NOW_MS) is None
    assert store.announce(topic(), None, TOKEN, SOURCE, good, 0.0, unix_ms=NOW_MS) is None
    assert store.announce(topic(), NODE_ID, None, SOURCE, good, 0.0, unix_ms=NOW_MS) is None
    assert announce(store, topic(1), good) is None  # signed for another target
    assert announce(store, topic(), signed(k, topic(), node_id=b"\x00" * 32)) is None
    assert announce(store, topic(), signed(k, topic(), token=b"\x00" * 32)) is None
    assert announce(store, topic(), signed(k, topic(), unannounce=True)) is None
    assert announce(store, topic(), Announce(good.peer)) is None  # no signature
    assert announce(store, topic(), Announce(good.peer, b"r" * 32, good.signature)) is None
    assert announce(store, topic(), Announce()) is None  # neither peer nor refresh
    assert announce(store, topic(), Announce(refresh=b"r" * 32)) is None  # unknown refresh
    assert store.sizes() == dict.fromkeys(store.sizes(), 0)


def test_a_record_signed_with_more_relays_than_kept_is_verified_whole(store: RecordStore) -> None:
    k = keys()
    ann = signed(k, topic(), relay_addresses=relays(4))
    assert ann.peer is not None
    cut = Announce(PeerRecord(k.public_key, relays(3)), None, ann.signature)
    assert announce(store, topic(), cut) is None
    assert announce(store, topic(), ann) == ACK


# -- bump -----------------------------------------------------------------------------------------


def bump_of(store: RecordStore, target: bytes, now: float = 0.0) -> int:
    reply = lookup(store, target, now)
    return 0 if reply is None else reply.bump


def test_bump_rules(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic(), bump=NOW_MS))
    assert bump_of(store, topic()) == NOW_MS
    announce(store, topic(), signed(k, topic(), bump=NOW_MS - 1))  # lower: kept
    assert bump_of(store, topic()) == NOW_MS
    announce(store, topic(), signed(k, topic(), bump=NOW_MS + 60_000))  # at the drift limit
    assert bump_of(store, topic()) == NOW_MS + 60_000
    announce(store, topic(), signed(k, topic(), bump=NOW_MS + 60_001), unix_ms=NOW_MS)  # too far
    assert bump_of(store, topic()) == NOW_MS + 60_000
    announce(store, topic(), signed(k, topic(), bump=NOW_MS + 70_000), unix_ms=NOW_MS + 10_000)
    assert bump_of(store, topic()) == NOW_MS + 70_000


def test_self_announce_ignores_bump(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    announce(store, target, signed(k, target, bump=NOW_MS))
    assert bump_of(store, target) == 0 and store.sizes()["bumps"] == 0


def test_bump_stays_after_the_records_go(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic(), bump=NOW_MS))
    assert (
        store.unannounce(topic(), NODE_ID, TOKEN, signed(k, topic(), unannounce=True), 0.0) == ACK
    )
    assert store.lookup(topic(), 0.0) == Reply(None)  # no records: no value, bump not sent
    k2 = keys()
    announce(store, topic(), signed(k2, topic()))
    assert bump_of(store, topic()) == NOW_MS


# -- unannounce -----------------------------------------------------------------------------------


def test_unannounce_removes_the_record(store: RecordStore) -> None:
    a, b = keys(), keys()
    announce(store, topic(), signed(a, topic()))
    announce(store, topic(), signed(b, topic()))
    unann = signed(a, topic(), unannounce=True)
    assert store.unannounce(topic(), NODE_ID, TOKEN, unann, 1.0) == ACK
    assert looked_up_keys(store, topic(), 1.0) == {b.public_key}
    # unannouncing what is not there is still acknowledged
    assert store.unannounce(topic(), NODE_ID, TOKEN, unann, 1.0) == ACK


def test_unannounce_removes_a_stale_record_too(store: RecordStore) -> None:
    a = keys()
    announce(store, topic(), signed(a, topic()))
    store.handle_timer(ROTATION)
    assert store.unannounce(topic(), NODE_ID, TOKEN, signed(a, topic(), unannounce=True), ROTATION)
    assert lookup(store, topic(), ROTATION) is None


def test_unannounce_removes_the_forward(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    announce(store, target, signed(k, target))
    assert store.unannounce(target, NODE_ID, TOKEN, signed(k, target, unannounce=True), 0.0) == ACK
    assert found(store, target) is None


def test_unannounces_that_get_no_reply(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic()))
    unann = signed(k, topic(), unannounce=True)
    assert store.unannounce(None, NODE_ID, TOKEN, unann, 0.0) is None
    assert store.unannounce(topic(), None, TOKEN, unann, 0.0) is None
    assert store.unannounce(topic(), NODE_ID, None, unann, 0.0) is None
    assert store.unannounce(topic(), NODE_ID, TOKEN, signed(k, topic()), 0.0) is None
    assert store.unannounce(topic(), NODE_ID, TOKEN, Announce(unann.peer), 0.0) is None
    assert (
        store.unannounce(topic(), NODE_ID, TOKEN, Announce(signature=unann.signature), 0.0) is None
    )
    other = keys()  # someone else's signature cannot remove k's record
    forged = Announce(unann.peer, None, signed(other, topic(), unannounce=True).signature)
    assert store.unannounce(topic(), NODE_ID, TOKEN, forged, 0.0) is None
    assert looked_up_keys(store, topic()) == {k.public_key}


# -- refresh --------------------------------------------------------------------------------------


def test_refresh_chain_readds_a_record_without_signature(store: RecordStore) -> None:
    k = keys()
    secret = b"s" * 32
    link = blake2b_256(secret)
    announce(store, topic(), signed(k, topic(), refresh=link))
    assert store.sizes()["refreshes"] == 1
    store.unannounce(
        topic(), NODE_ID, TOKEN, signed(k, topic(), unannounce=True, refresh=link), 0.0
    )
    assert lookup(store, topic()) is None
    # the preimage of the remembered link re-adds the record, with no peer and no signature
    assert announce(store, topic(1), Announce(refresh=secret)) == ACK
    assert looked_up_keys(store, topic()) == {k.public_key}  # under the stored target
    # each link works once: the next one must hash to ``secret``
    assert announce(store, topic(), Announce(refresh=secret)) is None
    assert announce(store, topic(), Announce(refresh=b"\x00" * 32)) is None
    assert store.sizes()["refreshes"] == 1


def test_refresh_of_a_self_announce_moves_the_forward(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    secret = b"t" * 32
    announce(store, target, signed(k, target, refresh=blake2b_256(secret)), source=("1.1.1.1", 1))
    announce(store, target, Announce(refresh=secret), source=("2.2.2.2", 2))
    forward = store.forward(target, 0.0)
    assert forward is not None and forward.relay == ("2.2.2.2", 2)


def test_refresh_still_needs_target_token_and_node_id(store: RecordStore) -> None:
    k = keys()
    secret = b"u" * 32
    announce(store, topic(), signed(k, topic(), refresh=blake2b_256(secret)))
    refresh = Announce(refresh=secret)
    assert store.announce(topic(), NODE_ID, None, SOURCE, refresh, 0.0, unix_ms=NOW_MS) is None
    assert store.announce(topic(), None, TOKEN, SOURCE, refresh, 0.0, unix_ms=NOW_MS) is None


# -- expiry ---------------------------------------------------------------------------------------


def test_records_live_two_thirds_to_four_thirds_of_20_minutes(store: RecordStore) -> None:
    early, late = keys(), keys()
    announce(store, topic(), signed(early, topic()), now=0.0)
    announce(store, topic(), signed(late, topic()), now=ROTATION - 0.001)
    assert looked_up_keys(store, topic(), 2 * ROTATION - 0.001) == {
        early.public_key,
        late.public_key,
    }
    assert lookup(store, topic(), 2 * ROTATION) is None  # both went with the second rotation
    fresh = keys()
    announce(store, topic(), signed(fresh, topic()), now=2 * ROTATION)  # lives 800-1600 s
    assert looked_up_keys(store, topic(), 4 * ROTATION - 0.001) == {fresh.public_key}
    assert lookup(store, topic(), 4 * ROTATION) is None


def test_lookups_do_not_keep_records_alive(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic()))
    for t in range(0, 1600, 100):
        assert looked_up_keys(store, topic(), float(t)) == {k.public_key}
    assert lookup(store, topic(), 1600.0) is None


def test_reads_keep_forwards_alive(store: RecordStore) -> None:
    """xache moves an old entry it reads back to the young generation."""
    read, unread = keys(), keys()
    for k in (read, unread):
        target = blake2b_256(k.public_key)
        announce(store, target, signed(k, target))
    read_target = blake2b_256(read.public_key)
    unread_target = blake2b_256(unread.public_key)
    assert found(store, read_target, ROTATION + 1) is not None  # old: moved to the young one
    assert found(store, unread_target, 2 * ROTATION) is None
    assert found(store, read_target, 3 * ROTATION - 0.001) is not None
    assert found(store, read_target, 4 * ROTATION) is None


def test_lookups_keep_a_bump_alive(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic(), bump=NOW_MS))
    assert bump_of(store, topic(), ROTATION + 1) == NOW_MS  # the read moves the bump
    announce(store, topic(), signed(k, topic()), now=2 * ROTATION + 1)  # a new record, no bump
    # unread since 801 s it would have gone at 2400 s; the announce at 1601 s read it
    assert bump_of(store, topic(), 3 * ROTATION + 1) == NOW_MS
    assert store.sizes()["bumps"] == 1


def test_values_live_two_thirds_to_four_thirds_of_48_hours(store: RecordStore) -> None:
    value = b"immutable"
    target = blake2b_256(value)
    assert store.immutable_put(target, TOKEN, value, 0.0) == Reply()
    k = keys()
    mtarget = blake2b_256(k.public_key)
    store.mutable_put(mtarget, TOKEN, mutable(k, 1, b"m"), 0.0)
    assert store.immutable_get(target, 2 * VALUE_ROTATION - 0.001) == Reply(value)
    assert store.mutable_get(mtarget, 0, 2 * VALUE_ROTATION - 0.001) != Reply()
    # both reads moved the values to the young generation; unread, they would be gone now
    assert store.immutable_get(target, 3 * VALUE_ROTATION - 0.001) == Reply(value)
    assert store.immutable_get(target, 4 * VALUE_ROTATION) == Reply(None)
    assert store.mutable_get(mtarget, 0, 4 * VALUE_ROTATION) == Reply()
    assert VALUE_ROTATION == 115_200.0  # 32 h


def test_unread_values_expire_after_the_second_rotation(store: RecordStore) -> None:
    value = b"v"
    target = blake2b_256(value)
    store.immutable_put(target, TOKEN, value, 10.0)
    store.handle_timer(2 * VALUE_ROTATION - 0.001)
    assert store.sizes()["immutables"] == 1
    store.handle_timer(2 * VALUE_ROTATION)
    assert store.sizes()["immutables"] == 0


def test_a_cache_that_rotated_for_size_skips_its_next_timed_rotation() -> None:
    """record-cache and xache: ``_gcAuto`` does nothing if a rotation happened since the last tick."""
    store = RecordStore(0.0, max_size=4)
    for _ in range(5):  # the fifth record overflows the young generation: rotate at once
        k = keys()
        announce(store, topic(), signed(k, topic()), now=100.0)
    assert store.sizes()["records"] == 5
    store.handle_timer(ROTATION)  # skipped
    assert store.sizes()["records"] == 5
    store.handle_timer(2 * ROTATION - 0.001)
    assert store.sizes()["records"] == 5
    store.handle_timer(2 * ROTATION)  # the next timed rotation drops them
    assert store.sizes()["records"] == 0


def test_a_long_idle_time_empties_everything(store: RecordStore) -> None:
    k = keys()
    announce(store, topic(), signed(k, topic(), bump=NOW_MS))
    store.immutable_put(blake2b_256(b"x"), TOKEN, b"x", 0.0)
    store.handle_timer(10**9)
    assert store.sizes() == dict.fromkeys(store.sizes(), 0)
    assert store.get_timer() > 10**9


def test_timer(store: RecordStore) -> None:
    assert store.get_timer() == ROTATION
    store.handle_timer(ROTATION - 1)
    assert store.get_timer() == ROTATION
    store.handle_timer(ROTATION)
    assert store.get_timer() == 2 * ROTATION
    store.handle_timer(5 * ROTATION + 1)
    assert store.get_timer() == 6 * ROTATION


def test_max_age_applies_to_every_table() -> None:
    store = RecordStore(0.0, max_age=3.0)  # rotation every 2 s
    assert store.get_timer() == 2.0
    store.immutable_put(blake2b_256(b"x"), TOKEN, b"x", 0.0)
    announce(store, topic(), signed(keys(), topic()))
    store.handle_timer(3.999)
    assert store.sizes()["immutables"] == 1 and store.sizes()["records"] == 1
    store.handle_timer(4.0)
    assert store.sizes()["immutables"] == 0 and store.sizes()["records"] == 0


@pytest.mark.parametrize(("max_size", "max_age"), [(1, None), (0, None), (10, 0.0), (10, -1.0)])
def test_impossible_settings(max_size: int, max_age: float | None) -> None:
    with pytest.raises(InvalidSetting):
        RecordStore(0.0, max_size=max_size, max_age=max_age)


# -- mutable values -------------------------------------------------------------------------------


def mutable(key_pair: KeyPair, seq: int, value: bytes) -> MutablePutRequest:
    return MutablePutRequest(key_pair.public_key, seq, value, r.sign_mutable(key_pair, seq, value))


def test_mutable_put_and_get(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    assert store.mutable_get(target, 0, 0.0) == Reply()
    put = mutable(k, 5, b"hello")
    assert store.mutable_put(target, TOKEN, put, 0.0) == Reply()
    expected = r.encode_mutable_get_response(r.MutableGetResponse(5, b"hello", put.signature))
    assert store.mutable_get(target, 0, 0.0) == Reply(expected)
    assert store.mutable_get(target, 5, 0.0) == Reply(expected)
    assert store.mutable_get(target, 6, 0.0) == Reply()  # the asker has newer
    assert store.mutable_put(target, TOKEN, mutable(k, 6, b"newer"), 0.0) == Reply()
    reply = store.mutable_get(target, 0, 0.0)
    assert reply is not None and reply.value is not None
    assert r.decode_mutable_get_response(reply.value).value == b"newer"


def test_mutable_seq_rules(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    store.mutable_put(target, TOKEN, mutable(k, 5, b"a"), 0.0)
    reused = store.mutable_put(target, TOKEN, mutable(k, 5, b"b"), 0.0)
    assert reused == Reply(error=HyperdhtErrorCode.SEQ_REUSED, token=False, closer_nodes=True)
    too_low = store.mutable_put(target, TOKEN, mutable(k, 4, b"a"), 0.0)
    assert too_low == Reply(error=HyperdhtErrorCode.SEQ_TOO_LOW, token=False, closer_nodes=True)
    assert store.mutable_put(target, TOKEN, mutable(k, 5, b"a"), 0.0) == Reply()  # the same again
    reply = store.mutable_get(target, 0, 0.0)
    assert reply is not None and reply.value is not None
    assert r.decode_mutable_get_response(reply.value).value == b"a"


def test_mutable_puts_that_get_no_reply(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    put = mutable(k, 1, b"v")
    assert store.mutable_put(None, TOKEN, put, 0.0) is None
    assert store.mutable_put(target, None, put, 0.0) is None
    assert store.mutable_put(blake2b_256(b"other"), TOKEN, put, 0.0) is None  # not H(key)
    bad = MutablePutRequest(k.public_key, 2, b"v", put.signature)  # signature of seq 1
    assert store.mutable_put(target, TOKEN, bad, 0.0) is None
    other = keys()
    forged = MutablePutRequest(k.public_key, 1, b"v", mutable(other, 1, b"v").signature)
    assert store.mutable_put(target, TOKEN, forged, 0.0) is None
    assert store.sizes()["mutables"] == 0
    assert store.mutable_get(None, 0, 0.0) is None
    assert store.mutable_get(target, None, 0.0) is None


def test_empty_mutable_value(store: RecordStore) -> None:
    k = keys()
    target = blake2b_256(k.public_key)
    assert store.mutable_put(target, TOKEN, mutable(k, 0, b""), 0.0) == Reply()
    reply = store.mutable_get(target, 0, 0.0)
    assert reply is not None and reply.value is not None
    assert r.decode_mutable_get_response(reply.value).value == b""


# -- immutable values -----------------------------------------------------------------------------


def test_immutable_put_and_get(store: RecordStore) -> None:
    value = b"some bytes"
    target = blake2b_256(value)
    assert store.immutable_get(target, 0.0) == Reply(None)
    assert store.immutable_put(target, TOKEN, value, 0.0) == Reply()
    assert store.immutable_get(target, 0.0) == Reply(value)
    assert store.immutable_put(target, TOKEN, value, 0.0) == Reply()  # again: fine


def test_immutable_target_must_be_the_hash_of_the_value(store: RecordStore) -> None:
    value = b"some bytes"
    assert store.immutable_put(blake2b_256(b"other"), TOKEN, value, 0.0) is None
    assert store.immutable_put(None, TOKEN, value, 0.0) is None
    assert store.immutable_put(blake2b_256(value), None, value, 0.0) is None
    assert store.immutable_put(blake2b_256(value), TOKEN, None, 0.0) is None
    assert store.immutable_get(None, 0.0) is None
    assert store.sizes()["immutables"] == 0


def test_empty_immutable_value_is_a_value(store: RecordStore) -> None:
    target = blake2b_256(b"")
    assert store.immutable_put(target, TOKEN, b"", 0.0) == Reply()
    assert store.immutable_get(target, 0.0) == Reply(b"")


def test_queries_without_target_get_no_reply(store: RecordStore) -> None:
    assert store.lookup(None, 0.0) is None
    assert store.find_peer(None, 0.0) is None


# -- bounds ---------------------------------------------------------------------------------------


@pytest.fixture
def unsigned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept every signature, so floods are fast: the bounds do not depend on them."""
    monkeypatch.setattr(store_module, "verify_announce", lambda *args: True)
    monkeypatch.setattr(store_module, "verify_mutable", lambda *args: True)


def fake_keys(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield blake2b_256(i.to_bytes(8, "little"))


SIG = b"\x00" * 64


def flood(store: RecordStore, count: int, now: float, one_target: bool = False) -> None:
    for i, key in enumerate(fake_keys(count)):
        target = topic() if one_target else blake2b_256(b"t" + key)
        peer = PeerRecord(key, relays(5))
        store.announce(
            target,
            NODE_ID,
            TOKEN,
            SOURCE,
            Announce(peer, key, SIG, NOW_MS + i),
            now,
            unix_ms=NOW_MS + i,
        )
        if i % 2:
            self_target = blake2b_256(key)
            store.announce(
                self_target, NODE_ID, TOKEN, SOURCE, Announce(peer, None, SIG), now, unix_ms=NOW_MS
            )
        value = key[:8]
        store.immutable_put(blake2b_256(value), TOKEN, value, now)
        store.mutable_put(blake2b_256(key), TOKEN, MutablePutRequest(key, 1, value, SIG), now)


def assert_within_bounds(store: RecordStore, max_size: int) -> None:
    sizes = store.sizes()
    assert sizes["records"] <= 2 * max_size + 1
    assert sizes["targets"] <= sizes["records"]
    for table in ("forwards", "bumps", "refreshes"):
        assert sizes[table] <= 2 * max_size - 1, (table, sizes)
    for table in ("mutables", "immutables"):
        assert sizes[table] <= 2 * (max_size // 2) - 1, (table, sizes)


@pytest.mark.usefixtures("unsigned")
def test_a_flood_of_announces_and_puts_stays_within_the_bounds() -> None:
    store = RecordStore(0.0, max_size=64)
    for step in range(10):
        flood(store, 150, now=float(step))
        assert_within_bounds(store, 64)
    sizes = store.sizes()
    assert sizes["records"] > 64 and sizes["forwards"] > 32 and sizes["immutables"] > 16


@pytest.mark.usefixtures("unsigned")
def test_one_target_holds_at_most_the_cache_bound_and_replies_20() -> None:
    store = RecordStore(0.0, max_size=64)
    flood(store, 500, now=0.0, one_target=True)
    assert_within_bounds(store, 64)
    assert 64 < store.sizes()["records"] <= 129
    reply = lookup(store, topic())
    assert reply is not None and len(reply.peers) == 20


@pytest.mark.usefixtures("unsigned")
def test_the_default_bounds_hold_under_a_flood() -> None:
    store = RecordStore(0.0)
    flood(store, 70_000, now=1.0)
    assert_within_bounds(store, 65536)
    sizes = store.sizes()
    assert sizes["records"] > 65536 and sizes["mutables"] > 32768


def test_reading_old_entries_cannot_grow_a_table_past_its_bound() -> None:
    """xache alone would let reads move old entries into a full young generation unchecked."""
    store = RecordStore(0.0, max_size=8)  # 4 per value table
    values = [b"%d" % i for i in range(40)]
    for i, value in enumerate(values):
        store.immutable_put(blake2b_256(value), TOKEN, value, 0.0)
        for old in values[: i + 1]:  # read everything, again and again
            store.immutable_get(blake2b_256(old), 0.0)
        assert store.sizes()["immutables"] <= 2 * 4 - 1
