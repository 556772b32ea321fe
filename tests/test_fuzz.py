"""Property tests: every sans-I/O decoder and state machine, fed hostile bytes.

The only outcomes allowed are a valid parse or a ProtocolError (which ends
that one connection): never another exception, a hang, or unbounded growth.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peersockets.errors import ProtocolError
from peersockets.wire import encoding as enc
from peersockets.wire import hypercore as hc
from peersockets.wire.crypto import KeyPair
from peersockets.wire.protomux import Channel, Mux
from peersockets.wire.secretstream import SecretStream

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECODERS = [
    enc.decode_uint,
    enc.decode_buffer,
    enc.decode_optional_buffer,
    enc.decode_string,
    enc.decode_fixed32,
    enc.decode_bool,
    enc.decode_uint32array,
]


class Sink:
    """A channel handler and hypercore listener that accepts everything."""

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        pass

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        bytes(payload)

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        pass

    def peer_opened(self, channel: Any) -> None:
        pass

    def peer_extension(self, channel: Any, name: str, message: bytes) -> None:
        pass

    def peer_closed(self, channel: Any, by_remote: bool) -> None:
        pass


@FUZZ
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=70))
def test_compact_decoders_parse_or_raise_protocol_error(data: bytes, pos: int) -> None:
    for decode in DECODERS:
        try:
            _value, end = decode(data, pos)  # type: ignore[operator]
        except ProtocolError:
            continue
        assert pos <= end <= len(data)


@FUZZ
@given(st.binary(max_size=200))
def test_hypercore_message_decoders(data: bytes) -> None:
    for decode in (hc.Sync.decode, hc.decode_handshake, hc.decode_request_id):
        with contextlib.suppress(ProtocolError):
            decode(data)
    with contextlib.suppress(ProtocolError):
        hc.decode_extension(data, "previous")


def _pair_streams() -> tuple[SecretStream, SecretStream]:
    a = SecretStream(True, KeyPair.generate())
    b = SecretStream(False, KeyPair.generate())
    for _ in range(3):
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
    assert a.handshake_complete and b.handshake_complete
    return a, b


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=6), st.booleans())
def test_secret_stream_handshake_garbage(chunks: list[bytes], initiator: bool) -> None:
    stream = SecretStream(initiator, KeyPair.generate(), max_frame_size=4096)
    try:
        for chunk in chunks:
            stream.receive_data(chunk)
    except ProtocolError:
        return
    assert len(stream._incoming) <= 4096 + 3  # never more than one frame buffered


@FUZZ
@given(st.data())
def test_secret_stream_mutated_transport_frames(data: st.DataObject) -> None:
    a, b = _pair_streams()
    frames = b"".join(a.encrypt(bytes([i]) * i) for i in range(1, 6))
    position = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    mutated = bytearray(frames)
    mutated[position] ^= flip
    try:
        got = b.receive_data(bytes(mutated))
    except ProtocolError:
        return
    # A flipped length byte can make the frames incomplete: that only waits for more bytes.
    assert all(m == bytes([len(m)]) * len(m) for m in got)


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=12))
def test_mux_random_frames(frames: list[bytes]) -> None:
    mux = Mux(max_channels=16)
    mux.open("test/a", None, b"", Sink())
    for frame in frames:
        try:
            mux.receive_frame(frame)
        except ProtocolError:
            return
        mux.take_frames()
    assert len(mux._remote) <= 17


def _hypercore_trace() -> list[bytes]:
    """Frames a peer sends on a real hypercore/alpha conversation: open, sync, extensions."""
    key = bytes(range(32))
    a_mux, b_mux = Mux(), Mux()
    a = hc.HypercoreChannel(a_mux, key, bytes(64), True, Sink())
    hc.HypercoreChannel(b_mux, key, bytes(64), False, Sink())
    trace = []
    for frame in a_mux.take_frames():
        trace.append(frame)
        b_mux.receive_frame(frame)
    for frame in b_mux.take_frames():
        a_mux.receive_frame(frame)
    a.send_extension("peersockets/chat", b"hello")
    a.send_extension("peersockets/chat", b"again")
    trace += a_mux.take_frames()
    a_mux.send(a.mux_channel, hc.MessageType.REQUEST, bytes.fromhex("0101000002"))
    trace += a_mux.take_frames()
    a.close()
    trace += a_mux.take_frames()
    return trace


TRACE = _hypercore_trace()


@FUZZ
@given(st.data())
def test_mux_mutated_hypercore_trace(data: st.DataObject) -> None:
    frames = [bytearray(f) for f in TRACE]
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
        frame = frames[index]
        action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
        if action == "flip" and frame:
            pos = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
            frame[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "truncate":
            del frame[data.draw(st.integers(min_value=0, max_value=len(frame))) :]
        else:
            frame += data.draw(st.binary(min_size=1, max_size=8))
    b_mux = Mux()
    hc.HypercoreChannel(b_mux, bytes(range(32)), bytes(64), False, Sink())
    try:
        for frame in frames:
            b_mux.receive_frame(bytes(frame))
            b_mux.take_frames()
    except ProtocolError:
        pass
