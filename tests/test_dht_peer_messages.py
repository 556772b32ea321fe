"""hyperdht's connect messages and the IK handshake, against known answers.

The IK vector, the handshake datagrams and the holepunch plaintexts are the
ones captured from hyperdht 6.34.0 on a loopback testnet and checked in
/work/shared/dht/HYPERDHT.md sections 7.4 and 7.5 (throw-away test keys).
"""

from __future__ import annotations

import asyncio

import pytest

from peersockets.connection import Connection
from peersockets.dht.messages import Request, decode
from peersockets.dht.peer_messages import (
    Firewall,
    HandshakeMessage,
    HolepunchInfo,
    HolepunchMessage,
    HolepunchPayload,
    Mode,
    NoisePayload,
    PayloadError,
    RelayInfo,
    RelayThrough,
    SecurePayload,
    UdxInfo,
    holepunch_secret,
    ik_initiator,
    ik_responder,
)
from peersockets.errors import DecodeError, HandshakeError, InvalidSetting
from peersockets.pipe import create_pipe
from peersockets.wire.crypto import KeyPair, stream_id
from peersockets.wire.noise import HandshakeResult
from peersockets.wire.secretstream import SecretStream

SERVER = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
CLIENT_EPHEMERAL = KeyPair.from_seed(
    bytes.fromhex("2f56e93ffda19251ed851a18416559f26bb425e9350ac237ce397fde34779284")
)
SERVER_EPHEMERAL = KeyPair.from_seed(
    bytes.fromhex("9fc303934d7caf02856a775459ec2b101c806619712488abf163dbbe059933f5")
)
PAYLOAD_1 = bytes.fromhex("011800000100fefecbd4ef0001")
PAYLOAD_2 = bytes.fromhex(
    "0159000000037f0000014ac27f000001fa957f0000014cc27f000001fa957f0000014bc27f000001fa95"
    "0100fe8fa486e50001037f0000014ac27f0000014cc27f0000014bc2"
)
MESSAGE_1 = bytes.fromhex(
    "3719edd601696504f4d45ca1949ef65e81b80ca0eafdde4f4e85214e3e6da5db3822b0a7f8acdfda428f81b3825bb8e1"
    "ddb93b1b4741185193a6ad73ca0cf08be567b02d3a45e6507f400f04872ca3992e4724f7cd506955da196e0fab0c0c2883"
    "06b24d1f35815b1f6b19afe2"
)
MESSAGE_2 = bytes.fromhex(
    "5941bb0c65a82f271b64076c5af29da0abd62b8c081493e9eb0dfcb21d3206a119dfe641a577e97c725ff0e7262c0a30"
    "86698c05e602226c659e8b952826a391b1f1cb48ce01151ef9ada3a8d3ad1bccd78d139a2cc3d64ab9032b2a69e9d1483"
    "2d55f97485cb8c7ad88d38b87344d71bfe3fdcdec7e"
)
HANDSHAKE_HASH = bytes.fromhex(
    "eab6490e93bfafafebeb33dceec50ae2e3e705535dc8d9b261bce8afe7a39c78"
    "ab1b742967b8735a7c247cd5dc277819a79cc79ecca6c0d3415f0b1f9c4c5264"
)
CLIENT_TX = bytes.fromhex("7bccce6f836bc0b7f6b47afa78aa951deb89ace8d95865f0c0b6da9909268670")
CLIENT_RX = bytes.fromhex("ae5d47627cebbf43faf3d185aa997585c495b3e6293a6967c7eccb97d0cfc09a")
HOLEPUNCH_SECRET = bytes.fromhex("43ad94843fb08ffb8ca5ad084bee608d0071d237cab271f35fc892c692b8c82d")
INITIATOR_ID = bytes.fromhex("28842d794a8c8d4e7f75f77c8e82608e3c69004fcf7cadd65c7251f0509a3b8a")
RESPONDER_ID = bytes.fromhex("45966020f707c7eac2fe5cdf57770cfa6b4979b4202e0d8a49bea644f8cd5394")
TARGET = bytes.fromhex("c5e21ab1c9f6022d81c3b25e3436cb7f1df77f9652ae3e1310c28e621dd87b4c")


