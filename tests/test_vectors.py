"""Known-answer tests: our wire codec against vectors produced by the real npm packages.

The vectors come from tests/interop/js/vectors.mjs (see tests/vectors/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import pytest
from hostile import control_messages

from peersockets.errors import ChannelError
from peersockets.wire import encoding as enc
from peersockets.wire import hypercore as hc
from peersockets.wire.crypto import (
    KeyPair,
    capability,
    discovery_key,
    namespace,
    stream_id,
)
from peersockets.wire.noise import NoiseXX, dh
from peersockets.wire.protomux import Channel, Mux
from peersockets.wire.secretstream import SecretStream

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "wire.json").read_text(encoding="utf-8")
)
H = bytes.fromhex


class Recorder:
    """A channel handler that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        self.events.append(("open", channel.protocol, handshake))

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        self.events.append(("message", channel.protocol, message_type, bytes(payload)))

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        self.events.append(("close", channel.protocol, by_remote, channel.rejected))


# -- compact-encoding -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "hex_"), VECTORS["encoding"]["uint"])
def test_uint(value: int, hex_: str) -> None:
    assert enc.encode_uint(value).hex() == hex_
    assert enc.decode_uint(H(hex_), 0) == (value, len(H(hex_)))


@pytest.mark.parametrize(("value", "hex_"), VECTORS["encoding"]["string"])
def test_string(value: str, hex_: str) -> None:
    assert enc.encode_string(value).hex() == hex_
    assert enc.decode_string(H(hex_), 0) == (value, len(H(hex_)))


@pytest.mark.parametrize(("raw", "decoded"), VECTORS["encoding"]["string_invalid_utf8"])
def test_string_that_is_not_utf8_decodes_as_javascript_does(raw: str, decoded: str) -> None:
    encoded = enc.encode_buffer(H(raw))
    assert enc.decode_string(encoded, 0) == (decoded, len(encoded))


@pytest.mark.parametrize(("value", "hex_"), VECTORS["encoding"]["buffer"])
def test_buffer(value: str | None, hex_: str) -> None:
    if value is None:
        assert enc.encode_optional_buffer(None).hex() == hex_
        return
    assert enc.encode_buffer(H(value)).hex() == hex_
    assert enc.decode_buffer(H(hex_), 0) == (H(value), len(H(hex_)))


@pytest.mark.parametrize(("value", "hex_"), VECTORS["encoding"]["optional_buffer"])
def test_optional_buffer(value: str | None, hex_: str) -> None:
    raw = None if value is None else H(value)
    assert enc.encode_optional_buffer(raw).hex() == hex_
    decoded, _ = enc.decode_optional_buffer(H(hex_), 0)
    assert decoded == (raw or None)


def test_fixed32_bool_uint32array() -> None:
    for value, hex_ in VECTORS["encoding"]["fixed32"]:
        assert enc.decode_fixed32(H(hex_), 0) == (H(value), 32)
    for value, hex_ in VECTORS["encoding"]["bool"]:
        assert enc.encode_bool(value).hex() == hex_
        assert enc.decode_bool(H(hex_), 0) == (value, 1)
    for value, hex_ in VECTORS["encoding"]["uint32array"]:
        assert enc.encode_uint32array(value).hex() == hex_
        assert enc.decode_uint32array(H(hex_), 0) == (value, len(H(hex_)))


# -- crypto -------------------------------------------------------------------------------


def test_namespaces() -> None:
    ns = VECTORS["namespaces"]
    assert [x.hex() for x in namespace("hyperswarm/secret-stream", 3)] == ns[
        "hyperswarm/secret-stream"
    ]
    assert [x.hex() for x in namespace("hypercore", 6)] == ns["hypercore"]


@pytest.mark.parametrize("case", VECTORS["keypairs"])
def test_keypair_from_seed(case: dict[str, str]) -> None:
    kp = KeyPair.from_seed(H(case["seed"]))
    assert kp.public_key.hex() == case["public_key"]
    assert kp.secret_key.hex() == case["secret_key"]


@pytest.mark.parametrize("case", VECTORS["dh"])
def test_dh(case: dict[str, str]) -> None:
    secret = H(case["secret_key"])
    kp = KeyPair(secret[32:], secret)
    assert dh(kp, H(case["remote_public_key"])).hex() == case["shared"]


@pytest.mark.parametrize("case", VECTORS["discovery_keys"])
def test_discovery_key(case: dict[str, str]) -> None:
    assert discovery_key(H(case["key"])).hex() == case["discovery_key"]


