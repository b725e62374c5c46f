"""Playing a standard MIDI file through the mapping, in real time or freewheeling.

Event times come from :class:`mido.MidiFile` (tracks merged, tempo changes
applied). Real-time playback sleeps until each event's *absolute* deadline,
``start + t``, measured on a monotonic clock: per-event relative sleeps would
add every sleep's overshoot to all later events.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Callable

import mido

from ..errors import SonolatentError


def load_midi_events(path: str | Path) -> list[tuple[float, mido.Message]]:
    """``(seconds from the file's start, message)`` for every non-meta event, in order."""
    p = Path(path)
    if p.is_dir():
        raise SonolatentError(f"{p}: is a folder, not a MIDI file")
    if not p.is_file():
        raise SonolatentError(f"{p}: MIDI file not found")
    try:
        mid = mido.MidiFile(p)
        events = []
        t = 0.0
        for msg in mid:
            t += msg.time
            if not msg.is_meta:
                events.append((t, msg.copy(time=0)))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, struct.error) as e:
        raise SonolatentError(f"{p}: not a usable standard MIDI file ({str(e) or type(e).__name__})") from None
    return events


def play_events(events: list[tuple[float, mido.Message]], handle: Callable[[mido.Message], None], *,
                freewheel: bool = False, idle: Callable[[], bool] | None = None,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                max_nap: float = 0.05) -> int:
    """Call ``handle(msg)`` at each event's time; returns how many events were played.

    ``idle()`` is called at least every ``max_nap`` seconds while waiting
    (and between events); when it returns True playback stops early.
    """
    start = clock()
    played = 0
    for t, msg in events:
        if not freewheel:
            deadline = start + t
            while True:
                left = deadline - clock()
                if left <= 0:
                    break
                if idle is not None and idle():
                    return played
                sleep(min(left, max_nap))
        elif idle is not None and idle():
            return played
        handle(msg)
        played += 1
    return played
