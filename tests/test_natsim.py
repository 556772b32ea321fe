"""tests/natsim.py: a NAT on loopback behaves as the NATs hyperdht holepunches through."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from conftest import wait_until
from natsim import LOOPBACK, Nat, SocketFactory, behind

import peersockets.udx.socket as udx_socket
from peersockets.errors import ListenError, StreamReset
from peersockets.udx import UDXSocket

TIMEOUT = 10.0

Addr = tuple[str, int]
Inbox = asyncio.Queue[tuple[bytes, Addr]]


class Outside:
    """Plain UDXSockets on 127.0.0.1 (not behind the NAT), each with an inbox for datagrams."""

    def __init__(self) -> None:
        self.sockets: list[UDXSocket] = []
        self.inboxes: dict[UDXSocket, Inbox] = {}

    async def socket(self) -> UDXSocket:
        inbox: Inbox = asyncio.Queue()
        sock = await UDXSocket.bind(
            LOOPBACK, 0, on_message=lambda data, source: inbox.put_nowait((data, source[:2]))
        )
        self.sockets.append(sock)
        self.inboxes[sock] = inbox
        return sock

    async def next(self, sock: UDXSocket) -> tuple[bytes, Addr]:
        """The next datagram ``sock`` received, and its source."""
        return await asyncio.wait_for(self.inboxes[sock].get(), TIMEOUT)


@pytest_asyncio.fixture
async def outside() -> AsyncIterator[Outside]:
    world = Outside()
    try:
        yield world
    finally:
        for sock in world.sockets:
            await sock.close()


async def inside_socket(nat: Nat, inbox: Inbox | None = None) -> UDXSocket:
    """A UDXSocket behind ``nat``; datagrams it gets go to ``inbox``."""
    handler = None if inbox is None else (lambda data, source: inbox.put_nowait((data, source[:2])))
    return await nat.bind(LOOPBACK, 0, on_message=handler)


def refused(address: Addr) -> bool:
    """True if nothing listens on the UDP ``address`` (loopback answers port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.settimeout(2.0)
        raw.connect(address)
        raw.send(b"\x03anyone?")
        try:
            raw.recv(64)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
        return False


async def test_consistent_mapping_shows_one_public_source_to_every_destination(
    outside: Outside,
) -> None:
    async with Nat("consistent") as nat:
        inside = await inside_socket(nat)
        real = inside._sock.getsockname()
        o1, o2 = await outside.socket(), await outside.socket()
        inside.send(b"\x03to one", o1.address)
        inside.send(b"\x03to two", o2.address)
        (d1, s1), (d2, s2) = await outside.next(o1), await outside.next(o2)
        assert (d1, d2) == (b"\x03to one", b"\x03to two")
        assert s1 == s2 == nat.public_address(inside)
        assert s1[0] == LOOPBACK and s1[1] != real[1]
        assert inside.address == real  # the private address, as an OS socket behind a NAT reports
        assert nat.public_addresses(inside) == [s1]
        assert nat.forwarded_out == 2 and nat.dropped == nat.bypassed == 0
        assert "consistent" in repr(nat) and "mappings=1" in repr(nat)
        await inside.close()


async def test_random_mapping_shows_a_public_port_per_destination(outside: Outside) -> None:
    async with Nat("random") as nat:
        inside = await inside_socket(nat)
        o1, o2 = await outside.socket(), await outside.socket()
        inside.send(b"\x03to one", o1.address)
        inside.send(b"\x03to two", o2.address)
        (_, s1), (_, s2) = await outside.next(o1), await outside.next(o2)
        assert s1[0] == s2[0] == LOOPBACK
        assert len({s1[1], s2[1], inside.address[1]}) == 3
        assert nat.public_address(inside) == s1
        assert nat.public_addresses(inside) == [s1, s2]
        inside.send(b"\x03again", o1.address)  # the same destination keeps its port
        assert await outside.next(o1) == (b"\x03again", s1)
        assert len(nat.mappings) == 2
        await inside.close()


@pytest.mark.parametrize("mapping", ["consistent", "random"])
async def test_only_addresses_the_inside_sent_to_get_in(outside: Outside, mapping: str) -> None:
    async with Nat("random" if mapping == "random" else "consistent") as nat:
        inbox: Inbox = asyncio.Queue()
        inside = await inside_socket(nat, inbox)
        friend, stranger = await outside.socket(), await outside.socket()
        inside.send(b"\x03hello", friend.address)
        _, public = await outside.next(friend)

        stranger.send(b"\x03let me in", public)
        await wait_until(lambda: nat.dropped == 1, TIMEOUT)
        assert nat.dropped_by_port[public[1]] == 1
        friend.send(b"\x03reply", public)
        assert await asyncio.wait_for(inbox.get(), TIMEOUT) == (b"\x03reply", friend.address)

        inside.send(b"\x03now you", stranger.address)
        _, seen = await outside.next(stranger)
        stranger.send(b"\x03in at last", seen)
        assert await asyncio.wait_for(inbox.get(), TIMEOUT) == (b"\x03in at last", stranger.address)
        assert inbox.empty() and nat.dropped == 1

        stranger.send(b"\x03around the NAT", inside.address)  # the real port: never delivered
        await wait_until(lambda: nat.bypassed == 1, TIMEOUT)
        friend.send(b"\x03marker", public)
        assert await asyncio.wait_for(inbox.get(), TIMEOUT) == (b"\x03marker", friend.address)
        assert inbox.empty()
        assert nat.forwarded_in == 3
        await inside.close()


@pytest.mark.parametrize("mapping", ["consistent", "random"])
async def test_a_udx_stream_carries_a_mebibyte_each_way_to_the_public_address(
    outside: Outside, mapping: str
) -> None:
    async with Nat("random" if mapping == "random" else "consistent") as nat:
        inside = await inside_socket(nat)
        far = await outside.socket()
        inside.send(b"\x03here I am", far.address)
        _, public = await outside.next(far)
        assert public != inside.address

        ra, wa = await inside.open_stream(1, 2, far.address)
        rb, wb = await far.open_stream(2, 1, public)
        up, down = os.urandom(1024 * 1024), os.urandom(1024 * 1024)

        async def side(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
        ) -> bytes:
            writer.write(data)
            writer.write_eof()
            return await reader.read()

        inside_got, far_got = await asyncio.wait_for(
            asyncio.gather(side(ra, wa, up), side(rb, wb, down)), TIMEOUT
        )
        assert hashlib.sha256(inside_got).digest() == hashlib.sha256(down).digest()
        assert hashlib.sha256(far_got).digest() == hashlib.sha256(up).digest()
        wa.close()
        wb.close()
        await asyncio.wait_for(asyncio.gather(wa.wait_closed(), wb.wait_closed()), TIMEOUT)
        assert nat.public_addresses(inside) == [public] and nat.dropped == nat.bypassed == 0
        assert not inside._coalescing and not inside._segmentation  # GRO refused, GSO fell back
        assert nat.forwarded_in > 700 and nat.forwarded_out > 700
        await inside.close()


async def test_two_inside_sockets_get_different_public_ports(outside: Outside) -> None:
    async with Nat("consistent") as nat:
        a, b = await inside_socket(nat), await inside_socket(nat)
        far = await outside.socket()
        a.send(b"\x03from a", far.address)
        (_, sa) = await outside.next(far)
        b.send(b"\x03from b", far.address)
        (_, sb) = await outside.next(far)
        assert sa != sb and sa[0] == sb[0] == LOOPBACK
        assert sa == nat.public_address(a) and sb == nat.public_address(b)
        assert {sa[1], sb[1]}.isdisjoint({a.address[1], b.address[1]})
        await a.close()
        await b.close()


async def test_closing_an_inside_socket_sends_its_destroys_then_releases_its_mapping(
    outside: Outside,
) -> None:
    async with Nat("consistent") as nat:
        inside = await inside_socket(nat)
        far = await outside.socket()
        inside.send(b"\x03hi", far.address)
        _, public = await outside.next(far)
        _ra, wa = await inside.open_stream(1, 2, far.address)
        rb, wb = await far.open_stream(2, 1, public)
        wa.write(b"hello")
        assert await asyncio.wait_for(rb.readexactly(5), TIMEOUT) == b"hello"
        [mapping] = nat.mappings
        await inside.close()
        assert nat.mappings == [] and mapping.closed
        with pytest.raises(StreamReset):  # the DESTROY went out before the mapping closed
            await asyncio.wait_for(wb.wait_closed(), TIMEOUT)
        assert refused(public)
        with pytest.raises(LookupError):
            nat.public_address(inside)


async def test_closing_the_nat_closes_its_public_sockets(outside: Outside) -> None:
    nat = Nat("random")
    inside = await inside_socket(nat)
    o1, o2 = await outside.socket(), await outside.socket()
    inside.send(b"\x03one", o1.address)
    inside.send(b"\x03two", o2.address)
    (_, s1), (_, s2) = await outside.next(o1), await outside.next(o2)
    mappings = nat.mappings
    assert [m.public for m in mappings] == [s1, s2]
    await nat.close()
    assert nat.closed and nat.mappings == [] and all(m.closed for m in mappings)
    assert refused(s1) and refused(s2)
    assert "closed" in repr(nat)
    inside.send(b"\x03anyone?", o1.address)  # into the void, no error
    await inside.close()
    await nat.close()  # twice is fine


async def test_an_idle_mapping_expires(outside: Outside) -> None:
    async with Nat("consistent", idle_timeout=0.2) as nat:
        inside = await inside_socket(nat)
        far = await outside.socket()
        inside.send(b"\x03first", far.address)
        _, public = await outside.next(far)
        await wait_until(lambda: not nat.mappings, TIMEOUT)
        assert nat.expired == 1 and refused(public)
        inside.send(b"\x03second", far.address)  # a fresh mapping
        data, _ = await outside.next(far)
        assert data == b"\x03second" and len(nat.mappings) == 1
        await inside.close()


async def test_offloads_are_refused_and_ttl_passes_through(outside: Outside) -> None:
    async with Nat() as nat:
        inside = await inside_socket(nat)
        far = await outside.socket()
        proxy = inside._sock
        with pytest.raises(OSError) as gro:
            proxy.setsockopt(socket.IPPROTO_UDP, 104, 1)  # UDP_GRO
        assert gro.value.errno == errno.ENOPROTOOPT
        with pytest.raises(OSError) as gso:
            proxy.sendmsg([b"\x03" * 20], [(socket.IPPROTO_UDP, 103, b"\x0a\x00")], 0, far.address)
        assert gso.value.errno in udx_socket._NO_SEGMENTATION
        proxy.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 5)
        assert proxy.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 5
        inside.send(b"\x03short-lived", far.address)  # loopback: 5 hops is plenty
        assert (await outside.next(far))[0] == b"\x03short-lived"
        await inside.close()


async def test_bind_matches_udxsocket_bind_and_refuses_ipv6() -> None:
    async with Nat() as nat:
        factories: list[SocketFactory] = [UDXSocket.bind, nat.bind, behind(nat)]
        assert factories[2] == nat.bind
        sock = await behind(nat)()
        assert sock.address[0] == LOOPBACK and nat.mappings == []
        await sock.close()
        with pytest.raises(ListenError):
            await nat.bind("::1", 0)
