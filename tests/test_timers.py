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


def test_a_keepalive_is_owed_only_after_a_keepalive_period_without_writing() -> None:
    """Writes are marked without a time and checked when the deadline comes (as in
    JavaScript's secret-stream): a keepalive goes out within one to two periods."""
    t = timers(0.0)
    t.established(0.0)
    t.wrote()  # at 4
    assert t.handle_timer(5.0) is None  # written since: the clock moves on from 5
    assert t.get_timer() == 10.0
    assert t.handle_timer(10.0) is Due.KEEPALIVE  # silent since 4: 6 s
    assert t.handle_timer(10.5) is None and t.get_timer() == 15.0


def test_no_keepalive_before_the_handshake() -> None:
    t = timers(0.0, handshake_timeout=0.0)
    t.wrote()
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
    t.wrote()
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


def idle(now: float = 0.0, **settings: float) -> ConnectionTimers:
    """Timers with only the deadline under test (and the ones given) enabled."""
    options = {"handshake_timeout": 0.0, "keepalive": 0.0, "close_timeout": 0.0} | settings
    return ConnectionTimers(now, **options)


def test_a_connection_with_no_channel_open_is_due_for_a_pair_timeout() -> None:
    t = idle(pair_timeout=10.0)
    assert t.get_timer() is None  # not before the handshake: handshake_timeout covers that
    t.established(1.0)
    assert t.get_timer() == 11.0
    t.channels_changed(5.0, True)  # a channel opened in time
    assert t.get_timer() is None and t.handle_timer(100.0) is None
    t.channels_changed(20.0, False)  # the last one closed: the clock starts again
    assert t.get_timer() == 30.0
    assert t.handle_timer(29.9) is None
    assert t.handle_timer(30.0) is Due.PAIR_TIMEOUT
    assert t.get_timer() is None


def test_keepalives_do_not_count_as_pairing() -> None:
    t = idle(pair_timeout=10.0, keepalive=2.0)
    t.established(0.0)
    now = 0.0
    while (due := t.handle_timer(now := t.get_timer() or 0.0)) is Due.KEEPALIVE:
        pass
    assert due is Due.PAIR_TIMEOUT and now == 10.0


def test_a_silent_peer_is_due_for_a_read_timeout_within_one_to_two_periods() -> None:
    """Reads are marked without a time; the deadline checks the mark when it comes."""
    t = idle(read_timeout=15.0)
    t.received()  # before the handshake: no clock
    assert t.get_timer() is None
    t.established(2.0)
    assert t.get_timer() == 17.0
    t.received()  # bytes at 10
    assert t.handle_timer(17.0) is None  # alive: the deadline moves on from 17
    assert t.get_timer() == 32.0
    assert t.handle_timer(32.0) is Due.READ_TIMEOUT  # silent since 10: 22 s, under 2 x 15
    assert t.get_timer() is None


def test_an_unfinished_frame_must_complete_within_frame_timeout() -> None:
    t = idle(frame_timeout=30.0)
    t.established(0.0)
    assert t.frame_state(1.0, unfinished=True, completed=False)  # a frame starts: new deadline
    assert t.frame_pending and t.get_timer() == 31.0
    assert not t.frame_state(20.0, unfinished=True, completed=False)  # more of the same frame
    assert t.get_timer() == 31.0  # progress does not extend it
    assert t.frame_state(25.0, unfinished=True, completed=True)  # done, and the next one starts
    assert t.get_timer() == 55.0
    assert t.handle_timer(55.0) is Due.FRAME_TIMEOUT
    t.frame_state(60.0, unfinished=False, completed=True)
    assert not t.frame_pending and t.get_timer() is None


def test_read_and_frame_clocks_stop_while_reading_is_held() -> None:
    """Backpressure is ours: a remote that cannot send because we do not read is not idle."""
    t = idle(read_timeout=15.0, frame_timeout=30.0)
    t.established(0.0)
    t.frame_state(1.0, unfinished=True, completed=False)
    assert t.get_timer() == 15.0
    t.reading_paused()
    assert t.get_timer() is None and t.handle_timer(1000.0) is None
    t.reading_resumed(1000.0)
    assert t.get_timer() == 1015.0  # read; the frame deadline starts afresh at 1030
    t.received()
    assert t.handle_timer(1015.0) is None  # alive
    assert t.get_timer() == 1030.0 and t.handle_timer(1030.0) is Due.FRAME_TIMEOUT


def test_closing_stops_the_pair_deadline_but_not_the_read_deadline() -> None:
    t = idle(pair_timeout=10.0, read_timeout=15.0)
    t.established(0.0)
    t.closing(1.0)
    t.channels_changed(2.0, False)
    assert t.get_timer() == 15.0 and t.handle_timer(15.0) is Due.READ_TIMEOUT
