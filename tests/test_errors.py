"""The error families: every class in errors.py, one family per cause, typed network errors."""

from __future__ import annotations

import errno
import importlib
import inspect
import pkgutil
import socket

import pytest

import peersockets
from peersockets import errors
from peersockets.errors import (
    ChannelClosed,
    ConnectError,
    ListenError,
    NetworkError,
    PeersocketsError,
    ProtocolError,
    RequestError,
)
from peersockets.swarm import Swarm, _network_error
from peersockets.wire.protomux import Mux

FAMILIES = {
    ProtocolError: {
        "DecodeError",
        "HandshakeError",
        "DecryptionError",
        "FrameTooLarge",
        "ChannelError",
        "CapabilityError",
        "PeerTimeout",
        "HandshakeTimeout",
        "PairTimeout",
        "ReadTimeout",
        "FrameTimeout",
        "PeerNotReading",
    },
    RequestError: {
        "PeerNotFound",
        "MessageTooLarge",
        "TopicClosed",
        "SwarmClosed",
        "PeersocketsClosed",
        "NotEnoughPeers",
        "ChannelClosed",
        "InvalidKey",
        "InvalidTopic",
        "InvalidSetting",
        "TooManyConnections",
        "ReceiveBudgetExceeded",
        "StreamIdInUse",
        "SocketClosed",
    },
    NetworkError: {
        "ConnectError",
        "ListenError",
        "ConnectionClosed",
        "StreamReset",
        "StreamTimeout",
        "DHTError",
        "DHTTimeout",
        "PeerConnectError",
        "DHTPeerNotFound",
        "HandshakeRefused",
        "HolepunchFailed",
        "PeerConnectTimeout",
    },
}


def test_every_exception_class_lives_in_errors_py() -> None:
    elsewhere = []
    for info in pkgutil.walk_packages(peersockets.__path__, "peersockets."):
        if info.name.endswith("__main__"):
            continue  # runs the command when imported
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, PeersocketsError)
                and value.__module__ != errors.__name__
            ):
                elsewhere.append(f"{info.name}.{name}")
    assert not elsewhere


def test_each_error_belongs_to_exactly_one_family() -> None:
    classes = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, PeersocketsError)
    }
    for family, members in FAMILIES.items():
        for name in members:
            assert issubclass(classes[name], family), name
            others = [f for f in FAMILIES if f is not family]
            assert not any(issubclass(classes[name], f) for f in others), name
    listed = set().union(*FAMILIES.values()) | {f.__name__ for f in FAMILIES}
    assert set(classes) - listed == {"PeersocketsError"}
    assert issubclass(NetworkError, OSError)
    assert all(
        getattr(peersockets, name) is classes[name]
        for name in peersockets.__all__
        if name in classes
    )


async def test_connect_refused_is_a_connect_error_that_is_an_oserror() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Swarm(dht=False) as swarm:
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}: connection refused") as caught:
            await swarm.connect("127.0.0.1", port)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("port", [70000, -1])
async def test_a_port_out_of_range_is_a_typed_error(port: int) -> None:
    async with Swarm(dht=False) as swarm:
        with pytest.raises(ConnectError, match=f"port {port} is out of range"):
            await swarm.connect("127.0.0.1", port)
        with pytest.raises(ListenError, match=f"port {port} is out of range"):
            await swarm.listen("127.0.0.1", port)


async def test_an_address_in_use_is_a_listen_error() -> None:
    async with Swarm(dht=False) as first, Swarm(dht=False) as second:
        host, port = await first.listen("127.0.0.1", 0)
        with pytest.raises(ListenError, match="address already in use") as caught:
            await second.listen(host, port)
    assert caught.value.errno == errno.EADDRINUSE


def test_name_not_resolved_and_timed_out_read_well() -> None:
    """Without asking a resolver or waiting: the errors Swarm.connect turns them into."""
    unresolved = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    error = _network_error(ConnectError, "cannot connect to", "nohost.invalid", 1, unresolved)
    assert str(error) == (
        "cannot connect to nohost.invalid:1: unknown host (Name or service not known)"
    )
    late = _network_error(ConnectError, "cannot connect to", "::1", 9, TimeoutError(), "timed out")
    assert str(late) == "cannot connect to [::1]:9: timed out" and late.errno == errno.ETIMEDOUT


def test_local_channel_misuse_is_a_request_error_not_the_remotes_fault() -> None:
    mux = Mux()
    channel = mux.open("test/misuse", None, b"", _Quiet())
    channel.close()
    with pytest.raises(ChannelClosed, match="closed") as caught:
        channel.send(0, b"late")
    assert not isinstance(caught.value, ProtocolError)
    mux.destroy()
    with pytest.raises(ChannelClosed, match="ended"):
        mux.open("test/after", None, b"", _Quiet())


class _Quiet:
    def channel_opened(self, channel: object, handshake: bytes) -> None:
        pass

    def channel_message(self, channel: object, message_type: int, payload: memoryview) -> None:
        pass

    def channel_closed(self, channel: object, by_remote: bool) -> None:
        pass
