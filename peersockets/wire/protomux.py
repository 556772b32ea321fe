"""protomux: many channels, paired by (protocol, id), over one framed message stream.

Sans-I/O: ``receive_frame`` takes one decrypted message and calls the channel
handlers synchronously; ``take_frames`` returns what to send: everything
queued since the last call, packed as batch frames of at most 8 MiB (a lone
message stays a plain frame). ``on_output`` tells the owner that something
was queued while the mux is not corked; ``cork``/``uncork`` hold it back, as
protomux's do, so that what is queued meanwhile goes as one batch. An owner
may also take a lone message's frame at once (``write_lone``), the round
trip's common case, without it being queued first.

Received work is bounded: each message (a batch item counts as one) spends
one unit of ``item_budget``, and a batch stops between items when the budget
is spent or the owner sets ``halted`` (it holds reading); the rest of the
frame stays unparsed until ``resume_batch()``. So one frame of millions of
tiny items cannot block the loop or pass a queue's bound.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from ..errors import ChannelClosed, ChannelError, DecodeError, MessageTooLarge
from .encoding import (
    Buffer,
    decode_optional_buffer,
    decode_string,
    decode_uint,
    encode_optional_buffer,
    encode_string,
    encode_uint,
)
from .secretstream import MAX_MESSAGE

BATCH, OPEN, REJECT, CLOSE = 0, 1, 2, 3
MAX_BATCH = 8 * 1024 * 1024
# protomux seals a batch once it reaches MAX_BATCH, before adding the next message:
# no item of a JavaScript batch starts past MAX_BATCH plus its few header bytes.
_LAST_ITEM_START = MAX_BATCH + 64
_UINT1 = [bytes((i,)) for i in range(0xFD)]


def _uint(value: int) -> bytes:
    return _UINT1[value] if value <= 0xFC else encode_uint(value)


class ChannelHandler(Protocol):
    """What a channel's owner is told, synchronously, from inside the mux."""

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        """Both sides opened the channel; ``handshake`` is the remote's handshake bytes."""

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        """A message arrived; ``payload`` is only valid during the call."""

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        """The channel closed (or was rejected before it opened, or the stream ended)."""


class ChannelState(Enum):
    """Where a local channel is in its life."""

    OPENING = "opening"  # our open is sent; the remote's has not come
    OPEN = "open"  # both sides opened the same (protocol, id)
    CLOSED = "closed"  # closed by either side, or its stream ended
    REJECTED = "rejected"  # the remote answered our open with a reject


# Module-level names for the states the hot path compares: an Enum member lookup
# (ChannelState.OPEN) costs about 50 ns, a global a few.
_OPENING, _OPEN = ChannelState.OPENING, ChannelState.OPEN
_CLOSED, _REJECTED = ChannelState.CLOSED, ChannelState.REJECTED


class Channel:
    """One local channel, paired with the remote's open of the same (protocol, id)."""

    __slots__ = (
        "handler",
        "id",
        "local_id",
        "mux",
        "protocol",
        "remote_id",
        "state",
    )

    def __init__(
        self, mux: Mux, protocol: str, id: bytes | None, handler: ChannelHandler, local_id: int
    ) -> None:
        self.mux = mux
        self.protocol = protocol
        self.id = id
        self.handler = handler
        self.local_id = local_id
        self.remote_id = 0
        self.state = ChannelState.OPENING

    @property
    def opened(self) -> bool:
        """Whether both sides have opened the channel (and it is not closed)."""
        return self.state is _OPEN

    @property
    def closed(self) -> bool:
        """Whether the channel is closed, rejected, or its stream ended."""
        state = self.state
        return state is _CLOSED or state is _REJECTED

    @property
    def rejected(self) -> bool:
        """Whether the remote answered our open with a reject."""
        return self.state is _REJECTED

    def send(self, message_type: int, payload: Buffer) -> None:
        """Queue a message of this channel's ``message_type``."""
        self.mux.send(self, message_type, payload)

    def close(self) -> None:
        """Close this channel (the remote is told; no reply is expected)."""
        self.mux.close(self)

    def __repr__(self) -> str:
        ident = self.id.hex()[:16] if self.id else "-"
        return (
            f"Channel({self.protocol!r}, {ident}, local={self.local_id}, remote={self.remote_id})"
        )


