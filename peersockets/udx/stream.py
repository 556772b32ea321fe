"""One UDX stream, sans-I/O: datagrams in, datagrams out, time passed in (dht/UDX.md 2-5).

The core knows nothing of sockets or addresses. The adapter hands it every
packet for its id (``receive``), asks it to ``flush`` once per batch of
datagrams or writes, sends what it put in ``outgoing`` (each datagram with the
opaque ``path`` it was sent on), hands ``incoming`` payloads to the reader, and
calls ``handle_timer`` when ``get_timer`` says. Sequence numbers are unwrapped
integers inside; only the wire sees 32 bits.

Compatible with udx-native on the wire; the sender's algorithms are RACK-TLP
loss detection, libudx's RTO rules and NewReno congestion control
(``congestion.py`` says why not BBR). One deliberate difference: acks go out
once per batch of received datagrams (never later than the end of the batch),
not once per packet.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections import deque
from dataclasses import dataclass
from typing import Final

from ..errors import ConnectionClosed, InvalidSetting, StreamReset, StreamTimeout
from . import packet as p
from .congestion import NewReno

__all__ = [
    "BASE_MTU",
    "MAX_MTU",
    "Closed",
    "Ended",
    "RemoteChanged",
    "StreamCore",
    "StreamEvent",
    "StreamStats",
]

BASE_MTU: Final = 1200
MAX_MTU: Final = 1500
MTU_STEP: Final = 32
MTU_PROBES: Final = 3
IPV4_OVERHEAD: Final = 28
IPV6_OVERHEAD: Final = 48

MIN_RTO: Final = 1.0
MAX_RTO: Final = 30.0
END_RETRIES: Final = 3
"""Retransmission timeouts after which a bare END the remote never acks closes gracefully,
once the remote has ended and every byte both ways is acknowledged (libudx has no TIME_WAIT)."""

RTO_GIVE_UP: Final = 7
"""The 7th consecutive RTO expiry without progress ends the stream: about 13 x rto."""

DEFAULT_WINDOW: Final = 4 * 1024 * 1024
"""Advertised receive window, as udx-native's (4 MiB)."""

TLP_NO_SAMPLE: Final = 1.0

PREDICTION = True
"""Header prediction: the next DATA packet in order, acking nothing new or the oldest packet
in flight, on a stream with nothing unusual under way, skips the general path's checks (as
TCP stacks do). Off, every packet takes the general path; the tests run both and compare."""

MAX_OUTSTANDING: Final = 8192
"""Packets sent past the cumulative ack, SACKed or not: what a sender holds for one stream."""


class _State(enum.Enum):
    OPEN = 0
    RECOVERY = 1
    LOSS = 2


@dataclass(frozen=True, slots=True)
class Ended:
    """The remote ended its side: every byte it sent has been handed over."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The stream is closed; ``error`` is None for a graceful close of both sides."""

    error: Exception | None


@dataclass(frozen=True, slots=True)
class RemoteChanged:
    """Every packet sent before ``change_remote`` has been acknowledged."""


StreamEvent = Ended | Closed | RemoteChanged


@dataclass(slots=True)
class StreamStats:
    """Counters of one stream, for diagnostics and benchmarks."""

    packets_sent: int = 0
    """DATA and END packets sent, retransmissions included."""
    retransmits: int = 0
    loss_events: int = 0
    """Times a loss sent the stream into recovery (the window halved)."""
    timeouts: int = 0
    """Retransmission timer expiries."""
    packets_received: int = 0
    """DATA and END packets received, duplicates included."""


class _Sent:
    """A DATA or END packet sent and not yet cumulatively acknowledged."""

    __slots__ = (
        "flags",
        "lost",
        "pad",
        "path",
        "payload",
        "remote_id",
        "retransmitted",
        "sacked",
        "sent_at",
        "seq",
    )

    def __init__(
        self, seq: int, flags: int, payload: bytes, pad: int, remote_id: int, path: object, now: float
    ) -> None:
        self.seq = seq
        self.flags = flags
        self.payload = payload
        self.pad = pad
        self.remote_id = remote_id
        self.path = path
        self.sent_at = now
        self.retransmitted = False
        self.sacked = False
        self.lost = False


