"""The playhead: a normalised position (0 start .. 1 end) shared by every slot.

All slots are aligned by normalised position, so one playhead reads every
sound at the same fraction of its length. ``advance(rate, length)`` moves it by
``rate / length`` per mel frame, where ``length`` is the (blend-weighted) length
of the sounds in mel frames: at rate 1 the sounds play at their own speed.

Loop modes: ``LOOP_OFF`` plays once and stops at the end (``ended`` becomes
true), ``LOOP`` wraps from the loop end to the loop start (or the other way
round when the rate is negative), ``PING_PONG`` turns round at either loop
point. The loop only takes hold once the playhead crosses a loop point in its
direction of travel, so a sound can start before the loop and run into it.
"""

from __future__ import annotations

LOOP_OFF, LOOP, PING_PONG = 0, 1, 2


class Playhead:
    def __init__(self):
        self.position = 0.0
        self.direction = 1.0      # ping-pong turns this round; the rate keeps its sign
        self.mode = LOOP
        self.loop_start = 0.0
        self.loop_end = 1.0
        self.ended = False

    def set_position(self, p: float) -> None:
        self.position = min(max(float(p), 0.0), 1.0)
        self.direction = 1.0
        self.ended = False

    def loop_points(self) -> tuple[float, float]:
        a, b = self.loop_start, self.loop_end
        return (a, b) if a <= b else (b, a)

    def advance(self, rate: float, length: float) -> bool:
        """Move by one mel frame; returns True when the move wrapped (a jump in the sound)."""
        if self.ended or rate == 0.0:
            return False
        step = rate * self.direction / max(float(length), 1.0)
        p = self.position + step
        wrapped = False
        if self.mode == LOOP_OFF:
            if p >= 1.0 or p <= 0.0:
                p = min(max(p, 0.0), 1.0)
                self.ended = True
        else:
            a, b = self.loop_points()
            span = b - a
            old = self.position
            if span <= 0.0:
                # a zero-length loop holds the playhead once it gets there
                if (step > 0 and old <= a <= p) or (step < 0 and p <= a <= old):
                    p = a
                    self.position = p
                    return False
            elif step > 0 and old <= b < p:
                over = p - b
                if self.mode == LOOP:
                    p = a + over % span
                    wrapped = True
                else:
                    p = b - over % span
                    self.direction = -self.direction
            elif step < 0 and p < a <= old:
                over = a - p
                if self.mode == LOOP:
                    p = b - over % span
                    wrapped = True
                else:
                    p = a + over % span
                    self.direction = -self.direction
            if p >= 1.0 or p <= 0.0:
                # outside the loop region, travelling away from it: the sound ends
                p = min(max(p, 0.0), 1.0)
                if not (a <= p <= b):
                    self.ended = True
        self.position = p
        return wrapped
