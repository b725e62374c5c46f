"""MIDI messages -> OSC messages, by a :class:`~sonolatent.midi.mapping.Mapping`. No I/O.

``Mapper(mapping).handle(msg)`` returns a list of ``(address, args)`` with
``args`` a tuple of floats or strings. The mapper keeps the state MIDI needs
(held keys, sustain pedal, 14-bit MSBs, NRPN selection) and counts what it
ignores in ``ignored``: ``sysex``, ``realtime`` (clock, active sensing...),
``unmapped`` (a message no part of the mapping uses).

MPE (``[notes] mode = "mpe"``, MIDI Polyphonic Expression): every note is a
voice as in poly mode; a note on a member channel of the zone also gets that
channel's pitch bend, channel pressure and CC 74 as ``/sono/note/bend``,
``/sono/note/pressure`` and ``/sono/note/timbre`` of its pitch (all of them at
its note-on, sent in one bundle with it, where they differ from the daemon's
rest values; a released note keeps following its channel while it fades, until
the channel or the pitch starts another note). The master channel's messages
stay global (``[pitchbend]``, ``[[aftertouch]]``, ``[[cc]]``, the pedal). RPN 0
sets the bend range (on a member channel: every member channel's; on the master
channel: ``[pitchbend]``'s), RPN 6 on a master channel (the MPE Configuration
Message) sets its zone's member channels (0: no zone) and resets both ranges
(48 and 2 semitones).

Value shaping (cc, nrpn, aftertouch, velocity): the raw value becomes
x in 0..1 (7-bit: v/127, 14-bit: v/16383), ``invert`` makes it 1-x, the
``curve`` bends it (linear: x; exp: slow start, (e^(kx)-1)/(e^k-1); log: its
inverse, fast start; k = 4), then ``min + (max - min) * x``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import mido

from .learn import Learner
from .mapping import MPE_BEND_RANGE, CCMap, Mapping, NRPNMap

Osc = tuple[str, tuple]

CURVE_K = 4.0
_EK = math.expm1(CURVE_K)

# controllers the NRPN/RPN state machine consumes
CC_NRPN_MSB, CC_NRPN_LSB, CC_RPN_MSB, CC_RPN_LSB = 99, 98, 101, 100
CC_DATA_MSB, CC_DATA_LSB = 6, 38
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF = 120, 123
# the daemon's voice addresses (poly mode)
POLY_ON, POLY_OFF, POLY_SUSTAIN, POLY_ALL_OFF = "/sono/note/on", "/sono/note/off", "/sono/sustain", "/sono/allnotesoff"
# per-note expression (mpe mode), the daemon's rest values, MPE's timbre controller
MPE_BEND, MPE_PRESSURE, MPE_TIMBRE = "/sono/note/bend", "/sono/note/pressure", "/sono/note/timbre"
MPE_EXPRESSION = (MPE_BEND, MPE_PRESSURE, MPE_TIMBRE)
MPE_REST = (0.0, 0.0, 0.5)
CC_TIMBRE = 74
RPN_BEND_RANGE, RPN_MPE_CONFIG = (0, 0), (0, 6)
MPE_MASTER_RANGE = 2.0   # the master channel's bend range after an MPE Configuration Message


def apply_curve(x: float, curve: str) -> float:
    """Bend x in 0..1 by ``curve`` (linear, exp, log); 0 -> 0 and 1 -> 1 always."""
    x = min(1.0, max(0.0, x))
    if curve == "exp":
        return math.expm1(CURVE_K * x) / _EK
    if curve == "log":
        return math.log1p(x * _EK) / CURVE_K
    return x


def shape(x: float, lo: float, hi: float, curve: str = "linear", invert: bool = False) -> float:
    """Raw x in 0..1 -> ``lo``..``hi`` through ``invert`` and ``curve``."""
    if invert:
        x = 1.0 - x
    return lo + (hi - lo) * apply_curve(x, curve)


def bend_to_unit(pitch: int) -> float:
    """mido pitch -8192..8191 -> -1..1, exactly -1 at -8192, 0 at 0 and 1 at 8191."""
    return pitch / 8192.0 if pitch < 0 else pitch / 8191.0


def cc74_to_unit(v: int) -> float:
    """CC 74 0..127 -> 0..1 with 64 (MPE's rest value) exactly 0.5."""
    return v / 128.0 if v < 64 else 0.5 + (v - 64) / 126.0


def _ch_ok(want: int | None, channel: int) -> bool:
    """``want`` is 1..16 or None (omni); ``channel`` is mido's 0..15."""
    return want is None or want == channel + 1


class Mapper:
    """Turns MIDI messages into OSC messages. Not thread-safe: call from one thread."""

    def __init__(self, mapping: Mapping):
        self.ignored: Counter = Counter()
        self.learner = Learner()
        #: called with (new_mapping, description) after MIDI learn changed the mapping
        self.on_learn: Callable[[Mapping, str], None] | None = None
        self._held: list[tuple[int, int, bool]] = []  # (channel, note, key_down) sounding, oldest first
        self._pedal: set[int] = set()  # channels with the sustain pedal down
        self._bend = 0.0  # semitones added to the transpose
        self._last_note: int | None = None
        self._msb: dict[tuple[int, int], int] = {}  # (channel, msb cc) -> msb
        self._rpn: dict[int, tuple[str, int, int]] = {}  # channel -> ("nrpn"|"rpn", msb, lsb)
        self._nrpn_msb: dict[tuple[int, int], int] = {}  # (channel, param) -> data msb
        self.set_mapping(mapping)

    # -- configuration

    def set_mapping(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self._cc: dict[int, list[CCMap]] = {}
        self._cc_lsb: dict[int, list[CCMap]] = {}
        for m in mapping.cc:
            self._cc.setdefault(m.cc, []).append(m)
            if m.lsb is not None:
                self._cc_lsb.setdefault(m.lsb, []).append(m)
        self._nrpn: dict[int, list[NRPNMap]] = {}
        for n in mapping.nrpn:
            self._nrpn.setdefault(n.param, []).append(n)
        notes = mapping.notes
        self._notes = notes if notes is not None and notes.mode != "off" else None
        self._mpe = bool(self._notes and self._notes.mode == "mpe")
        self._poly = bool(self._notes and self._notes.mode in ("poly", "mpe"))
        #: mpe: the messages one MIDI message makes go out together (a note-on with its expression)
        self.together = self._mpe
        if self._mpe:
            n = self._notes
            self._zones = {0: n.members, 15: 0} if n.zone == "lower" else {0: 0, 15: n.members}
            self._member_range = n.bend_range
            self._master_range = pb.range if (pb := mapping.pitchbend) is not None else None
            self._expr: dict[int, list[float]] = {}     # member channel -> its (bend -1..1, pressure, timbre)
            self._ch_notes: dict[int, list[int]] = {}   # member channel -> its notes (held or fading)
            self._owner: dict[int, int] = {}            # note -> the member channel that last started it
            self._rpn_sel: dict[int, tuple[int, int]] = {}   # channel -> the RPN its data entry goes to
        pb = mapping.pitchbend
        self._bend_is_transpose = bool(pb and self._notes and self._notes.transpose and not self._poly
                                       and pb.address == self._notes.transpose_address and pb.range)

    def arm_learn(self, address: str) -> None:
        """Bind the next control that moves (CC, NRPN, pitch bend, aftertouch) to ``address``."""
        self.learner.arm(address)

    # -- the one entry point

    def handle(self, msg: mido.Message) -> list[Osc]:
        """The OSC messages one MIDI message makes (often none)."""
        kind = msg.type
        if self.learner.armed and kind in ("control_change", "pitchwheel", "aftertouch", "polytouch"):
            learned = self.learner.offer(msg, self.mapping)
            if learned is not None:
                new_mapping, description = learned
                self.set_mapping(new_mapping)
                if self.on_learn:
                    self.on_learn(new_mapping, description)
        if kind == "control_change":
            return self._control_change(msg)
        if kind in ("note_on", "note_off"):
            return self._note(msg)
        if kind == "pitchwheel":
            return self._pitchwheel(msg)
        if kind == "aftertouch" or kind == "polytouch":
            return self._aftertouch(msg)
        if kind == "program_change":
            return self._program(msg)
        if kind == "sysex":
            self.ignored["sysex"] += 1
        elif kind in ("clock", "start", "continue", "stop", "active_sensing", "reset"):
            self.ignored["realtime"] += 1
        else:
            self.ignored["unmapped"] += 1
        return []

    def panic(self) -> list[Osc]:
        """Release everything (all-notes-off, or the bridge shutting down with keys held)."""
        if not self._notes or not (self._held or self._pedal):
            return []
        self._held.clear()
        self._pedal.clear()
        return [self._all_off()]

    def _all_off(self) -> Osc:
        return (POLY_ALL_OFF, ()) if self._poly else (self._notes.stop_address, ())

    # -- control change, 14-bit CC, NRPN

    def _control_change(self, msg: mido.Message) -> list[Osc]:
        ch, cc, v = msg.channel, msg.control, msg.value
        out: list[Osc] = []
        used = False
        if cc < 32:
            self._msb[(ch, cc)] = v  # kept even for 7-bit entries, so a learned 14-bit pair works at once
        for m in self._cc.get(cc, ()):
            if not _ch_ok(m.channel, ch):
                continue
            used = True
            if m.lsb is None:
                out.append((m.address, (shape(v / 127.0, m.min, m.max, m.curve, m.invert),)))
            else:  # MSB first; per the MIDI spec a new MSB resets the LSB to 0
                out.append((m.address, (shape((v << 7) / 16383.0, m.min, m.max, m.curve, m.invert),)))
        for m in self._cc_lsb.get(cc, ()):
            if not _ch_ok(m.channel, ch):
                continue
            used = True
            msb = self._msb.get((ch, m.cc))
            if msb is not None:  # an LSB before any MSB has nothing to refine
                x = ((msb << 7) | v) / 16383.0
                out.append((m.address, (shape(x, m.min, m.max, m.curve, m.invert),)))
        if cc in (CC_NRPN_MSB, CC_NRPN_LSB, CC_RPN_MSB, CC_RPN_LSB, CC_DATA_MSB, CC_DATA_LSB):
            nrpn_out, nrpn_used = self._nrpn_cc(ch, cc, v)
            out.extend(nrpn_out)
            used = used or nrpn_used
        if self._mpe:
            if cc == CC_TIMBRE and self._member(ch):
                return self._express(ch, 2, cc74_to_unit(v))
            if cc in (CC_NRPN_MSB, CC_NRPN_LSB, CC_RPN_MSB, CC_RPN_LSB, CC_DATA_MSB, CC_DATA_LSB):
                used = self._mpe_rpn(ch, cc, v) or used
        notes = self._notes
        if notes and _ch_ok(notes.channel, ch):
            if cc == CC_SUSTAIN and notes.sustain:
                used = True
                out.extend(self._sustain(ch, v >= 64))
            elif cc in (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF):
                used = True
                self._held.clear()
                self._pedal.clear()
                out.append(self._all_off())
        if not used:
            self.ignored["unmapped"] += 1
        return out

    def _nrpn_cc(self, ch: int, cc: int, v: int) -> tuple[list[Osc], bool]:
        if not self._nrpn:
            return [], False
        kind, msb, lsb = self._rpn.get(ch, ("none", 127, 127))
        if cc in (CC_NRPN_MSB, CC_NRPN_LSB):
            if kind != "nrpn":
                msb, lsb = 127, 127
            if cc == CC_NRPN_MSB:
                msb = v
            else:
                lsb = v
            self._rpn[ch] = ("nrpn", msb, lsb)
            return [], True
        if cc in (CC_RPN_MSB, CC_RPN_LSB):
            self._rpn[ch] = ("rpn", msb, lsb)  # data now goes to an RPN: not ours
            return [], True
        if kind != "nrpn":
            return [], False
        param = (msb << 7) | lsb
        maps = [m for m in self._nrpn.get(param, ()) if _ch_ok(m.channel, ch)]
        if not maps:
            return [], True  # an NRPN we were told about but do not map: consumed, not "unmapped"
        if cc == CC_DATA_MSB:
            self._nrpn_msb[(ch, param)] = v
            value = v << 7
        else:
            dmsb = self._nrpn_msb.get((ch, param))
            if dmsb is None:
                return [], True
            value = (dmsb << 7) | v
        x = value / 16383.0
        return [(m.address, (shape(x, m.min, m.max, m.curve, m.invert),)) for m in maps], True

    # -- notes: last-note priority, legato

    def _transpose_msg(self, note: int) -> Osc:
        n = self._notes
        return (n.transpose_address, (float(note - n.root) + self._bend,))

    def _note(self, msg: mido.Message) -> list[Osc]:
        n = self._notes
        if n is None or not _ch_ok(n.channel, msg.channel):
            self.ignored["unmapped"] += 1
            return []
        ch, note = msg.channel, msg.note
        if self._poly:
            return self._poly_note(msg)
        if msg.type == "note_on" and msg.velocity > 0:
            was_sounding = bool(self._held)
            self._held = [h for h in self._held if (h[0], h[1]) != (ch, note)]
            self._held.append((ch, note, True))
            self._last_note = note
            out: list[Osc] = []
            if n.transpose:
                out.append(self._transpose_msg(note))
            if not was_sounding or n.retrigger:
                vel = shape(msg.velocity / 127.0, n.velocity_min, n.velocity_max, n.velocity_curve)
                if n.velocity == "play":
                    out.append((n.play_address, (vel,)))
                elif n.velocity == "gain":
                    out.append((n.gain_address, (vel,)))
                    out.append((n.play_address, ()))
                else:
                    out.append((n.play_address, ()))
            return out
        # note off (or note on with velocity 0)
        idx = next((i for i, h in enumerate(self._held) if (h[0], h[1]) == (ch, note) and h[2]), None)
        if idx is None:
            return []  # a key we never saw go down
        if ch in self._pedal:
            self._held[idx] = (ch, note, False)  # sounds on until the pedal comes up
            return []
        return self._release([idx])

    def _release(self, indices: list[int]) -> list[Osc]:
        if not indices:
            return []
        top_before = self._held[-1][1] if self._held else None
        drop = set(indices)
        self._held = [h for i, h in enumerate(self._held) if i not in drop]
        n = self._notes
        if not self._held:
            return [(n.stop_address, ())]
        top = self._held[-1][1]
        if top != top_before:
            self._last_note = top
            return [self._transpose_msg(top)] if n.transpose else []
        return []

    def _poly_note(self, msg: mido.Message) -> list[Osc]:
        """Poly mode: each key is a voice of the daemon (which holds notes under the pedal itself)."""
        n, key = self._notes, (msg.channel, msg.note, True)
        self._held = [h for h in self._held if h != key]
        if msg.type == "note_on" and msg.velocity > 0:
            self._held.append(key)
            vel = 1.0 if n.velocity == "off" else \
                shape(msg.velocity / 127.0, n.velocity_min, n.velocity_max, n.velocity_curve)
            out = [(POLY_ON, (float(msg.note), vel))]
            if self._mpe:
                out += self._mpe_note_on(msg.channel, msg.note)
            return out
        return [(POLY_OFF, (float(msg.note),))]

    # -- MPE: per-note expression

    def _member(self, ch: int) -> bool:
        """Whether ``ch`` (0..15) is a member channel of a zone (the lower zone's come first)."""
        lower, upper = self._zones[0], self._zones[15]
        if lower and 1 <= ch <= lower:
            return True
        return bool(upper) and 15 - upper <= ch <= 14

    def _mpe_note_on(self, ch: int, note: int) -> list[Osc]:
        """A note started on ``ch``: it follows that channel from now on; its channel's expression, where
        it differs from the daemon's rest values (which every note-on starts from)."""
        old = self._owner.get(note)
        if old is not None and old in self._ch_notes:
            self._ch_notes[old] = [x for x in self._ch_notes[old] if x != note]
        self._owner.pop(note, None)
        if not self._member(ch):
            return []
        self._owner[note] = ch
        # the channel's notes released before this one stop following it
        self._ch_notes[ch] = [x for x in self._ch_notes.get(ch, []) if (ch, x, True) in self._held and x != note]
        self._ch_notes[ch].append(note)
        return [m for m, rest in zip(self._expression(ch, note), MPE_REST) if m[1][1] != rest]

    def _expression(self, ch: int, note: int) -> list[Osc]:
        bend, pressure, timbre = self._expr.get(ch, (0.0, 0.0, 0.5))
        return [(MPE_BEND, (float(note), bend * self._member_range)), (MPE_PRESSURE, (float(note), pressure)),
                (MPE_TIMBRE, (float(note), timbre))]

    def _express(self, ch: int, k: int, x: float) -> list[Osc]:
        """Expression ``k`` (bend -1..1, pressure, timbre) of member channel ``ch`` is ``x``: to its notes."""
        self._expr.setdefault(ch, list(MPE_REST))[k] = x
        return [self._expression(ch, note)[k] for note in self._ch_notes.get(ch, ())]

    def _mpe_rpn(self, ch: int, cc: int, v: int) -> bool:
        """RPN selection and data entry: RPN 0 (bend range) and RPN 6 (MPE Configuration Message)."""
        if cc in (CC_NRPN_MSB, CC_NRPN_LSB):
            self._rpn_sel.pop(ch, None)
            return False
        if cc in (CC_RPN_MSB, CC_RPN_LSB):
            msb, lsb = self._rpn_sel.get(ch, (127, 127))
            self._rpn_sel[ch] = (v, lsb) if cc == CC_RPN_MSB else (msb, v)
            return True
        sel = self._rpn_sel.get(ch)
        master = ch in (0, 15) and self._zones[ch] > 0
        if sel == RPN_BEND_RANGE and (master or self._member(ch)):
            old = self._master_range if master else self._member_range
            if old is None:   # [pitchbend] has min/max, no range
                return True
            new = float(v) if cc == CC_DATA_MSB else math.floor(old) + min(v, 99) / 100.0   # LSB: cents
            if new > 0.0:
                if master:
                    self._master_range = new
                else:
                    self._member_range = new
            return True
        if sel == RPN_MPE_CONFIG and ch in (0, 15) and cc == CC_DATA_MSB:
            self._zones[ch] = min(v, 15)
            other = 15 - ch
            if self._zones[other] + self._zones[ch] > 14:   # the zone configured last takes the channels
                self._zones[other] = max(0, 14 - self._zones[ch])
            self._member_range = MPE_BEND_RANGE
            if self._master_range is not None:
                self._master_range = MPE_MASTER_RANGE
            return True
        return False

    def _sustain(self, ch: int, down: bool) -> list[Osc]:
        if self._poly:
            if down == (ch in self._pedal):
                return []   # pedals send a stream of values: only a change is news
            (self._pedal.add if down else self._pedal.discard)(ch)
            return [(POLY_SUSTAIN, (1 if down else 0,))]
        if down:
            self._pedal.add(ch)
            return []
        self._pedal.discard(ch)
        return self._release([i for i, h in enumerate(self._held) if h[0] == ch and not h[2]])

    # -- pitch bend, aftertouch, program change

    def _pitchwheel(self, msg: mido.Message) -> list[Osc]:
        if self._mpe and self._member(msg.channel):
            return self._express(msg.channel, 0, bend_to_unit(msg.pitch))
        pb = self.mapping.pitchbend
        if pb is None or not _ch_ok(pb.channel, msg.channel):
            self.ignored["unmapped"] += 1
            return []
        u = bend_to_unit(msg.pitch)
        if self._mpe and self._master_range is not None:
            value = u * self._master_range
        elif pb.range is not None:
            value = u * pb.range
        else:
            value = pb.min + (pb.max - pb.min) * (u + 1.0) / 2.0
        if self._bend_is_transpose:
            self._bend = value
            note = self._last_note if self._last_note is not None else self._notes.root
            return [self._transpose_msg(note)]
        return [(pb.address, (value,))]

    def _aftertouch(self, msg: mido.Message) -> list[Osc]:
        poly = msg.type == "polytouch"
        if self._mpe:
            if not poly and self._member(msg.channel):
                return self._express(msg.channel, 1, msg.value / 127.0)
            if poly and (msg.channel, msg.note, True) in self._held:   # a held key's own pressure
                return [(MPE_PRESSURE, (float(msg.note), msg.value / 127.0))]
        out: list[Osc] = []
        for m in self.mapping.aftertouch:
            if (m.type == "poly") != poly or not _ch_ok(m.channel, msg.channel):
                continue
            if poly and m.note is not None and m.note != msg.note:
                continue
            out.append((m.address, (shape(msg.value / 127.0, m.min, m.max, m.curve, m.invert),)))
        if not out:
            self.ignored["unmapped"] += 1
        return out

    def _program(self, msg: mido.Message) -> list[Osc]:
        p = self.mapping.program
        name = p.patches.get(msg.program) if p is not None and _ch_ok(p.channel, msg.channel) else None
        if name is None:
            self.ignored["unmapped"] += 1
            return []
        return [(p.address, (name,))]
