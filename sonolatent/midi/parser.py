"""A MIDI byte parser that survives garbage.

Ports deliver raw bytes (python-rtmidi gives one list of bytes per event).
:class:`MidiParser` turns them into :class:`mido.Message` objects and counts
what it has to drop, instead of raising or silently swallowing it:

- ``garbage_bytes``: data bytes with no status to belong to (stray bytes,
  running status where there is none), bytes of messages cut short by the
  next status byte, undefined status bytes (F4, F5, F9, FD), stray F7,
  SysEx cut short or longer than ``max_sysex``.

Running status (a channel message's status byte left out when it repeats) is
honoured inside a byte stream (:meth:`MidiParser.feed`). Ports that deliver
whole events (JACK, ALSA sequencer) never use it across events, so
:meth:`MidiParser.feed_event` starts each event afresh: data bytes at the
start of an event are garbage, a message left incomplete by the previous
event is dropped. System real-time bytes (F8..FF) may stand anywhere, even
inside another message, and are passed on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import mido

_DATA_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
_REALTIME = {0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF}


class MidiParser:
    """Feed bytes, get messages; ``ignored`` counts what was dropped (see module doc)."""

    def __init__(self, max_sysex: int = 65536):
        self.max_sysex = max_sysex
        self.ignored: Counter = Counter()
        self.accepted_bytes = 0  # bytes that went into messages (with ``ignored``: every byte fed)
        self._running: int | None = None  # running status (channel messages only)
        self._msg: list[int] = []  # message being collected, status first
        self._need = 0  # data bytes still missing from _msg
        self._implicit = False  # _msg's status byte came from running status, not from the input
        self._sysex: bytearray | None = None

    def reset(self) -> None:
        """Forget any partial message and running status (counting the partial as garbage)."""
        self._drop_partial()
        self._running = None

    def feed_event(self, data: Iterable[int]) -> list[mido.Message]:
        """Parse one whole event from a port (no running status carried in from earlier events).

        A SysEx split over several events (some drivers do that for long ones)
        is still joined.
        """
        if self._sysex is None:
            self.reset()
        return self.feed(data)

    def feed(self, data: Iterable[int]) -> list[mido.Message]:
        """Parse the next bytes of a stream; returns the messages completed by them."""
        out: list[mido.Message] = []
        for b in data:
            b = int(b)
            if not 0 <= b <= 255:
                self.ignored["garbage_bytes"] += 1
                continue
            if b >= 0xF8:
                if b in _REALTIME:
                    self._emit([b], out)
                else:
                    self.ignored["garbage_bytes"] += 1
            elif b == 0xF0:
                self._drop_partial()
                self._running = None
                self._sysex = bytearray([0xF0])
            elif b == 0xF7:
                if self._sysex is None:
                    self.ignored["garbage_bytes"] += 1
                else:
                    self._sysex.append(0xF7)
                    self._emit(self._sysex, out)
                    self._sysex = None
            elif b >= 0x80:
                self._drop_partial()
                if b < 0xF0:
                    self._running = b
                    self._start(b, _DATA_LEN[b & 0xF0], out)
                else:
                    self._running = None
                    if b in _COMMON_LEN:
                        self._start(b, _COMMON_LEN[b], out)
                    else:  # F4, F5: undefined
                        self.ignored["garbage_bytes"] += 1
            elif self._sysex is not None:
                if len(self._sysex) >= self.max_sysex:
                    self.ignored["garbage_bytes"] += len(self._sysex) + 1
                    self._sysex = None
                    continue
                self._sysex.append(b)
            elif self._need:
                self._msg.append(b)
                self._need -= 1
                if not self._need:
                    self._emit(self._msg, out, self._implicit)
                    self._msg = []
            elif self._running is not None:
                self._msg = [self._running, b]
                self._implicit = True
                self._need = _DATA_LEN[self._running & 0xF0] - 1
                if not self._need:
                    self._emit(self._msg, out, True)
                    self._msg = []
            else:
                self.ignored["garbage_bytes"] += 1
        return out

    def _emit(self, data, out: list, implicit: bool = False) -> None:
        out.append(mido.Message.from_bytes(data))
        self.accepted_bytes += len(data) - (1 if implicit else 0)

    def _start(self, status: int, n: int, out: list) -> None:
        if n == 0:
            self._emit([status], out)
        else:
            self._msg = [status]
            self._need = n
            self._implicit = False

    def _drop_partial(self) -> None:
        if self._need:
            self.ignored["garbage_bytes"] += len(self._msg) - (1 if self._implicit else 0)
            self._msg = []
            self._need = 0
        if self._sysex is not None:
            self.ignored["garbage_bytes"] += len(self._sysex)
            self._sysex = None
