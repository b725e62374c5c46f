"""Playhead: play once, loop, ping-pong, reverse, freeze, loop points."""

import pytest

from sonolatent.engine.playhead import LOOP, LOOP_OFF, PING_PONG, Playhead


def run(ph, rate, length, steps):
    trace = []
    for _ in range(steps):
        ph.advance(rate, length)
        trace.append(round(ph.position, 6))
    return trace


def test_off_plays_once_and_ends_at_the_end():
    ph = Playhead()
    ph.mode = LOOP_OFF
    trace = run(ph, 1.0, 10, 15)
    assert trace[:9] == pytest.approx([0.1 * k for k in range(1, 10)])
    assert trace[9:] == [1.0] * 6 and ph.ended


def test_reverse_from_the_end_ends_at_zero():
    ph = Playhead()
    ph.mode = LOOP_OFF
    ph.set_position(1.0)
    trace = run(ph, -2.0, 10, 6)
    assert trace == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0, 0.0]) and ph.ended


def test_rate_zero_freezes():
    ph = Playhead()
    ph.set_position(0.37)
    assert run(ph, 0.0, 10, 5) == [0.37] * 5


def test_loop_wraps_between_loop_points_and_reports_the_wrap():
    ph = Playhead()
    ph.mode = LOOP
    ph.loop_start, ph.loop_end = 0.2, 0.5
    trace, wraps = [], []
    for _ in range(9):
        wraps.append(ph.advance(1.0, 8))
        trace.append(ph.position)
    # steps of 0.125: 0.125 .. 0.5, then 0.625 wraps to 0.325, 0.45, 0.575 -> 0.275, 0.4
    assert trace == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.325, 0.45, 0.275, 0.4, 0.525 - 0.3])
    assert wraps == [False, False, False, False, True, False, True, False, True]


def test_loop_reverse_wraps_from_start_to_end():
    ph = Playhead()
    ph.mode = LOOP
    ph.loop_start, ph.loop_end = 0.2, 0.6
    ph.set_position(0.35)
    trace = run(ph, -1.0, 10, 3)
    assert trace == pytest.approx([0.25, 0.55, 0.45])


def test_ping_pong_turns_round_at_both_ends():
    ph = Playhead()
    ph.mode = PING_PONG
    ph.loop_start, ph.loop_end = 0.0, 0.3
    trace = run(ph, 1.0, 10, 8)
    assert trace == pytest.approx([0.1, 0.2, 0.3, 0.2, 0.1, 0.0, 0.1, 0.2])


def test_swapped_loop_points_are_ordered_and_zero_length_loop_holds():
    ph = Playhead()
    ph.mode = LOOP
    ph.loop_start, ph.loop_end = 0.6, 0.2
    assert ph.loop_points() == (0.2, 0.6)
    ph2 = Playhead()
    ph2.mode = LOOP
    ph2.loop_start = ph2.loop_end = 0.25
    assert run(ph2, 1.0, 10, 6)[-1] == pytest.approx(0.25)


def test_set_position_clamps_and_clears_end():
    ph = Playhead()
    ph.ended = True
    ph.set_position(3.0)
    assert ph.position == 1.0 and not ph.ended