# -- Noise XX and secret-stream -------------------------------------------------------------


def _keys(case: dict[str, Any], role: str) -> tuple[KeyPair, KeyPair]:
    static = KeyPair.from_seed(H(case[f"{role}_static_seed"]))
    ephemeral = KeyPair.from_seed(H(case[f"{role}_ephemeral_seed"]))
    assert static.public_key.hex() == case[f"{role}_static_public_key"]
    assert ephemeral.public_key.hex() == case[f"{role}_ephemeral_public_key"]
    return static, ephemeral


@pytest.mark.parametrize("case", VECTORS["handshakes"], ids=lambda c: c["name"])
def test_noise_handshake(case: dict[str, Any]) -> None:
    initiator = NoiseXX(True, *_keys(case, "initiator"))
    responder = NoiseXX(False, *_keys(case, "responder"))
    m1, m2, m3 = (H(m) for m in case["messages"])
    assert initiator.write_message() == m1
    responder.read_message(m1)
    assert responder.write_message() == m2
    initiator.read_message(m2)
    assert initiator.write_message() == m3
    responder.read_message(m3)
    for side in (initiator, responder):
        assert side.complete
        assert side.handshake_hash.hex() == case["handshake_hash"]
    assert initiator.tx.hex() == case["initiator_tx"]
    assert initiator.rx.hex() == case["initiator_rx"]
    assert responder.tx.hex() == case["responder_tx"]
    assert responder.rx.hex() == case["responder_rx"]
    assert initiator.remote_public_key.hex() == case["responder_static_public_key"]
    assert responder.remote_public_key.hex() == case["initiator_static_public_key"]
    hh = H(case["handshake_hash"])
    assert stream_id(hh, True).hex() == case["initiator_stream_id"]
    assert stream_id(hh, False).hex() == case["responder_stream_id"]
    for cap in case["capabilities"]:
        assert capability(True, H(cap["key"]), hh).hex() == cap["initiator"]
        assert capability(False, H(cap["key"]), hh).hex() == cap["responder"]


@pytest.mark.parametrize("case", VECTORS["handshakes"], ids=lambda c: c["name"])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_secret_stream_against_javascript_bytes(case: dict[str, Any], role: str) -> None:
    """Our stream, fed what the JavaScript peer wrote, writes the same bytes and decrypts its frames."""
    recorded = case["secret_stream"]
    other = "responder" if role == "initiator" else "initiator"
    static, ephemeral = _keys(case, role)
    ours = SecretStream(role == "initiator", static, ephemeral=ephemeral)
    theirs_raw = H(recorded[f"raw_{other}_to_{role}"])
    expected_raw = H(recorded[f"raw_{role}_to_{other}"])
    written = ours.data_to_send()
    received: list[bytes] = []
    for i in range(0, len(theirs_raw), 7):  # in awkward pieces, to exercise reassembly
        received += ours.receive_data(theirs_raw[i : i + 7])
        written += ours.data_to_send()
    assert received == []
    assert ours.handshake_complete
    assert ours.remote_public_key.hex() == case[f"{other}_static_public_key"]
    # Everything but the random secretstream header (the last 24 bytes) is byte-identical.
    assert written[:-24] == expected_raw[:-24]
    assert len(written) == len(expected_raw)
    frames = b"".join(H(f) for f in recorded["after_setup"][f"{other}_frames"])
    plaintexts = [H(p) for p in recorded["after_setup"][f"{other}_plaintexts"]]
    assert ours.receive_data(frames) == plaintexts


def test_secretstream_transport_frames() -> None:
    vec = VECTORS["secretstream_transport"]
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, H(vec["header"]), H(vec["key"]))
    for message in vec["messages"]:
        frame = H(message["frame"])
        assert int.from_bytes(frame[:3], "little") == len(frame) - 3
        plaintext, _tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, frame[3:])
        assert plaintext.hex() == message["plaintext"]


# -- protomux -------------------------------------------------------------------------------


def _case(name: str) -> dict[str, Any]:
    return next(c for c in VECTORS["protomux"] if c["name"] == name)


def _payload(send: dict[str, Any]) -> bytes:
    if "text" in send:
        return enc.encode_string(send["text"])
    return enc.encode_buffer(H(send["data"]))