def _handshake() -> tuple[HandshakeResult, HandshakeResult]:
    client = ik_initiator(CLIENT, SERVER.public_key, CLIENT_EPHEMERAL)
    server = ik_responder(SERVER, SERVER_EPHEMERAL)
    assert server.read_message(client.write_message(PAYLOAD_1)) == PAYLOAD_1
    assert client.read_message(server.write_message(PAYLOAD_2)) == PAYLOAD_2
    return client.result(), server.result()


def test_ik_messages_keys_and_derived_values_match_hyperdht() -> None:
    client = ik_initiator(CLIENT, SERVER.public_key, CLIENT_EPHEMERAL)
    server = ik_responder(SERVER, SERVER_EPHEMERAL)
    message_1 = client.write_message(PAYLOAD_1)
    assert message_1 == MESSAGE_1 and len(message_1) == 109
    assert server.read_message(message_1) == PAYLOAD_1
    assert server.remote_static == CLIENT.public_key  # the server learns who connects
    message_2 = server.write_message(PAYLOAD_2)
    assert message_2 == MESSAGE_2 and len(message_2) == 118
    assert client.read_message(message_2) == PAYLOAD_2
    mine, theirs = client.result(), server.result()
    assert mine.handshake_hash == theirs.handshake_hash == HANDSHAKE_HASH
    assert (mine.tx, mine.rx) == (CLIENT_TX, CLIENT_RX)
    assert (theirs.tx, theirs.rx) == (CLIENT_RX, CLIENT_TX)
    assert mine.remote_public_key == SERVER.public_key
    assert theirs.remote_public_key == CLIENT.public_key
    assert holepunch_secret(mine) == HOLEPUNCH_SECRET
    assert stream_id(mine.handshake_hash, True) == INITIATOR_ID
    assert stream_id(mine.handshake_hash, False) == RESPONDER_ID


def test_a_forged_reply_leaves_the_handshake_usable_for_the_genuine_one() -> None:
    client = ik_initiator(CLIENT, SERVER.public_key, CLIENT_EPHEMERAL)
    server = ik_responder(SERVER, SERVER_EPHEMERAL)
    server.read_message(client.write_message(PAYLOAD_1))
    genuine = server.write_message(PAYLOAD_2)
    forged = bytearray(genuine)
    forged[-1] ^= 1
    with pytest.raises(HandshakeError):
        client.read_message(bytes(forged))
    with pytest.raises(HandshakeError):
        client.read_message(genuine[:40])
    assert client.read_message(genuine) == PAYLOAD_2
    assert client.result().handshake_hash == HANDSHAKE_HASH


def test_ik_refuses_a_message_for_another_key_and_out_of_turn_use() -> None:
    stranger = ik_responder(KeyPair.from_seed(b"\x03" * 32))
    with pytest.raises(HandshakeError):
        stranger.read_message(MESSAGE_1)
    client = ik_initiator(CLIENT, SERVER.public_key)
    with pytest.raises(HandshakeError):
        client.read_message(MESSAGE_2)  # not our turn to read
    with pytest.raises(HandshakeError):
        client.result()
    with pytest.raises(HandshakeError):
        ik_responder(SERVER).write_message(b"")  # the responder answers, it does not start


