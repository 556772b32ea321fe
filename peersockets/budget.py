"""One bound on received-but-unprocessed bytes across all of a swarm's connections.

Each connection may hold a frame it has started receiving (up to
max_frame_size) plus what it decrypted but has not handled yet. Alone that is
bounded per connection; summed over thousands of connections it is not. The
budget counts every connection's held bytes past a free allowance (so small
frames never touch it) and, while the sum is over the limit, pauses reading
on a connection whose held bytes grow, unless no other holder is still
reading (paused by nobody): one holder always reads on, so held frames
complete (or hit frame_timeout) and the budget frees up; then the paused ones
resume.

A read is only counted once it is in memory, so each connection that starts
to hold while the sum is over the limit passes it by up to one read. Past
twice the limit, such a connection is ended instead of paused
(ReceiveBudgetExceeded): the sum stays under twice the limit plus what the
one reader that reads on holds.
"""

from __future__ import annotations

from typing import Protocol

from .errors import ReceiveBudgetExceeded

FREE_BYTES = 64 * 1024
"""Held bytes per connection that do not count (the frame cap before a channel opens)."""


class Reader(Protocol):
    """What the budget pauses: a connection."""

    @property
    def is_reading(self) -> bool:
        """Whether nothing holds its reading now."""

    def hold_reading(self, holder: object) -> None: ...

    def release_reading(self, holder: object) -> None: ...

    def abort(self, error: BaseException | None = None) -> None: ...


class ReceiveBudget:
    """The swarm-wide receive-buffer budget (``max_receive_buffer``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        """Counted bytes held by all connections now (may pass limit by one frame per reader)."""
        self._held: dict[Reader, int] = {}
        self._waiting: set[Reader] = set()

    def update(self, reader: Reader, held: int) -> None:
        """``reader`` now holds ``held`` bytes received but not yet handled."""
        counted = held if held > FREE_BYTES else 0
        before = self._held.get(reader, 0)
        if counted == before:
            return
        self.used += counted - before
        if counted:
            self._held[reader] = counted
        else:
            del self._held[reader]
        if counted < before:
            self._release_all()
        elif self.used > self.limit and reader not in self._waiting and self._another_reads(reader):
            if self.used > 2 * self.limit:
                used = self.used
                self.forget(reader)
                reader.abort(
                    ReceiveBudgetExceeded(
                        f"{used} bytes received and not yet handled by all connections,"
                        f" past twice max_receive_buffer ({self.limit}): ended a connection"
                        f" that held {counted} of them"
                    )
                )
                return
            self._waiting.add(reader)
            reader.hold_reading(self)

    def _another_reads(self, reader: Reader) -> bool:
        return any(other is not reader and other.is_reading for other in self._held)

    def forget(self, reader: Reader) -> None:
        """``reader`` is gone: its bytes are free."""
        self._waiting.discard(reader)
        self.update(reader, 0)

    def _release_all(self) -> None:
        """Bytes were freed: the paused readers read again (each re-checks on its next read)."""
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, set()
        for reader in waiting:
            reader.release_reading(self)