@pytest.mark.parametrize("name", ["open", "open_null_id"])
def test_protomux_open(name: str) -> None:
    case = _case(name)
    inputs = case["inputs"]
    mux = Mux()
    ident = H(inputs["id"]) if inputs["id"] else None
    recorder = Recorder()
    channel = mux.open(inputs["protocol"], ident, H(inputs["handshake"]), recorder)
    assert channel.local_id == inputs["local_channel_id"]
    assert [f.hex() for f in mux.take_frames()] == case["frames"]
    for frame in case["remote_frames"]:
        mux.receive_frame(H(frame))
    assert channel.opened
    assert recorder.events == [("open", inputs["protocol"], b"")]


def _open_pair(mux: Mux, setup: list[list[str]], recorder: Recorder) -> dict[int, Channel]:
    """Replay setup frames: our opens must match side a's, then side b's opens arrive."""
    channels: dict[int, Channel] = {}
    for side, frame_hex in setup:
        frame = H(frame_hex)
        if side == "a":
            _, pos = enc.decode_uint(frame, 2)
            protocol, pos = enc.decode_string(frame, pos)
            ident, pos = enc.decode_optional_buffer(frame, pos)
            channel = mux.open(protocol, ident, frame[pos:], recorder)
            channels[channel.local_id] = channel
            assert [f.hex() for f in mux.take_frames()] == [frame_hex]
        else:
            mux.receive_frame(frame)
    assert all(c.opened for c in channels.values())
    return channels


def test_protomux_messages() -> None:
    case = _case("messages")
    mux = Mux()
    channels = _open_pair(mux, case["setup_frames"], Recorder())
    channel = channels[1]
    frames = []
    for send in case["inputs"]["sends"]:
        channel.send(send["type"], _payload(send))
        frames += mux.take_frames()
    assert [f.hex() for f in frames] == case["frames"]


def test_protomux_messages_decode() -> None:
    case = _case("messages")
    mux = Mux()
    recorder = Recorder()
    _open_pair(mux, case["setup_frames"], recorder)
    for frame in case["frames"]:
        mux.receive_frame(H(frame))
    got = [e[2:] for e in recorder.events if e[0] == "message"]
    assert got == [(s["type"], _payload(s)) for s in case["inputs"]["sends"]]


def test_protomux_batch_encode_and_decode() -> None:
    case = _case("batch")
    mux = Mux()
    recorder = Recorder()
    channels = _open_pair(mux, case["setup_frames"], recorder)
    for send in case["inputs"]["sends"]:
        channels[send["channel"]].send(send["type"], _payload(send))
    assert [f.hex() for f in mux.take_frames()] == case["frames"]
    mux.receive_frame(H(case["frames"][0]))
    got = [(e[1], e[2], e[3]) for e in recorder.events if e[0] == "message"]
    protocols = {1: "test/one", 2: "test/two"}
    assert got == [
        (protocols[s["channel"]], s["type"], _payload(s)) for s in case["inputs"]["sends"]
    ]


def test_protomux_batch_with_control_item() -> None:
    case = _case("batch_with_control")
    mux = Mux()
    recorder = Recorder()
    channels = _open_pair(mux, case["setup_frames"], recorder)
    for send in case["inputs"]["sends"]:
        if send["channel"] == 0:
            new = mux.open(send["protocol"], H(send["id"]), H(send["handshake"]), recorder)
            assert new.local_id == send["local_channel_id"]
            channels[new.local_id] = new
        else:
            channels[send["channel"]].send(send["type"], _payload(send))
    assert [f.hex() for f in mux.take_frames()] == case["frames"]


def test_protomux_close_and_reject() -> None:
    case = _case("close")
    mux = Mux()
    recorder = Recorder()
    channels = _open_pair(mux, case["setup_frames"], recorder)
    channels[1].close()
    assert [f.hex() for f in mux.take_frames()] == case["frames"]
    assert recorder.events[-1] == ("close", "test/close", False, False)

    case = _case("reject")
    mux = Mux()
    recorder = Recorder()
    inputs = case["inputs"]
    channel = mux.open(inputs["protocol"], H(inputs["id"]), H("abcd"), recorder)
    assert [f.hex() for f in mux.take_frames()] == case["opener_frames"]
    for frame in case["frames"]:
        mux.receive_frame(H(frame))
    assert channel.closed and channel.rejected
    assert recorder.events == [("close", inputs["protocol"], True, True)]


def test_protomux_rejects_unpaired_remote_open() -> None:
    case = _case("reject")
    mux = Mux()
    mux.receive_frame(H(case["opener_frames"][0]))
    assert [f.hex() for f in mux.take_frames()] == case["frames"]