class _RemoteOpen:
    """A remote open, paired with a local channel (or, during a pair callback, not yet)."""

    __slots__ = ("channel", "handshake", "id", "protocol")

    def __init__(self, protocol: str, id: bytes | None, handshake: bytes) -> None:
        self.protocol = protocol
        self.id = id
        self.handshake = handshake
        self.channel: Channel | None = None


class _ControlHandler:
    """Channel 0 carries control messages (open, reject, close, batch); nobody handles it."""

    def channel_opened(self, channel: Channel, handshake: bytes) -> None:
        pass

    def channel_message(self, channel: Channel, message_type: int, payload: memoryview) -> None:
        pass

    def channel_closed(self, channel: Channel, by_remote: bool) -> None:
        pass


PairCallback = Callable[[str, bytes | None], None]
"""Called with (protocol, id) of a remote open that no local channel waits for."""


class Mux:
    """The protomux state of one stream."""

    def __init__(
        self,
        *,
        on_output: Callable[[], None] | None = None,
        on_full: Callable[[], None] | None = None,
        flush_threshold: int = 256 * 1024,
        max_channels: int = 1024,
    ) -> None:
        self._pairing: dict[tuple[str, bytes | None], list[PairCallback]] = {}
        self.on_output = on_output
        self.on_full = on_full
        self.flush_threshold = flush_threshold
        self.max_channels = max_channels
        self._local: list[Channel | None] = []
        self._free: list[int] = []
        # Remote channel id -> its open, for live channels only: an open we reject costs
        # nothing, so a peer with thousands of cores (one open each) is answered, not ended.
        self._remote: dict[int, _RemoteOpen] = {}
        self._remote_peak = 0  # the highest remote id seen; a new id may pass it by one
        self._outgoing: dict[tuple[str, bytes | None], list[int]] = {}
        self._incoming: dict[tuple[str, bytes | None], list[int]] = {}
        # Outgoing: sealed frames, plus the frame being built. A lone message
        # stays a plain frame (_first); a second one turns it into a batch.
        self._frames: list[bytes | bytearray] = []
        self._first: tuple[int, Buffer, Buffer] | None = None
        self._batch: bytearray | None = None
        self._batch_channel = 0
        self._batch_bytes = 0
        self._queued_bytes = 0
        self._corked = 0
        self._destroyed = False
        self.open_channels = 0
        """Channels paired both ways now."""
        self.write_lone: Callable[[bytes], bool] | None = None
        """Offered the frame of a message sent while nothing is queued and the mux is not
        corked (or the last cork is undone with just it queued); returns True if it wrote
        it, False to have it queued as usual."""
        self.on_channels: Callable[[bool], None] | None = None
        """Called with True when the first channel pairs, False when the last one closes."""
        self.item_budget = sys.maxsize
        """Messages (batch items count one each) left to handle before a batch stops."""
        self.halted = False
        """Set by the owner while it holds reading: a batch stops before its next item."""
        self._cursor: tuple[memoryview, int, int, int] | None = None  # a stopped batch
        self.unfinished_batch = False
        """A batch stopped midway (budget spent or halted) and waits for resume_batch()."""
        self._control = Channel(self, "", None, _ControlHandler(), 0)  # channel 0: control
        self._control.state = ChannelState.OPEN

    # -- local side ---------------------------------------------------------------

    def pair(self, protocol: str, id: bytes | None, callback: PairCallback) -> None:
        """Call ``callback(protocol, id)`` when the remote opens (protocol, id) unasked.

        The callback may open the matching channel, which pairs at once; an open
        nobody claims is rejected. ``id=None`` registers for every id of the
        protocol (a callback for the exact id is asked first), as protomux's
        ``pair`` does.
        """
        self._pairing.setdefault((protocol, id or None), []).append(callback)

    def unpair(self, protocol: str, id: bytes | None, callback: PairCallback) -> None:
        """Undo pair()."""
        key = (protocol, id or None)
        callbacks = self._pairing.get(key)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._pairing[key]

    def open(
        self, protocol: str, id: bytes | None, handshake: Buffer, handler: ChannelHandler
    ) -> Channel:
        """Open a channel; pairs at once if the remote already opened the same one."""
        if self._destroyed:
            raise ChannelClosed("cannot open a channel: the stream has ended")
        if self._free:
            local_id = self._free.pop() + 1
        else:
            self._local.append(None)
            local_id = len(self._local)
        channel = Channel(self, protocol, id or None, handler, local_id)
        self._local[local_id - 1] = channel
        body = b"".join(
            (_uint(local_id), encode_string(protocol), encode_optional_buffer(id), bytes(handshake))
        )
        self._queue_control(OPEN, body)
        key = (protocol, id or None)
        waiting = self._incoming.get(key)
        if waiting:
            remote_id = waiting.pop(0)
            if not waiting:
                del self._incoming[key]
            slot = self._remote[remote_id]
            assert slot is not None
            self._pair(channel, remote_id, slot)
        else:
            self._outgoing.setdefault(key, []).append(local_id)
        return channel

    def send(self, channel: Channel, message_type: int, payload: Buffer) -> None:
        """Queue a user message on an open (or opening) channel."""
        self.send_encoded(channel, _uint(message_type), payload)

    def close(self, channel: Channel) -> None:
        """Close a local channel and tell the remote."""
        if channel.closed:
            return
        self._queue_control(CLOSE, _uint(channel.local_id))
        self._close_channel(channel, by_remote=False)

    def destroy(self) -> None:
        """The stream ended: every channel closes as if by the remote."""
        if self._destroyed:
            return
        self._destroyed = True
        self._frames = []
        self._first = self._batch = None
        self._cursor = None
        self.unfinished_batch = False
        for channel in list(self._local):
            if channel is not None:
                self._close_channel(channel, by_remote=True)

    # -- outgoing frames ----------------------------------------------------------

    def cork(self) -> None:
        """Hold output back (on_output is not called) until every cork is uncorked."""
        self._corked += 1

    def uncork(self) -> None:
        """Undo one cork; the last one calls on_output if anything was queued meanwhile
        (a lone message is offered to write_lone first)."""
        self._corked -= 1
        if self._corked or self._destroyed:
            return
        first = self._first
        if first is not None and self._batch is None and not self._frames:
            write_lone = self.write_lone
            if write_lone is not None:
                channel_id, header, payload = first
                if write_lone(b"".join((_uint(channel_id), header, payload))):
                    self._first = None
                    self._batch_bytes = self._queued_bytes = 0
                    return
        if (first is not None or self._frames) and self.on_output is not None:
            self.on_output()

    def _queue_control(self, message_type: int, payload: Buffer) -> None:
        """Queue a control message (channel 0): open, reject, close."""
        self.send_encoded(self._control, _uint(message_type), payload)

    def send_encoded(self, channel: Channel, header: Buffer, payload: Buffer) -> None:
        """Queue ``header || payload`` (the header starts with the message type) on a channel.

        For senders that cache their headers (hypercore's extension names), with the
        checks send() makes. What is queued goes into the batch being built;
        on_output is called when the mux goes from nothing to send to something, uncorked.
        """
        state = channel.state
        if state is not _OPEN and state is not _OPENING:
            raise ChannelClosed(f"{channel!r} is closed")
        size = len(header) + len(payload)
        if size + 9 > MAX_MESSAGE:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes does not fit in one frame ({MAX_MESSAGE} bytes)"
            )
        channel_id = channel.local_id
        first = self._first
        if first is None and not (self._corked or self._frames or self._destroyed):
            write_lone = self.write_lone  # nothing queued: a lone message may go at once
            if write_lone is not None and write_lone(
                b"".join((_uint(channel_id), header, payload))
            ):
                return
        if self._destroyed:
            return
        if first is not None and self._batch_bytes + size + 32 > MAX_BATCH:
            self._seal()
            first = None
        if first is None:
            self._first = (channel_id, header, payload)
            self._batch_bytes = size
            self._queued_bytes += size
            if len(self._frames) == 0 and not self._corked and self.on_output is not None:
                self.on_output()
                return
        else:
            batch = self._batch
            if batch is None:
                first_id, first_header, first_payload = first
                batch = bytearray(b"\x00\x00")
                batch += _uint(first_id)
                batch += _uint(len(first_header) + len(first_payload))
                batch += first_header
                batch += first_payload
                self._batch = batch
                self._batch_channel = first_id
            if channel_id != self._batch_channel:
                batch += b"\x00"
                batch += _uint(channel_id)
                self._batch_channel = channel_id
            if size <= 0xFC:
                batch.append(size)
            else:
                batch += encode_uint(size)
            batch += header
            batch += payload
            self._batch_bytes += size
            self._queued_bytes += size
        if self._queued_bytes >= self.flush_threshold and self.on_full is not None:
            self.on_full()

    def _seal(self) -> None:
        first = self._first
        if first is None:
            return
        if self._batch is not None:
            self._frames.append(self._batch)  # handed over: the next batch is a new bytearray
            self._batch = None
        else:
            channel_id, header, payload = first
            self._frames.append(b"".join((_uint(channel_id), header, payload)))
        self._first = None
        self._batch_bytes = 0

    def take_frames(self) -> list[bytes | bytearray]:
        """What is queued, as frames: a lone message as a plain frame, more as batches of <= 8 MiB."""
        first = self._first
        if first is not None and self._batch is None and not self._frames:  # the lone message
            self._first = None
            self._batch_bytes = self._queued_bytes = 0
            channel_id, header, payload = first
            return [b"".join((_uint(channel_id), header, payload))]
        self._seal()
        frames = self._frames
        self._frames = []
        self._queued_bytes = 0
        return frames

    # -- incoming frames ----------------------------------------------------------

    def receive_frame(self, frame: bytes | bytearray) -> bool:
        """Handle one decrypted message; False if a batch stopped midway (see resume_batch).

        Raises ProtocolError on invalid control messages.
        """
        if not frame or self._destroyed:
            return True
        self.item_budget -= 1
        channel_id = frame[0]
        if 0 < channel_id <= 0xFC and len(frame) > 1 and frame[1] <= 0xFC:
            # the common case: a one-byte channel id and message type
            slot = self._remote.get(channel_id)
            if slot is not None and (channel := slot.channel) is not None:
                channel.handler.channel_message(channel, frame[1], memoryview(frame)[2:])
            return True
        view = memoryview(frame)
        channel_id, pos = decode_uint(view, 0)
        return self._dispatch(channel_id, view, pos, len(frame), in_batch=False)

    def resume_batch(self) -> bool:
        """Go on with the stopped batch; False if it stopped again."""
        cursor, self._cursor = self._cursor, None
        self.unfinished_batch = False
        if cursor is None or self._destroyed:
            return True
        return self._batch_items(*cursor)

    def _dispatch(
        self, channel_id: int, view: memoryview, pos: int, end: int, in_batch: bool
    ) -> bool:
        message_type, pos = decode_uint(view, pos, end)
        if channel_id == 0:
            if message_type == BATCH:
                if in_batch:
                    raise ChannelError("nested batch frames are not allowed")
                channel_id, pos = decode_uint(view, pos, end)
                return self._batch_items(view, pos, end, channel_id)
            if message_type == OPEN:
                self._on_open(view, pos, end)
            elif message_type == REJECT:
                self._on_reject(view, pos, end)
            elif message_type == CLOSE:
                self._on_close(view, pos, end)
            return True
        slot = self._remote.get(channel_id)
        if slot is None:
            return True  # closed or unknown channel: ignored, as protomux does
        channel = slot.channel
        if channel is not None:
            channel.handler.channel_message(channel, message_type, view[pos:end])
        return True

    def _batch_items(self, view: memoryview, pos: int, end: int, channel_id: int) -> bool:
        """Handle a batch's items from ``pos``; stop (keeping a cursor) when the budget is
        spent or the owner halts. False if stopped."""
        remote = self._remote
        budget = self.item_budget
        last_start = _LAST_ITEM_START
        while pos < end:
            if budget <= 0 or self.halted:
                self._cursor = (view, pos, end, channel_id)
                self.unfinished_batch = True
                self.item_budget = budget
                return False
            if pos > last_start:
                raise DecodeError(
                    f"batch item at offset {pos} starts past the batch limit of {MAX_BATCH} bytes"
                )
            budget -= 1
            length = view[pos]
            if length <= 0xFC:
                pos += 1
            else:
                length, pos = decode_uint(view, pos, end)
            if length == 0:
                channel_id, pos = decode_uint(view, pos, end)
                continue
            item_end = pos + length
            if item_end > end:
                if pos >= end:
                    raise DecodeError(f"batch item of {length} bytes is truncated at offset {pos}")
                item_end = end
            slot = remote.get(channel_id)
            channel = slot.channel if slot is not None else None
            message_type = view[pos]
            if channel is not None and message_type <= 0xFC:
                channel.handler.channel_message(channel, message_type, view[pos + 1 : item_end])
            elif channel_id == 0 or channel is not None:
                self._dispatch(channel_id, view, pos, item_end, in_batch=True)
            pos = item_end
            if self._destroyed:
                return True
        self.item_budget = budget
        return True

    def _on_open(self, view: memoryview, pos: int, end: int) -> None:
        remote_id, pos = decode_uint(view, pos, end)
        protocol, pos = decode_string(view, pos, end)
        id, pos = decode_optional_buffer(view, pos, end)
        handshake = bytes(view[pos:end])
        if remote_id == 0:
            return  # protomux never pairs the control channel
        remote = self._remote
        if remote_id > self._remote_peak + 1 or remote_id in remote:
            # as protomux: a new id may pass the highest seen by one; a live id is not reused
            raise ChannelError(
                f"invalid open: remote channel id {remote_id}"
                f" ({'already open' if remote_id in remote else 'skips ahead'};"
                f" highest seen {self._remote_peak})"
            )
        self._remote_peak = max(self._remote_peak, remote_id)
        key = (protocol, id)
        slot = _RemoteOpen(protocol, id, handshake)
        waiting = self._outgoing.get(key)
        if waiting:
            local_id = waiting.pop(0)
            if not waiting:
                del self._outgoing[key]
            channel = self._local[local_id - 1]
            if channel is None or channel.local_id != local_id:
                # We closed it before the remote answered. Our close may have reached the
                # remote before its channel paired (a JavaScript peer pairs asynchronously)
                # and been ignored there: say it again, then free the id.
                self._queue_control(CLOSE, _uint(local_id))
                self._free.append(local_id - 1)
                return
            remote[remote_id] = slot
            self._pair(channel, remote_id, slot)
            return
        if len(remote) >= self.max_channels:
            self._queue_control(REJECT, _uint(remote_id))  # past the limit: answered, no state kept
            return
        remote[remote_id] = slot
        self._incoming.setdefault(key, []).append(remote_id)
        callbacks = self._pairing.get(key, []) + self._pairing.get((protocol, None), [])
        for callback in callbacks:
            callback(protocol, id)
            if slot.channel is not None or remote.get(remote_id) is not slot:
                return  # claimed
        self._reject(key, remote_id)

    def _pair(self, channel: Channel, remote_id: int, slot: _RemoteOpen) -> None:
        slot.channel = channel
        channel.remote_id = remote_id
        channel.state = ChannelState.OPEN
        self.open_channels += 1
        if self.open_channels == 1 and self.on_channels is not None:
            self.on_channels(True)
        channel.handler.channel_opened(channel, slot.handshake)

    def _reject(self, key: tuple[str, bytes | None], remote_id: int) -> None:
        waiting = self._incoming.get(key)
        if waiting and remote_id in waiting:
            waiting.remove(remote_id)
            if not waiting:
                del self._incoming[key]
        del self._remote[remote_id]
        self._queue_control(REJECT, _uint(remote_id))

    def _on_reject(self, view: memoryview, pos: int, end: int) -> None:
        local_id, pos = decode_uint(view, pos, end)
        for key, waiting in self._outgoing.items():
            if local_id in waiting:
                waiting.remove(local_id)
                if not waiting:
                    del self._outgoing[key]
                break
        else:
            raise ChannelError(f"invalid reject: local channel id {local_id} is not opening")
        self._free.append(local_id - 1)
        channel = self._local[local_id - 1]
        if channel is not None:
            self._close_channel(channel, by_remote=True, state=ChannelState.REJECTED)

    def _on_close(self, view: memoryview, pos: int, end: int) -> None:
        remote_id, pos = decode_uint(view, pos, end)
        slot = self._remote.get(remote_id)
        if slot is not None and slot.channel is not None:
            self._close_channel(slot.channel, by_remote=True)

    def _close_channel(
        self, channel: Channel, by_remote: bool, state: ChannelState = ChannelState.CLOSED
    ) -> None:
        if channel.closed:
            return
        channel.state = state
        was_paired = channel.remote_id > 0
        if was_paired:
            self._remote.pop(channel.remote_id, None)
            channel.remote_id = 0
            self._free.append(channel.local_id - 1)
            self.open_channels -= 1
            if self.open_channels == 0 and self.on_channels is not None:
                self.on_channels(False)
        if self._local[channel.local_id - 1] is channel:
            self._local[channel.local_id - 1] = None
        channel.handler.channel_closed(channel, by_remote)
