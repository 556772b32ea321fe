"""The connection's deadlines, sans-I/O: every case by passing times, without sleeping."""

from __future__ import annotations

from peersockets.wire.timers import ConnectionTimers, Due


def timers(now: float = 100.0, **settings: float) -> ConnectionTimers:
    options = {"handshake_timeout": 10.0, "keepalive": 5.0, "close_timeout": 2.0} | settings
    return ConnectionTimers(now, **options)


def test_the_handshake_must_finish_within_its_timeout_of_the_start() -> None:
    t = timers(100.0)
    assert t.get_timer() == 110.0
    assert t.handle_timer(109.999) is None  # a timer that fires early does nothing
    assert t.handle_timer(110.0) is Due.HANDSHAKE_TIMEOUT
    assert t.handle_timer(120.0) is None  # reported once


def test_finishing_the_handshake_ends_its_deadline_and_starts_the_keepalive_clock() -> None:
    t = timers(100.0)
    t.established(103.0)
    assert t.get_timer() == 108.0
    assert t.handle_timer(110.0) is Due.KEEPALIVE  # not a handshake timeout
    assert t.get_timer() == 115.0  # the keepalive counts as written at 110


def test_a_keepalive_is_owed_only_after_keepalive_seconds_without_writing() -> None:
    t = timers(0.0)
    t.established(0.0)
    t.wrote(4.0)
    assert t.handle_timer(5.0) is None  # the timer armed for 5.0 finds nothing due
    assert t.get_timer() == 9.0
    assert t.handle_timer(9.0) is Due.KEEPALIVE
    assert t.handle_timer(9.5) is None and t.get_timer() == 14.0


def test_no_keepalive_before_the_handshake() -> None:
    t = timers(0.0, handshake_timeout=0.0)
    t.wrote(1.0)
    assert t.get_timer() is None and t.handle_timer(1000.0) is None


def test_closing_gives_the_remote_close_timeout_and_stops_keepalives() -> None:
    t = timers(0.0)
    t.established(1.0)
    t.closing(3.0)
    assert t.get_timer() == 5.0
    assert t.handle_timer(4.0) is None
    assert t.handle_timer(5.0) is Due.CLOSE_TIMEOUT
    assert t.get_timer() is None


def test_closing_during_the_handshake_replaces_its_deadline() -> None:
    t = timers(0.0)
    t.closing(1.0)
    assert t.get_timer() == 3.0 and t.handle_timer(3.0) is Due.CLOSE_TIMEOUT


def test_zero_disables_each_deadline() -> None:
    t = timers(0.0, handshake_timeout=0.0, keepalive=0.0, close_timeout=0.0)
    assert t.get_timer() is None
    t.established(1.0)
    t.wrote(2.0)
    assert t.get_timer() is None
    t.closing(3.0)
    assert t.get_timer() is None and t.handle_timer(1e9) is None


def test_nothing_is_due_once_the_connection_has_ended() -> None:
    t = timers(0.0)
    t.established(1.0)
    t.closing(2.0)
    t.ended()
    assert t.get_timer() is None and t.handle_timer(1e9) is None
    t.established(3.0)
    t.closing(4.0)
    assert t.get_timer() is None