def test_noise_payloads_decode_and_encode_as_captured() -> None:
    first = NoisePayload.decode(PAYLOAD_1)
    assert first == NoisePayload(udx=UdxInfo(0xEFD4CBFE), secret_stream=1)
    assert first.encode() == PAYLOAD_1
    second = NoisePayload.decode(PAYLOAD_2)
    relays = (("127.0.0.1", 49738), ("127.0.0.1", 49740), ("127.0.0.1", 49739))
    assert second.holepunch == HolepunchInfo(0, tuple(RelayInfo(r, ("127.0.0.1", 38394)) for r in relays))
    assert second.udx == UdxInfo(0xE586A48F)
    assert second.relay_addresses == relays
    assert second.firewall == Firewall.UNKNOWN and second.error == PayloadError.NONE
    assert second.encode() == PAYLOAD_2


def test_noise_payload_fields_round_trip_and_other_versions_decode_to_nothing_more() -> None:
    full = NoisePayload(
        error=PayloadError.TRY_LATER,
        firewall=Firewall.OPEN,
        holepunch=HolepunchInfo(7, (RelayInfo(("10.0.0.1", 1), ("10.0.0.2", 2)),)),
        addresses4=(("192.168.1.2", 49737),),
        addresses6=((bytes(15) + b"\x01", 9),),
        udx=UdxInfo(5, reusable_socket=True),
        secret_stream=1,
        relay_through=RelayThrough(b"\x0a" * 32, b"\x0b" * 32),
        relay_addresses=(("127.0.0.1", 3),),
    )
    assert NoisePayload.decode(full.encode()) == full
    assert NoisePayload.decode(b"\x02\xff\xff") == NoisePayload(version=2)
    assert NoisePayload.decode(PAYLOAD_1 + b"trailing") == NoisePayload.decode(PAYLOAD_1)
    for cut in range(1, len(PAYLOAD_2)):
        with pytest.raises(DecodeError):
            NoisePayload.decode(PAYLOAD_2[:cut])
    with pytest.raises(InvalidSetting):
        NoisePayload(relay_through=RelayThrough(b"short", b"\x00" * 32)).encode()


def test_the_captured_handshake_datagrams_decode_to_their_parts() -> None:
    from_client = bytes.fromhex(
        "03186f0f7f0000014ac200c5e21ab1c9f6022d81c3b25e3436cb7f1df77f9652ae3e1310c28e621dd87b4c"
        "7000006d"
    ) + MESSAGE_1
    request = decode(from_client)
    assert isinstance(request, Request)
    assert (request.tid, request.to, request.command, request.target) == (3951, ("127.0.0.1", 49738), 0, TARGET)
    assert request.value is not None
    message = HandshakeMessage.decode(request.value)
    assert message == HandshakeMessage(Mode.FROM_CLIENT, MESSAGE_1)
    assert message.encode() == request.value
    relayed = HandshakeMessage(Mode.FROM_RELAY, MESSAGE_1, ("127.0.0.1", 57797))
    assert relayed.encode() == bytes.fromhex("01026d") + MESSAGE_1 + bytes.fromhex("7f000001c5e1")
    from_server = HandshakeMessage(Mode.FROM_SERVER, MESSAGE_2, ("127.0.0.1", 57797))
    assert from_server.encode() == bytes.fromhex("010176") + MESSAGE_2 + bytes.fromhex("7f000001c5e1")
    reply = HandshakeMessage(Mode.REPLY, MESSAGE_2, ("127.0.0.1", 52016))
    assert reply.encode() == bytes.fromhex("010476") + MESSAGE_2 + bytes.fromhex("7f00000130cb")
    both = HandshakeMessage(Mode.FROM_SECOND_RELAY, b"n", ("1.2.3.4", 5), ("6.7.8.9", 10))
    assert HandshakeMessage.decode(both.encode()) == both