def test_protomux_remote_close_frees_channel() -> None:
    case = _case("close")
    mux = Mux()
    recorder = Recorder()
    channels = _open_pair(mux, case["setup_frames"], recorder)
    mux.receive_frame(H(case["frames"][0]))  # the remote closes its channel 1
    assert channels[1].closed
    assert recorder.events[-1] == ("close", "test/close", True, False)
    assert mux.take_frames() == []  # protomux sends no close back
    again = mux.open("test/again", None, b"", recorder)
    assert again.local_id == 1  # the id is reused


def _remote_open(remote_id: int, protocol: str) -> bytes:
    return b"\x00\x01" + enc.encode_uint(remote_id) + enc.encode_string(protocol) + b"\x00"


def test_protomux_opens_past_max_channels_are_rejected_without_state() -> None:
    """The limit counts live channels: opens past it are answered with a reject, kept nowhere."""
    recorder = Recorder()
    mux = Mux(max_channels=4)
    mux.pair("core", None, lambda protocol, id: mux.open(protocol, id, b"", recorder) and None)
    for remote_id in range(1, 1101):  # a corestore with 1,100 cores opens them all at once
        mux.receive_frame(_remote_open(remote_id, "core"))
    assert len(mux._remote) == 4
    rejects = [c for c in control_messages(mux.take_frames()) if c[1] == 2]
    assert rejects == [b"\x00\x02" + enc.encode_uint(i) for i in range(5, 1101)]
    # a live channel closes: its slot is free for the next open, which may reuse a rejected id
    mux.receive_frame(b"\x00\x03\x02")
    mux.receive_frame(_remote_open(7, "core"))
    assert len(mux._remote) == 4 and 7 in mux._remote
    assert not [c for c in control_messages(mux.take_frames()) if c[1] == 2]


def test_protomux_open_id_may_not_skip_ahead_or_reuse_a_live_id() -> None:
    mux = Mux()
    mux.open("live", None, b"", Recorder())
    mux.receive_frame(_remote_open(1, "live"))
    with pytest.raises(ChannelError, match="already open"):
        mux.receive_frame(_remote_open(1, "live"))
    with pytest.raises(ChannelError, match="skips ahead"):
        mux.receive_frame(_remote_open(3, "other"))


def test_protomux_pairing_registry() -> None:
    """pair(protocol, id, callback): the exact id is asked first, then the protocol's None;
    the first callback that opens the channel claims it; unclaimed opens are rejected."""
    recorder = Recorder()
    mux = Mux()
    asked: list[str] = []

    def decline(protocol: str, id: bytes | None) -> None:
        asked.append("decline")

    def claim(protocol: str, id: bytes | None) -> None:
        asked.append("claim")
        mux.open(protocol, id, b"", recorder)

    mux.pair("p", b"\x01" * 32, decline)
    mux.pair("p", None, claim)
    mux.receive_frame(b"\x00\x01\x01\x01p\x20" + b"\x01" * 32)
    assert asked == ["decline", "claim"] and 1 in mux._remote
    mux.unpair("p", None, claim)
    mux.receive_frame(b"\x00\x01\x02\x01p\x20" + b"\x01" * 32)
    assert asked[-1] == "decline" and 2 not in mux._remote
    assert _reject(2) in control_messages(mux.take_frames())


def _reject(remote_id: int) -> bytes:
    return b"\x00\x02" + enc.encode_uint(remote_id)


def test_protomux_open_for_a_channel_we_closed_is_answered_with_close() -> None:
    """We closed before the remote's open came: our first close may have been ignored by a
    JavaScript peer still pairing, so the answer is a close again, and only then is the id
    free (no ghost channel on the remote, and no reuse of an id it still holds)."""
    recorder = Recorder()
    mux = Mux()
    channel = mux.open("gone", None, b"", recorder)
    channel.close()
    assert control_messages(mux.take_frames()) == [
        b"\x00\x01\x01\x04gone\x00",
        b"\x00\x03\x01",
    ]
    assert mux.open("other", None, b"", recorder).local_id == 2  # 1 is not free yet
    mux.receive_frame(_remote_open(1, "gone"))
    assert control_messages(mux.take_frames())[-1] == b"\x00\x03\x01"
    assert mux.open("third", None, b"", recorder).local_id == 1  # now it is
    assert not mux._remote