class StreamCore:
    """The state machine of one stream: reliability, order, flow and congestion control.

    Settings: ``receive_window`` (bytes advertised and the most held unread),
    ``max_out_of_order`` (packets buffered above a hole; the rest are dropped
    and resent by the peer), ``keepalive`` (seconds between heartbeats on an
    idle stream, None for none), ``min_rto`` (the retransmission timer's floor,
    1 s as libudx), ``max_mtu`` (1500; probing starts at 1200 and stops here),
    ``ipv6`` (the header overhead of the remote's family), ``seq`` and ``ack``
    (the first sequence numbers sent and expected; both sides must agree, and
    hyperdht always uses 0, as udx-native's ``seq`` and ``ack`` options).
    """

    def __init__(
        self,
        local_id: int,
        *,
        receive_window: int = DEFAULT_WINDOW,
        max_out_of_order: int = 2048,
        keepalive: float | None = None,
        min_rto: float = MIN_RTO,
        max_mtu: int = MAX_MTU,
        ipv6: bool = False,
        seq: int = 0,
        ack: int = 0,
    ) -> None:
        if not 0 <= local_id <= p.SEQ_MASK:
            raise InvalidSetting(f"a stream id is a 32-bit unsigned number, got {local_id!r}")
        if receive_window < 1:
            raise InvalidSetting(f"receive_window must be >= 1 byte, got {receive_window!r}")
        if max_out_of_order < 1:
            raise InvalidSetting(f"max_out_of_order must be >= 1 packet, got {max_out_of_order!r}")
        if keepalive is not None and keepalive <= 0:
            raise InvalidSetting(f"keepalive must be > 0 seconds or None, got {keepalive!r}")
        if not 0 < min_rto <= MAX_RTO:
            raise InvalidSetting(f"min_rto must be in (0, {MAX_RTO}] seconds, got {min_rto!r}")
        for name, value in (("seq", seq), ("ack", ack)):
            if not isinstance(value, int) or not 0 <= value <= p.SEQ_MASK:
                raise InvalidSetting(f"{name} is a 32-bit unsigned number, got {value!r}")
        if max_mtu < BASE_MTU:
            raise InvalidSetting(f"max_mtu must be >= {BASE_MTU}, got {max_mtu!r}")
        self.local_id = local_id
        self.remote_id = 0
        self.path: object = None
        self.connected = False
        self.closed = False
        self.error: Exception | None = None
        self.outgoing: list[tuple[bytes, object]] = []
        """Datagrams to send, each with the path it goes to; the adapter empties it."""
        self.incoming: list[bytes | memoryview] = []
        """Stream payload in order; a memoryview is valid only until the next datagram."""
        self.messages: list[bytes] = []
        """MESSAGE datagrams received (unordered, unreliable)."""
        self.events: list[StreamEvent] = []
        self.stats = StreamStats()

        self._window = receive_window
        self._max_ooo = max_out_of_order
        self._keepalive = keepalive
        self._min_rto = min_rto
        self._overhead = IPV6_OVERHEAD if ipv6 else IPV4_OVERHEAD

        # receiving
        self._rcv_nxt = ack
        self._received = False
        self._ooo: dict[int, tuple[int, bytes]] = {}
        self._ranges: list[list[int]] = []
        self._remote_end: int | None = None
        self._ended_remote = False
        self._ack_due = False
        self._unread = 0

        # sending
        self._snd_una = seq
        self._snd_nxt = seq
        self._queue: deque[memoryview] = deque()
        self.queued = 0
        """Bytes written and not yet sent once."""
        self._end_requested = False
        self._end_seq: int | None = None
        self._ended = False
        self._inflight: dict[int, _Sent] = {}
        self._by_time: dict[int, _Sent] = {}
        self._lost: list[int] = []
        self._sacked = 0
        self._sack_ranges: list[list[int]] = []
        """Merged ``[start, end)`` ranges above snd_una already SACKed: each seq is handled once."""
        self.unacked_bytes = 0
        """Payload bytes sent and not yet acknowledged."""
        self._cc = NewReno()
        self._state = _State.OPEN
        self._high_seq = 0
        self._peer_rwnd = DEFAULT_WINDOW
        self._wl1 = ack
        self._wl2 = seq

        # round-trip time (RFC 6298, seconds)
        self._srtt = 0.0
        self._rttvar = 0.0
        self.rto = 1.0 if min_rto >= 1.0 else min_rto
        self._min_rtt = float("inf")
        self._rto_expiries = 0

        # RACK-TLP
        self._rack_sent_at = -1.0
        self._rack_seq = seq - 1
        self._rack_rtt = 0.0
        self._high_delivered = seq - 1
        self._reordering = False
        self._delivered_since_probe = True

        # timers (absolute times, None = not armed)
        self._rto_at: float | None = None
        self._rack_at: float | None = None
        self._tlp_at: float | None = None
        self._zwp_at: float | None = None
        self._keepalive_at: float | None = None
        self._linger_until: float | None = None
        self._zwp_interval = 0.0

        # path MTU
        self.mtu = BASE_MTU
        self._max_mtu = max_mtu
        self._probe_size = 0
        self._probe_seq: int | None = None
        self._probe_failures = 0
        self._probing = max_mtu > BASE_MTU
        self._change_seq: int | None = None

    # ------------------------------------------------------------------ setup

    @property
    def max_payload(self) -> int:
        """Payload bytes per DATA packet at the current MTU."""
        return self.mtu - self._overhead - p.HEADER_SIZE

    def connect(self, remote_id: int, path: object, now: float) -> None:
        """Send to ``remote_id`` on ``path`` from now on; data that came first is acked."""
        if self.closed:
            return
        self.remote_id = remote_id
        self.path = path
        self.connected = True
        if self._received or self._ooo:
            self._ack_due = True
        self._arm_keepalive(now)

    def change_remote(self, remote_id: int, path: object, now: float) -> None:
        """Send new packets to ``remote_id`` on ``path``; ``RemoteChanged`` once the old ones are acked."""
        if not self.connected or self.closed:
            return
        self.remote_id = remote_id
        self.path = path
        self.mtu = BASE_MTU
        self._probe_seq = None
        self._probe_failures = 0
        self._probing = self._max_mtu > BASE_MTU
        self._probe_size = 0
        if self._snd_una >= self._snd_nxt:
            self._change_seq = None
            self.events.append(RemoteChanged())
        else:
            self._change_seq = self._snd_nxt

    # ---------------------------------------------------------------- sending

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes to send (they go out at the next ``flush``)."""
        if self._end_requested:
            raise ConnectionClosed(f"UDX stream {self.local_id}: cannot write after end()")
        if not data:
            return
        view = memoryview(bytes(data) if not isinstance(data, bytes) else data)
        self._queue.append(view)
        self.queued += len(view)

    def end(self) -> None:
        """Queue our END after everything written; the stream half-closes."""
        self._end_requested = True

    @property
    def ending(self) -> bool:
        """``end()`` was called: nothing more may be written."""
        return self._end_requested

    def send_message(self, payload: bytes | bytearray | memoryview, now: float) -> None:
        """One unreliable, unordered MESSAGE datagram (never acked, never resent)."""
        self.outgoing.append(
            (p.encode(p.MESSAGE, self.remote_id, self._rwnd(), self._snd_nxt, self._rcv_nxt, bytes(payload)), self.path)
        )
        self._arm_keepalive(now)

    def destroy(self, now: float) -> None:
        """Abort: one DESTROY to the peer if connected, then closed without error."""
        if self.closed:
            return
        if self.connected:
            self.outgoing.append(
                (p.encode(p.DESTROY, self.remote_id, self._rwnd(), self._snd_nxt, self._rcv_nxt), self.path)
            )
            self._snd_nxt += 1
        self._close(None, now, linger=False)

    @property
    def writable_bytes(self) -> int:
        """Bytes queued or unacknowledged: what a writer waiting for drain waits on."""
        return self.queued + self.unacked_bytes

    def flush(self, now: float, defer_ack: bool = False) -> bool:
        """Send what may be sent now: retransmissions, new data, a due ack.

        With ``defer_ack``, a pure ack (nothing out of order to report) is left due
        and True returned: the caller flushes again soon, and a reply written
        meanwhile carries the ack instead (one datagram, not two).
        """
        if self.closed:
            if self._ack_due and self.connected:
                self._send_ack()
            return False
        if self._ooo and self._rcv_nxt in self._ooo and self._unread < self._window:
            self._drain_out_of_order()  # the reader caught up: what waited above a full window
            self._check_remote_end()
            if self._ended and self._ended_remote:
                self._close(None, now, linger=True)
                self.flush(now)
                return False
        if not self.connected:
            return False
        sent = False
        if self._lost:
            sent = self._retransmit_lost(now)
        if self._queue or (self._end_requested and self._end_seq is None):
            sent = self._send_new(now) or sent
        deferred = False
        if self._ack_due and (not sent or self._ooo):
            if defer_ack and not sent and not self._ooo:
                deferred = True
            else:
                self._send_ack()
        self._ack_due = deferred
        self._arm_timers(now)
        return deferred

    @property
    def ack_pending(self) -> bool:
        """An ack is due and not yet sent (``flush`` with ``defer_ack`` left it)."""
        return self._ack_due

    def _rwnd(self) -> int:
        return max(0, self._window - self._unread)

    def _send_ack(self) -> None:
        if self._ooo:
            blocks = [(start, end) for start, end in self._ranges[: p.MAX_SACK_BLOCKS]]
            body = p.encode_sacks(blocks)
            datagram = p.encode(p.SACK, self.remote_id, self._rwnd(), self._snd_nxt, self._rcv_nxt, body)
        else:
            datagram = p.encode(p.STATE, self.remote_id, self._rwnd(), self._snd_nxt, self._rcv_nxt)
        self.outgoing.append((datagram, self.path))
        self._ack_due = False

    def _send_window(self) -> int:
        payload = self.max_payload
        rwnd = self._peer_rwnd
        rwnd_packets = rwnd // payload if rwnd >= payload else (1 if rwnd > 0 else 0)
        return min(self._cc.cwnd, rwnd_packets)

    def _send_new(self, now: float) -> bool:
        """New DATA (and END) packets while the window allows; True if any left."""
        window = self._send_window()
        outstanding_room = MAX_OUTSTANDING - (self._snd_nxt - self._snd_una)
        if outstanding_room <= 0:
            return False  # a receiver that SACKs ahead but holds back its ack gets no more
        if window == 0:
            self._start_zero_window_probe(now)  # queued data, or only our END: both wait for it
            return False
        sent = False
        in_flight = len(self._by_time)
        while in_flight < window and outstanding_room and (self._queue or (self._end_requested and self._end_seq is None)):
            self._send_one_new(now)
            in_flight += 1
            outstanding_room -= 1
            sent = True
        return sent

    def _send_one_new(self, now: float) -> None:
        payload = self._take_payload(self.max_payload)
        flags = p.DATA if payload else 0
        if self._end_requested and not self._queue and self._end_seq is None:
            flags |= p.END
            self._end_seq = self._snd_nxt
        pad = 0
        if (
            self._probing
            and self._probe_seq is None
            and self._change_seq is None
            and flags & p.DATA
            and self._probe_size
        ):
            pad = self._probe_size - (p.HEADER_SIZE + len(payload) + self._overhead)
            if 0 <= pad <= 255:
                self._probe_seq = self._snd_nxt
            else:
                pad = 0
        sent = _Sent(self._snd_nxt, flags, payload, pad, self.remote_id, self.path, now)
        self._snd_nxt += 1
        self._inflight[sent.seq] = sent
        self._by_time[sent.seq] = sent
        self.unacked_bytes += len(payload)
        self._transmit(sent)

    def _take_payload(self, limit: int) -> bytes:
        queue = self._queue
        if not queue:
            return b""
        head = queue[0]
        if len(head) > limit:
            queue[0] = head[limit:]
            self.queued -= limit
            return bytes(head[:limit])
        if len(head) == limit or len(queue) == 1:
            queue.popleft()
            self.queued -= len(head)
            whole = head.obj
            return whole if isinstance(whole, bytes) and len(whole) == len(head) else bytes(head)
        pieces: list[memoryview] = []
        room = limit
        while queue and room:
            head = queue[0]
            if len(head) <= room:
                pieces.append(queue.popleft())
                room -= len(head)
            else:
                pieces.append(head[:room])
                queue[0] = head[room:]
                room = 0
        taken = b"".join(pieces)
        self.queued -= len(taken)
        return taken

    def _transmit(self, sent: _Sent) -> None:
        self.stats.packets_sent += 1
        pad = sent.pad
        body = bytes(pad) + sent.payload if pad else sent.payload
        datagram = p.encode(sent.flags, sent.remote_id, self._rwnd(), sent.seq, self._rcv_nxt, body, pad)
        self.outgoing.append((datagram, sent.path))

    def _retransmit_lost(self, now: float) -> bool:
        """Resend lost packets in seq order while the congestion window allows."""
        window = self._cc.cwnd
        in_flight = len(self._by_time)
        sent = False
        lost = self._lost
        while lost and in_flight < window:
            seq = heapq.heappop(lost)
            packet = self._inflight.get(seq)
            if packet is None or not packet.lost or packet.sacked:
                continue
            self._resend(packet, now)
            in_flight += 1
            sent = True
        return sent

    def _resend(self, packet: _Sent, now: float) -> None:
        self.stats.retransmits += 1
        packet.lost = False
        packet.retransmitted = True
        packet.pad = 0
        packet.sent_at = now
        self._by_time.pop(packet.seq, None)
        self._by_time[packet.seq] = packet
        self._transmit(packet)

    # -------------------------------------------------------------- receiving

    def receive(self, datagram: memoryview, now: float) -> None:
        """Handle one packet for this stream (``is_udx`` and the id already checked)."""
        if self.closed:
            self._receive_while_lingering(datagram)
            return
        _, _, flags, data_offset, _, rwnd, wire_seq, wire_ack = p.HEADER.unpack_from(datagram)
        if (
            flags == p.DATA
            and not data_offset
            and PREDICTION
            and self._receive_predicted(datagram, rwnd, wire_seq, wire_ack, now)
        ):
            return
        if flags & p.HEARTBEAT:
            self._ack_due = True
            return
        body = datagram[p.HEADER_SIZE :]
        if data_offset > len(body):
            return
        seq = p.unwrap(wire_seq, self._rcv_nxt)
        if flags & (p.DATA | p.END | p.DESTROY):
            if flags & p.DESTROY:
                if seq >= self._rcv_nxt:
                    self._close(StreamReset(f"UDX stream {self.local_id} was reset by its peer"), now, linger=False)
                return
            self._ack_due = True
            self.stats.packets_received += 1
            if seq >= self._rcv_nxt and not self._ended_remote:
                self._accept(seq, flags, body[data_offset:] if not flags & p.SACK else b"")
        elif flags & p.MESSAGE:
            self.messages.append(bytes(body[data_offset:]))
        if self.closed:
            return
        self._process_ack(flags, seq, p.unwrap(wire_ack, self._snd_una), rwnd, body, data_offset, now)
        if self._ended and self._ended_remote and not self.closed:
            self._close(None, now, linger=True)

    def _receive_predicted(
        self, datagram: memoryview, rwnd: int, wire_seq: int, wire_ack: int, now: float
    ) -> bool:
        """A DATA packet (no END, no SACK) as ``receive`` would handle it, if it is the
        predicted one; False, with nothing changed, if it is not.

        Predicted: the next in order, with nothing held out of order and no END seen,
        room in the window, and an ack of nothing new or of exactly the oldest packet in
        flight, sent once, not SACKed or lost, newer than any delivered, while no loss
        recovery, address change, END or MTU probe result is pending. The effects are
        the general path's for such a packet, in its order.
        """
        seq = self._rcv_nxt
        if (
            wire_seq != seq & p.SEQ_MASK
            or self._ooo
            or self._remote_end is not None
            or self._ended_remote
            or self._unread >= self._window
        ):
            return False
        ack = self._snd_una
        sent: _Sent | None = None
        if wire_ack != ack & p.SEQ_MASK:
            if wire_ack != (ack + 1) & p.SEQ_MASK:
                return False
            sent = self._inflight.get(ack)
            if (
                sent is None
                or sent.sacked
                or sent.lost
                or sent.retransmitted
                or ack <= self._high_delivered
                or not (
                    sent.sent_at > self._rack_sent_at
                    or (sent.sent_at == self._rack_sent_at and ack > self._rack_seq)
                )
                or self._state is not _State.OPEN
                or self._sack_ranges
                or self._change_seq is not None
                or self._end_seq is not None
                or ack == self._probe_seq
                or (self._probing and not self._probe_size)
            ):
                return False
            ack += 1
        # the data: _accept's in-order case
        self._ack_due = True
        self.stats.packets_received += 1
        self._received = True
        payload = datagram[p.HEADER_SIZE :]
        self.incoming.append(payload)
        self._unread += len(payload)
        self._rcv_nxt = seq + 1
        # the ack: _process_ack's window update, then _ack_through's one packet
        if seq > self._wl1 or (seq == self._wl1 and ack >= self._wl2):
            self._wl1, self._wl2 = seq, ack
            if self._peer_rwnd == 0 and rwnd > 0:
                self._zwp_at = None
            self._peer_rwnd = rwnd
        if sent is None:
            return True  # nothing newly acked
        una = ack - 1
        del self._inflight[una]
        self.unacked_bytes -= len(sent.payload)
        self._by_time.pop(una, None)
        self._high_delivered = una
        rtt = now - sent.sent_at
        self._rack_sent_at = sent.sent_at
        self._rack_seq = una
        self._rack_rtt = rtt
        self._snd_una = ack
        self._rtt_sample(rtt)
        self._delivered_since_probe = True
        self._rto_expiries = 0
        self._rto_at = None
        self._tlp_at = None
        self._cc.on_delivered(1, self._window_limit())
        self._detect_losses(now)
        return True

    def _accept(self, seq: int, flags: int, payload: memoryview | bytes) -> None:
        self._received = True
        if flags & p.END and (self._remote_end is None or seq < self._remote_end):
            self._remote_end = seq
            for beyond in [s for s in self._ooo if s > seq]:  # sent past its own END: dropped
                del self._ooo[beyond]
            self._ranges = [[start, min(end, seq + 1)] for start, end in self._ranges if start <= seq]
        if self._remote_end is not None and seq > self._remote_end:
            return  # past the peer's END: acked, never delivered
        if seq == self._rcv_nxt and seq in self._ooo:
            if self._unread < self._window:
                self._drain_out_of_order()  # this copy is a duplicate of the one held
        elif seq == self._rcv_nxt:
            if flags & p.DATA:
                if self._unread >= self._window:
                    return  # the reader is a window behind: the peer resends later
                self.incoming.append(payload)
                self._unread += len(payload)
            self._rcv_nxt += 1
            if self._ooo:
                self._drain_out_of_order()
        elif seq - self._rcv_nxt < self._max_ooo and seq not in self._ooo:
            self._ooo[seq] = (flags, bytes(payload) if flags & p.DATA else b"")
            self._add_range(seq)
        self._check_remote_end()

    def _check_remote_end(self) -> None:
        if self._remote_end is not None and self._rcv_nxt > self._remote_end and not self._ended_remote:
            self._ended_remote = True
            self.events.append(Ended())
            if self._ooo:
                self._ooo.clear()
                self._ranges.clear()

    def _drain_out_of_order(self) -> None:
        ooo = self._ooo
        while self._rcv_nxt in ooo:
            if self._unread >= self._window:
                break
            _flags, payload = ooo.pop(self._rcv_nxt)
            if payload:
                self.incoming.append(payload)
                self._unread += len(payload)
            self._rcv_nxt += 1
        ranges = self._ranges
        while ranges and ranges[0][1] <= self._rcv_nxt:
            ranges.pop(0)
        if ranges and ranges[0][0] < self._rcv_nxt:
            ranges[0][0] = self._rcv_nxt

    def _add_range(self, seq: int) -> None:
        """Keep ``_ranges`` the sorted, merged ``[start, end)`` ranges of buffered packets."""
        ranges = self._ranges
        lo, hi = 0, len(ranges)
        while lo < hi:
            mid = (lo + hi) // 2
            if ranges[mid][0] <= seq:
                lo = mid + 1
            else:
                hi = mid
        before = ranges[lo - 1] if lo else None
        after = ranges[lo] if lo < len(ranges) else None
        if before is not None and before[1] == seq:
            before[1] = seq + 1
            if after is not None and after[0] == seq + 1:
                before[1] = after[1]
                del ranges[lo]
        elif after is not None and after[0] == seq + 1:
            after[0] = seq
        else:
            ranges.insert(lo, [seq, seq + 1])

    def consumed(self, size: int) -> None:
        """The reader took ``size`` bytes of what ``incoming`` held: the window reopens."""
        was_shut = self._rwnd() < 2 * self.max_payload
        self._unread = max(0, self._unread - size)
        if self._ooo and self._rcv_nxt in self._ooo and self._unread < self._window:
            self._drain_out_of_order()  # what waited above a full window, into incoming
            self._check_remote_end()
            self._ack_due = self.connected  # the cumulative ack moved
        if was_shut and self._rwnd() >= 2 * self.max_payload and self.connected:
            self._ack_due = True  # tell a peer that saw a closed window

    def _receive_while_lingering(self, datagram: memoryview) -> None:
        """After a graceful close, re-ack a retransmitted END (a short TIME_WAIT)."""
        if self.error is None and datagram[2] & (p.DATA | p.END):
            self._ack_due = True

    # ------------------------------------------------------------------- acks

    def _process_ack(
        self, flags: int, seq: int, ack: int, rwnd: int, body: memoryview, data_offset: int, now: float
    ) -> None:
        if ack > self._snd_nxt:
            return
        if ack >= self._snd_una and (seq > self._wl1 or (seq == self._wl1 and ack >= self._wl2)):
            if seq - self._rcv_nxt < self._max_ooo:
                self._wl1, self._wl2 = seq, ack
            opened = self._peer_rwnd == 0 and rwnd > 0
            self._peer_rwnd = rwnd
            if opened:
                self._zwp_at = None
        delivered = 0
        progress = ack > self._snd_una
        if progress:
            delivered += self._ack_through(ack, now)
        if flags & p.SACK:
            area = body[:data_offset] if 0 < data_offset < len(body) else body
            delivered += self._apply_sacks(area, now)
        if not delivered and not progress:
            return
        self._delivered_since_probe = True  # a probe is allowed again (not only after an RTT sample)
        if progress:
            self._rto_expiries = 0
            self._rto_at = None
            self._tlp_at = None
            if self._change_seq is not None and ack >= self._change_seq:
                self._change_seq = None
                self.events.append(RemoteChanged())
            if self._state is not _State.OPEN and ack > self._high_seq:
                self._state = _State.OPEN
        if delivered and self._state is not _State.RECOVERY:
            self._cc.on_delivered(delivered, self._window_limit())
        if self._probing and not self._probe_size:
            self._probe_size = min(self.mtu + MTU_STEP, self._max_mtu)
        self._detect_losses(now)
        self._check_ended(now)

    def _window_limit(self) -> int:
        return max(self._peer_rwnd // self.max_payload, 16)

    def _ack_through(self, ack: int, now: float) -> int:
        """Free every packet below ``ack``; returns how many were newly delivered."""
        inflight = self._inflight
        by_time = self._by_time
        delivered = 0
        newest: _Sent | None = None
        for seq in range(self._snd_una, ack):
            sent = inflight.pop(seq, None)
            if sent is None:
                continue
            self.unacked_bytes -= len(sent.payload)
            if sent.sacked:
                self._sacked -= 1
                continue
            by_time.pop(seq, None)
            delivered += 1
            newest = sent
            self._on_delivered(sent, now)
        self._snd_una = ack
        if newest is not None and not newest.retransmitted:
            self._rtt_sample(now - newest.sent_at)
        ranges = self._sack_ranges
        while ranges and ranges[0][1] <= ack:
            del ranges[0]
        if ranges and ranges[0][0] < ack:
            ranges[0][0] = ack
        return delivered

    def _apply_sacks(self, area: memoryview, now: float) -> int:
        """Mark the packets in valid SACK blocks delivered; each seq is visited once ever."""
        delivered = 0
        inflight = self._inflight
        for wire_start, wire_end in p.decode_sacks(area):
            start = p.unwrap(wire_start, self._snd_una)
            end = p.unwrap(wire_end, self._snd_una)
            if not (start < end <= self._snd_nxt and start >= self._snd_una):
                continue
            for first, last in self._newly_sacked(start, end):
                for seq in range(first, last):
                    sent = inflight.get(seq)
                    if sent is None or sent.sacked:
                        continue
                    sent.sacked = True
                    self._sacked += 1
                    self.unacked_bytes -= len(sent.payload)
                    sent.payload = b""
                    self._by_time.pop(seq, None)
                    delivered += 1
                    self._on_delivered(sent, now)
        return delivered

    def _newly_sacked(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not SACKed before; records the whole range as SACKed."""
        ranges = self._sack_ranges
        index = bisect.bisect_left(ranges, [start, start])
        if index and ranges[index - 1][1] >= start:
            index -= 1
        pieces: list[tuple[int, int]] = []
        cursor = start
        merged_start, merged_end = start, end
        last = index
        while last < len(ranges) and ranges[last][0] <= end:
            known_start, known_end = ranges[last]
            if known_start > cursor:
                pieces.append((cursor, known_start))
            cursor = max(cursor, known_end)
            merged_start = min(merged_start, known_start)
            merged_end = max(merged_end, known_end)
            last += 1
        if cursor < end:
            pieces.append((cursor, end))
        ranges[index:last] = [[merged_start, merged_end]]
        return pieces

    def _on_delivered(self, sent: _Sent, now: float) -> None:
        """RACK bookkeeping and MTU probe results for one delivered packet."""
        seq = sent.seq
        if sent.lost:
            sent.lost = False  # delivered after all: its heap entry is skipped
        if not sent.retransmitted and seq < self._high_delivered:
            self._reordering = True
        if seq > self._high_delivered:
            self._high_delivered = seq
        rtt = now - sent.sent_at
        ambiguous = sent.retransmitted and rtt < self._min_rtt
        if not ambiguous and (
            sent.sent_at > self._rack_sent_at or (sent.sent_at == self._rack_sent_at and seq > self._rack_seq)
        ):
            self._rack_sent_at = sent.sent_at
            self._rack_seq = seq
            self._rack_rtt = rtt
        if seq == self._probe_seq:
            self._probe_seq = None
            self.mtu = self._probe_size
            self._probe_failures = 0
            if self.mtu >= self._max_mtu:
                self._probing = False
            else:
                self._probe_size = min(self.mtu + MTU_STEP, self._max_mtu)

    def _rtt_sample(self, rtt: float) -> None:
        self._min_rtt = min(self._min_rtt, rtt)
        if self._srtt == 0.0:
            rtt = min(rtt, MAX_RTO)
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            if rtt > 5.0 and rtt > self._srtt + 5 * self._rttvar:
                rtt = min(self._srtt + 5 * self._rttvar, MAX_RTO)
            self._rttvar = (3 * self._rttvar + abs(self._srtt - rtt)) / 4
            self._srtt = (7 * self._srtt + rtt) / 8
        self.rto = min(max(self._srtt + 4 * self._rttvar, self._min_rto), MAX_RTO)

    @property
    def srtt(self) -> float:
        """The smoothed round-trip time in seconds (0 before the first sample)."""
        return self._srtt

    # ----------------------------------------------------------------- losses

    def _reorder_window(self) -> float:
        if not self._reordering and (self._state is not _State.OPEN or self._sacked >= 3):
            return 0.0
        return min(self._min_rtt / 4, self._srtt)

    def _detect_losses(self, now: float) -> None:
        """RACK: a packet sent before the newest delivered one is lost after rtt + reo_wnd."""
        self._rack_at = None
        if self._rack_sent_at < 0 or not self._by_time:
            return
        limit = self._rack_rtt + self._reorder_window()
        rack_sent_at = self._rack_sent_at
        rack_seq = self._rack_seq
        lost: list[_Sent] = []
        for sent in self._by_time.values():
            if sent.sent_at > rack_sent_at or (sent.sent_at == rack_sent_at and sent.seq >= rack_seq):
                break
            deadline = sent.sent_at + limit
            if now >= deadline:
                lost.append(sent)
            else:
                self._rack_at = deadline
                break
        if lost:
            self._mark_lost(lost, now)

    def _mark_lost(self, lost: list[_Sent], now: float) -> None:
        if self._state is _State.OPEN:
            self.stats.loss_events += 1
            self._state = _State.RECOVERY
            self._high_seq = self._snd_nxt
            self._cc.on_loss_event(len(self._by_time))
        for sent in lost:
            self._set_lost(sent)

    def _set_lost(self, sent: _Sent) -> None:
        """Out of the flight and into the retransmission queue; a lost MTU probe counts."""
        self._by_time.pop(sent.seq, None)
        sent.lost = True
        heapq.heappush(self._lost, sent.seq)
        if sent.seq == self._probe_seq:
            self._probe_seq = None
            self._probe_failures += 1
            if self._probe_failures >= MTU_PROBES:
                self._probing = False

    # ----------------------------------------------------------------- timers

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (loop time, seconds), or None."""
        # straight-line, not a loop over a tuple: it runs twice per packet
        soonest = self._rto_at
        deadline = self._tlp_at
        if deadline is not None and (soonest is None or deadline < soonest):
            soonest = deadline
        deadline = self._rack_at
        if deadline is not None and (soonest is None or deadline < soonest):
            soonest = deadline
        deadline = self._keepalive_at
        if deadline is not None and (soonest is None or deadline < soonest):
            soonest = deadline
        if self._zwp_at is not None or self._linger_until is not None:  # rare: window probe, linger
            for deadline in (self._zwp_at, self._linger_until):
                if deadline is not None and (soonest is None or deadline < soonest):
                    soonest = deadline
        return soonest

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed, then ``flush``."""
        if self.closed:
            if self._linger_until is not None and now >= self._linger_until:
                self._linger_until = None
            self.flush(now)
            return
        if self._rack_at is not None and now >= self._rack_at:
            self._detect_losses(now)
        if self._tlp_at is not None and now >= self._tlp_at:
            self._tlp_at = None
            self._tail_loss_probe(now)
        if self._rto_at is not None and now >= self._rto_at:
            self._retransmission_timeout(now)
            if self.closed:
                return
        if self._zwp_at is not None and now >= self._zwp_at:
            self._zero_window_probe(now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            if not self._inflight:
                self._send_heartbeat()
        self.flush(now)

    @property
    def lingering(self) -> bool:
        """Closed gracefully, but still re-acking a retransmitted END for a short while."""
        return self.closed and self._linger_until is not None

    def _arm_timers(self, now: float) -> None:
        if self._inflight:
            if self._rto_at is None:
                self._rto_at = now + self.rto  # also when all is SACKed: the ack may never come
            if self._tlp_at is None and self._by_time:
                self._arm_tlp(now)  # in recovery too: with a small window the RTO is 1 s away
        else:
            self._rto_at = None
            self._tlp_at = None
        self._arm_keepalive(now)

    def _arm_keepalive(self, now: float) -> None:
        if self._keepalive is not None and self.connected and not self._inflight:
            self._keepalive_at = now + self._keepalive
        else:
            self._keepalive_at = None

    def _arm_tlp(self, now: float) -> None:
        if self._srtt == 0.0:
            pto = TLP_NO_SAMPLE
        else:
            pto = 2 * self._srtt + (0.002 if len(self._by_time) == 1 else 0.0)
        if self._rto_at is not None:
            pto = min(pto, max(0.0, self._rto_at - now))
        self._tlp_at = now + pto

    def _tail_loss_probe(self, now: float) -> None:
        if not self._delivered_since_probe or not self._inflight:
            return
        self._delivered_since_probe = False
        if self._queue or (self._end_requested and self._end_seq is None):
            self._send_one_new(now)
            self._tlp_at = None
        else:
            newest = next(reversed(self._inflight.values()))
            if not newest.sacked:
                if newest.lost:
                    newest.lost = False
                self._resend(newest, now)
        self._rto_at = now + self.rto

    def _retransmission_timeout(self, now: float) -> None:
        self.stats.timeouts += 1
        self._rto_expiries += 1
        if self._only_our_end_unacked() and self._rto_expiries >= END_RETRIES:
            # The remote ended, has every byte, and libudx closes with no TIME_WAIT: the ack
            # of our END was lost and no one is left to resend it. Nothing is lost: close.
            self._close(None, now, linger=False)
            return
        if self._rto_expiries >= RTO_GIVE_UP:
            elapsed = self.rto * (2 * RTO_GIVE_UP - 1)
            self._close(
                StreamTimeout(
                    f"UDX stream {self.local_id}: no acknowledgement after {RTO_GIVE_UP} retransmission "
                    f"timeouts (about {elapsed:.1f} s)"
                ),
                now,
                linger=False,
            )
            return
        if not self._by_time and not self._lost:
            # all outstanding is SACKed but the cumulative ack does not come: ask for it
            self._send_heartbeat()
            self._rto_at = now + 2 * self.rto
            return
        self._state = _State.LOSS
        self._high_seq = self._snd_nxt
        self._tlp_at = None
        lost = [sent for sent in self._by_time.values() if now >= sent.sent_at + self._rack_rtt]
        oldest = next(iter(self._by_time.values()), None) if self._by_time else None
        if oldest is not None and oldest not in lost:
            lost.insert(0, oldest)
        for sent in lost:
            self._set_lost(sent)
        self._cc.on_timeout(len(self._by_time))
        self._rto_at = now + 2 * self.rto

    def _only_our_end_unacked(self) -> bool:
        """The remote ended, and all we have unacknowledged is a bare END packet."""
        end = self._end_seq
        if not self._ended_remote or end is None or self._snd_una != end or self._snd_nxt != end + 1:
            return False
        packet = self._inflight.get(end)
        return packet is not None and not packet.payload

    def _start_zero_window_probe(self, now: float) -> None:
        if self._zwp_at is None and not self._inflight:
            self._send_heartbeat()
            self._zwp_interval = self.rto
            self._zwp_at = now + self._zwp_interval

    def _zero_window_probe(self, now: float) -> None:
        if self._peer_rwnd > 0 or not (self._queue or (self._end_requested and self._end_seq is None)):
            self._zwp_at = None
            return
        self._send_heartbeat()
        self._zwp_interval = 2 * self.rto
        self._zwp_at = now + self._zwp_interval

    def _send_heartbeat(self) -> None:
        self.outgoing.append(
            (p.encode(p.HEARTBEAT, self.remote_id, self._rwnd(), self._snd_nxt, self._rcv_nxt), self.path)
        )

    # ------------------------------------------------------------------ close

    def _check_ended(self, now: float) -> None:
        if self._end_seq is not None and not self._ended and self._snd_una > self._end_seq:
            self._ended = True
            if not self._ended_remote:
                self._ack_due = True
        if self._ended and self._ended_remote and not self.closed:
            self._close(None, now, linger=True)

    def _close(self, error: Exception | None, now: float, *, linger: bool) -> None:
        self.closed = True
        self.error = error
        self._queue.clear()
        self.queued = 0
        self._inflight.clear()
        self._by_time.clear()
        self._lost.clear()
        self._ooo.clear()
        self._ranges.clear()
        self.unacked_bytes = 0
        self._rto_at = self._rack_at = self._tlp_at = self._zwp_at = self._keepalive_at = None
        self._linger_until = now + 2 * max(self.rto, self._min_rto) if linger and self.connected else None
        self.events.append(Closed(error))