def test_the_captured_holepunch_request_and_payloads_decode() -> None:
    value = bytes.fromhex(
        "010000321c6f54cecf481f73655aefa5bea605638e266384ceccdf64b687e831ba6d8afadbead38b59227fe1a6"
        "bc45b32bda24780a067f000001fa95"
    )
    message = HolepunchMessage.decode(value)
    assert (message.mode, message.id, message.peer_address) == (Mode.FROM_CLIENT, 0, ("127.0.0.1", 38394))
    assert message.encode() == value
    probe = SecurePayload(HOLEPUNCH_SECRET).decrypt(message.payload)
    assert probe == HolepunchPayload(remote_address=("127.0.0.1", 52016))
    assert probe.encode() == bytes.fromhex("080000007f00000130cb")
    token = bytes(range(32))
    answer = HolepunchPayload(firewall=Firewall.CONSISTENT, addresses=(("127.0.0.1", 52016),), token=token)
    assert answer.encode() == bytes.fromhex("14000200017f00000130cb") + token
    assert HolepunchPayload.decode(answer.encode()) == answer


def test_secure_payloads_open_only_with_their_secret_and_tokens_depend_on_the_host() -> None:
    sealing = SecurePayload(HOLEPUNCH_SECRET)
    payload = HolepunchPayload(punching=True, round=3, remote_token=b"\x05" * 32)
    sealed = sealing.encrypt(payload)
    assert len(sealed) == 24 + 16 + len(payload.encode())
    assert sealed != sealing.encrypt(payload)  # a fresh nonce each time
    assert SecurePayload(HOLEPUNCH_SECRET).decrypt(sealed) == payload
    assert SecurePayload(b"\x00" * 32).decrypt(sealed) is None
    tampered = bytearray(sealed)
    tampered[30] ^= 1
    assert sealing.decrypt(bytes(tampered)) is None
    assert sealing.decrypt(sealed[:40]) is None  # nonce and MAC only: hyperdht ignores it
    assert sealing.decrypt(b"") is None
    garbage = SecurePayload(HOLEPUNCH_SECRET)
    nonce = bytes(24)
    import nacl.bindings as sodium

    assert garbage.decrypt(nonce + sodium.crypto_secretbox(b"\xff\xff", nonce, HOLEPUNCH_SECRET)) is None
    assert sealing.token(("10.0.0.1", 1)) == sealing.token(("10.0.0.1", 2))
    assert sealing.token(("10.0.0.1", 1)) != sealing.token(("10.0.0.2", 1))
    assert sealing.token(("10.0.0.1", 1)) != SecurePayload(HOLEPUNCH_SECRET).token(("10.0.0.1", 1))


def test_a_secret_stream_started_from_ik_keys_sends_its_header_first_and_talks() -> None:
    mine, theirs = _handshake()
    client = SecretStream(True, CLIENT, handshake=mine)
    server = SecretStream(False, SERVER, handshake=theirs)
    assert client.handshake_complete and server.handshake_complete
    header = client.data_to_send()
    assert len(header) == 59 and header[:3] == bytes.fromhex("380000") and header[3:35] == INITIATOR_ID
    server.receive_data(header)
    client.receive_data(server.data_to_send())
    assert server.receive_data(client.encrypt(b"ping")) == [bytearray(b"ping")]
    assert client.receive_data(server.encrypt(b"pong")) == [bytearray(b"pong")]
    assert server.remote_public_key == CLIENT.public_key
    with pytest.raises(HandshakeError):
        SecretStream(False, SERVER, handshake=mine)  # an initiator's result on the responder


async def test_connections_started_from_ik_keys_exchange_raw_messages_over_a_pipe() -> None:
    mine, theirs = _handshake()
    client = Connection(CLIENT, True, handshake=mine)
    server = Connection(SERVER, False, handshake=theirs)
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    server.message_handler = lambda message: None if got.done() else got.set_result(bytes(message))
    create_pipe(client, server)
    await asyncio.wait_for(asyncio.gather(client.wait_established(), server.wait_established()), 5)
    client.send_raw(b"over IK")
    assert await asyncio.wait_for(got, 5) == b"over IK"
    assert client.handshake_hash == server.handshake_hash == HANDSHAKE_HASH
    client.close()
    server.close()
    await asyncio.wait_for(asyncio.gather(client.wait_closed(), server.wait_closed()), 5)