# -- hypercore/alpha ------------------------------------------------------------------------


def test_hypercore_message_types() -> None:
    names = [m.name.replace("_", "").lower() for m in hc.MessageType]
    assert names == [n.lower() for n in VECTORS["hypercore"]["message_types"]]


def test_hypercore_handshake() -> None:
    for case in VECTORS["hypercore"]["handshake"]:
        assert hc.encode_handshake(H(case["capability"]), case["seeks"]).hex() == case["hex"]
        assert hc.decode_handshake(H(case["hex"])) == (case["seeks"], H(case["capability"]))


def _sync(fields: dict[str, Any]) -> hc.Sync:
    return hc.Sync(
        fork=fields["fork"],
        length=fields["length"],
        remote_length=fields["remoteLength"],
        can_upgrade=fields["canUpgrade"],
        uploading=fields["uploading"],
        downloading=fields["downloading"],
        has_manifest=fields["hasManifest"],
        allow_push=fields["allowPush"],
    )


def test_hypercore_sync() -> None:
    for case in VECTORS["hypercore"]["sync"]:
        sync = _sync(case["fields"])
        assert sync.encode().hex() == case["hex"]
        assert hc.Sync.decode(H(case["hex"])) == sync


def test_hypercore_request_and_no_data() -> None:
    for case in VECTORS["hypercore"]["request"]:
        assert hc.decode_request_id(H(case["hex"])) == case["fields"]["id"]
    for case in VECTORS["hypercore"]["no_data"]:
        fields = case["fields"]
        assert hc.encode_no_data(fields["request"], fields["reason"]).hex() == case["hex"]


def test_hypercore_extension() -> None:
    previous = ""
    for case in VECTORS["hypercore"]["extension"]:
        assert b"".join(hc.encode_extension(case["name"], H(case["message"]))).hex() == case["hex"]
        name, message = hc.decode_extension(H(case["hex"]), previous)
        assert name == (case["name"] or previous)
        assert message == H(case["message"])
        previous = name


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def peer_opened(self, channel: hc.HypercoreChannel) -> None:
        self.events.append(("open",))

    def peer_extension(self, channel: hc.HypercoreChannel, name: str, message: bytes) -> None:
        self.events.append(("extension", name, message))

    def peer_closed(self, channel: hc.HypercoreChannel, by_remote: bool) -> None:
        self.events.append(("close", by_remote))


def test_hypercore_channel_frames() -> None:
    vec = VECTORS["hypercore"]
    open_case = vec["channel_open_frame"]
    key = H(open_case["key"])
    assert discovery_key(key).hex() == open_case["discovery_key"]
    handshake = hc.encode_handshake(H(open_case["handshake"]["capability"]))
    mux = Mux()
    channel = mux.open(hc.PROTOCOL, discovery_key(key), handshake, Recorder())
    assert channel.local_id == open_case["local_channel_id"]
    assert [f.hex() for f in mux.take_frames()] == [open_case["hex"]]
    frames = vec["channel_message_frames"]
    ext = frames["extension"]
    channel.send(
        hc.MessageType.EXTENSION, b"".join(hc.encode_extension(ext["name"], H(ext["message"])))
    )
    assert [f.hex() for f in mux.take_frames()] == [ext["hex"]]


def test_hypercore_channel_capability_and_compression() -> None:
    """Two of our channels over two muxes: capability checked, sync sent, names compressed."""
    key = bytes(range(32))
    hh = bytes(64)
    a_mux, b_mux = Mux(), Mux()
    a_listener, b_listener = Listener(), Listener()
    a = hc.HypercoreChannel(a_mux, key, hh, True, a_listener)
    hc.HypercoreChannel(b_mux, key, hh, False, b_listener)
    for _ in range(3):
        for frame in a_mux.take_frames():
            b_mux.receive_frame(frame)
        for frame in b_mux.take_frames():
            a_mux.receive_frame(frame)
    assert a_listener.events == [("open",)] and b_listener.events == [("open",)]
    a.send_extension("peersockets/chat", b"one")
    a.send_extension("peersockets/chat", b"two")
    a.send_extension("peersockets/other", b"")
    frames = a_mux.take_frames()
    assert len(frames) == 1 and frames[0][:2] == b"\x00\x00"  # one batch
    assert b"peersockets/chat" in frames[0] and frames[0].count(b"peersockets/chat") == 1
    b_mux.receive_frame(frames[0])
    assert b_listener.events[1:] == [
        ("extension", "peersockets/chat", b"one"),
        ("extension", "peersockets/chat", b"two"),
        ("extension", "peersockets/other", b""),
    ]


def _paired_hypercore() -> tuple[Mux, Mux, Listener]:
    """Two hypercore channels on two muxes, open both ways; returns (a's mux, b's mux, b's)."""
    a_mux, b_mux = Mux(), Mux()
    b_listener = Listener()
    hc.HypercoreChannel(a_mux, bytes(32), bytes(64), True, Listener())
    hc.HypercoreChannel(b_mux, bytes(32), bytes(64), False, b_listener)
    for _ in range(2):
        for frame in a_mux.take_frames():
            b_mux.receive_frame(frame)
        for frame in b_mux.take_frames():
            a_mux.receive_frame(frame)
    return a_mux, b_mux, b_listener


def test_hypercore_request_is_answered_with_no_data_not_available() -> None:
    """As hypercore answers a block it does not have: noData with reason NOT_AVAILABLE."""
    _, b_mux, _ = _paired_hypercore()
    request = H(VECTORS["hypercore"]["request"][0]["hex"])
    request_id = VECTORS["hypercore"]["request"][0]["fields"]["id"]
    b_mux.receive_frame(b"\x01\x01" + request)  # a's channel is b's remote id 1
    (frame,) = b_mux.take_frames()
    no_data = next(c for c in VECTORS["hypercore"]["no_data"] if c["fields"]["reason"] == 1)
    assert frame == b"\x01\x04" + hc.encode_no_data(request_id, hc.NOT_AVAILABLE)
    assert hc.encode_no_data(7, hc.NOT_AVAILABLE).hex() == no_data["hex"]


def test_hypercore_extension_name_not_utf8_is_decoded_not_fatal() -> None:
    """A name with invalid UTF-8 is decoded with U+FFFD, as JavaScript does, and the channel
    carries on (names are compared after decoding, so it matches what JavaScript matches)."""
    _, b_mux, b_listener = _paired_hypercore()
    b_mux.receive_frame(b"\x01\x09" + enc.encode_buffer(b"peersockets/\xff") + b"odd")
    b_mux.receive_frame(b"\x01\x09\x00again")  # the repeated name
    b_mux.receive_frame(b"\x01\x09" + enc.encode_string("peersockets/chat") + b"fine")
    assert b_listener.events[1:] == [
        ("extension", "peersockets/\ufffd", b"odd"),
        ("extension", "peersockets/\ufffd", b"again"),
        ("extension", "peersockets/chat", b"fine"),
    ]


def test_hypercore_channel_bad_capability_is_protocol_error() -> None:
    from peersockets.errors import CapabilityError

    a_mux, b_mux = Mux(), Mux()
    hc.HypercoreChannel(a_mux, bytes(32), bytes(64), True, Listener())
    hc.HypercoreChannel(b_mux, bytes(32), bytes([1]) * 64, False, Listener())
    with pytest.raises(CapabilityError, match="invalid replication capability"):
        b_mux.receive_frame(a_mux.take_frames()[0])  # b pairs, then checks a's capability


def test_protomux_write_lone_takes_the_same_frames_and_only_lone_ones() -> None:
    """An owner's write_lone is offered exactly the frames take_frames would give, only for
    a message sent with nothing queued and the mux uncorked; False queues it as usual."""
    case = _case("messages")
    mux = Mux()
    channel = _open_pair(mux, case["setup_frames"], Recorder())[1]
    offered: list[bytes] = []
    mux.write_lone = lambda frame: offered.append(frame) is None
    for send in case["inputs"]["sends"]:
        channel.send(send["type"], _payload(send))
        assert mux.take_frames() == []  # written by the owner: nothing left queued
    assert [f.hex() for f in offered] == case["frames"]
    offered.clear()
    mux.cork()
    channel.send(1, b"a")
    channel.send(1, b"b")
    mux.uncork()
    assert offered == [] and len(mux.take_frames()) == 1  # corked: one batch, not offered
    mux.cork()
    channel.send(1, b"alone")
    assert offered == []
    mux.uncork()  # the last cork undone with one message queued: offered then
    assert len(offered) == 1 and offered[0].endswith(b"alone") and mux.take_frames() == []
    offered.clear()
    mux.write_lone = lambda frame: offered.append(frame) is not None  # declines
    channel.send(1, b"c")
    assert len(offered) == 1 and mux.take_frames() == [offered[0]]  # queued as it was
