"""The daemon's OSC namespace: every address, its type, range, default and meaning.

This module is the contract between the control surface (which parses OSC,
converts and checks values, answers queries and serves OSCQuery) and the
engine (which applies changes at block boundaries). It is plain data: no
torch, no sockets.

Conventions
-----------
- Every address lives under ``/sono``.
- A numeric parameter accepts any numeric OSC type (i h f d T F) and is
  clamped to its range. ``ADDRESS/norm`` takes the same value as 0..1 over the
  range (for controllers that only send normalised floats).
- Sent with no arguments, a parameter's current value is answered to the
  sender on the same address.
- An ``action`` has no stored value: it does something (play, load, save).
- Errors are answered on ``/sono/error`` with ``(address, reason)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_SLOTS = 8
#: A sample or patch name (never a path; ``..`` is refused on top): the OSC checks and the sample list use it.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Param:
    address: str                 # e.g. "/sono/gain"
    types: str                   # OSCQuery TYPE string of the value: "f", "ff", "i", "s", "ffffffff", "" for bare actions
    description: str
    min: tuple = ()              # per value, () for strings/actions
    max: tuple = ()
    default: tuple = ()
    unit: str = ""
    action: bool = False         # True: triggers something, has no stored value
    access: int = 3              # OSCQuery ACCESS: 0 none, 1 read, 2 write, 3 read/write
    values: tuple = field(default=())  # allowed strings/ints for enumerations (OSCQuery RANGE VALS)

    @property
    def numeric(self) -> bool:
        return bool(self.types) and all(t in "fi" for t in self.types)


def build_namespace(latent_dim: int = 16, n_slots: int = MAX_SLOTS) -> dict[str, Param]:
    """All addresses of a daemon with ``latent_dim`` latent coordinates and ``n_slots`` slots."""
    P: list[Param] = [
        # transport and voice
        Param("/sono/play", "f", "Start voice 0 (attack; legato while it sounds), optional velocity 0..1 scales the gain", (0.0,), (1.0,), (1.0,), action=True, access=2),
        Param("/sono/stop", "", "Release voice 0 (the /sono/play voice)", action=True, access=2),
        Param("/sono/playing", "i", "1 while any voice sounds (read only)", (0,), (1,), (0,), access=1),
        Param("/sono/gain", "f", "Output gain, linear amplitude", (0.0,), (2.0,), (0.8,)),
        Param("/sono/attack", "f", "Attack time", (0.001,), (10.0,), (0.01,), unit="s"),
        Param("/sono/release", "f", "Release time", (0.001,), (20.0,), (0.3,), unit="s"),
        Param("/sono/transpose", "f", "Transpose in semitones", (-24.0,), (24.0,), (0.0,), unit="semitones"),
        Param("/sono/smooth", "f", "Smoothing time for control changes", (0.0,), (2.0,), (0.03,), unit="s"),
        # voices (polyphony): each note is a voice with its own playhead, pitch, velocity and envelope
        Param("/sono/note/on", "ff", "Play a note: pitch (MIDI note number, fractions allowed), velocity 0..1 (0 = note off); answers /sono/note/voice pitch voice", (0.0, 0.0), (127.0, 1.0), (60.0, 1.0), action=True, access=2),
        Param("/sono/note/off", "f", "Release the voice(s) playing this pitch (held on while the sustain pedal is down)", (0.0,), (127.0,), (60.0,), action=True, access=2),
        Param("/sono/note/root", "f", "The pitch that plays the sounds untransposed; a note plays pitch - root semitones (+ /sono/transpose)", (0.0,), (127.0,), (60.0,), unit="MIDI note"),
        # per-note expression (MPE): the voice sounding a pitch, smoothed by /sono/smooth, reset by each note-on
        Param("/sono/note/bend", "ff", "Bend the note playing this pitch by semitones, on top of its pitch, /sono/transpose and the root (MPE per-note pitch bend; 0 on each note-on)", (0.0, -96.0), (127.0, 96.0), (60.0, 0.0), action=True, access=2),
        Param("/sono/note/pressure", "ff", "Pressure 0..1 of the note playing this pitch: moves its latent by pressure * /sono/note/pressure/depth sd along PCA coordinate /sono/note/pressure/coord (MPE pressure; 0 on each note-on)", (0.0, 0.0), (127.0, 1.0), (60.0, 0.0), action=True, access=2),
        Param("/sono/note/timbre", "ff", "Timbre 0..1 of the note playing this pitch: moves its latent by (2 * timbre - 1) * /sono/note/timbre/depth sd along PCA coordinate /sono/note/timbre/coord (MPE slide, CC 74; 0.5 on each note-on)", (0.0, 0.0), (127.0, 1.0), (60.0, 0.5), action=True, access=2),
        Param("/sono/note/pressure/coord", "i", "The PCA coordinate a note's pressure moves", (0,), (latent_dim - 1,), (0,)),
        Param("/sono/note/pressure/depth", "f", "How far full pressure moves a note's latent along its coordinate (negative: the other way)", (-4.0,), (4.0,), (2.0,), unit="sd"),
        Param("/sono/note/timbre/coord", "i", "The PCA coordinate a note's timbre moves", (0,), (latent_dim - 1,), (1 % latent_dim,)),
        Param("/sono/note/timbre/depth", "f", "How far timbre 1 (0: the other way) moves a note's latent along its coordinate from timbre 0.5", (-4.0,), (4.0,), (1.5,), unit="sd"),
        Param("/sono/sustain", "i", "Sustain pedal: 1 down (released notes sound on), 0 up (releases them)", (0,), (1,), (), action=True, access=2),
        Param("/sono/allnotesoff", "", "Release every voice (notes and the /sono/play voice)", action=True, access=2),
        Param("/sono/voices", "i", "Number of voices (serve --voices; read only)", (1,), (64,), (8,), access=1),
        Param("/sono/voices/active", "i", "Voices sounding now (read only)", (0,), (64,), (0,), access=1),
        Param("/sono/voices/steal", "i", "With every voice busy, a new note takes: 0 the oldest (released notes first), 1 the quietest", (0,), (1,), (0,), values=(0, 1)),
        # stereo (serve --channels 2)
        Param("/sono/pan", "f", "Pan of voice 0 and the centre of the notes: -1 left .. 1 right (0: both channels at full level)", (-1.0,), (1.0,), (0.0,)),
        Param("/sono/spread", "f", "Notes spread by pitch: a note pans by spread * (pitch - root) / 24 from /sono/pan", (0.0,), (1.0,), (0.0,)),
        Param("/sono/width", "f", "Stereo width: each voice decodes left and right from latents offset by +-width sd (PCA coordinates 1 and 2); 0 = the same sound in both", (0.0,), (1.0,), (0.0,)),
        # playhead
        Param("/sono/position", "f", "Playhead position in the slots' (aligned) sound, 0 start .. 1 end", (0.0,), (1.0,), (0.0,)),
        Param("/sono/rate", "f", "Playhead rate: 1 normal, 0 freezes, negative reverses", (-4.0,), (4.0,), (1.0,)),
        Param("/sono/loop/mode", "i", "Loop mode: 0 off (play once), 1 loop, 2 ping-pong", (0,), (2,), (1,), values=(0, 1, 2)),
        Param("/sono/loop/start", "f", "Loop start, 0..1 of the sound", (0.0,), (1.0,), (0.0,)),
        Param("/sono/loop/end", "f", "Loop end, 0..1 of the sound", (0.0,), (1.0,), (1.0,)),
        # blend of the slots
        Param("/sono/morph", "f", "Blend between the morph pair (default slots 0 and 1): 0 first .. 1 second", (0.0,), (1.0,), (0.0,)),
        Param("/sono/morph/pair", "ii", "The two slots /sono/morph moves between", (0, 0), (n_slots - 1, n_slots - 1), (0, 1)),
        Param("/sono/xy", "ff", "Bilinear blend over slots 0 (0,0), 1 (1,0), 2 (0,1), 3 (1,1)", (0.0, 0.0), (1.0, 1.0), (0.0, 0.0)),
        Param("/sono/xy/x", "f", "X of the XY blend", (0.0,), (1.0,), (0.0,)),
        Param("/sono/xy/y", "f", "Y of the XY blend", (0.0,), (1.0,), (0.0,)),
        Param("/sono/weights", "f" * n_slots, "Blend weights of all slots (normalised to sum 1)", (0.0,) * n_slots, (1.0,) * n_slots, (1.0,) + (0.0,) * (n_slots - 1)),
        # latent space
        Param("/sono/input/slot", "i", "The slot the live input (serve --input) plays in, -1 none: it takes that slot's place in every blend", (-1,), (n_slots - 1,), (-1,)),
        Param("/sono/input/gain", "f", "Gain on the live input before the encoder", (-24.0,), (24.0,), (0.0,), unit="dB"),
        Param("/sono/input/gate", "f", "Noise gate: below this input level the live source is silence", (-120.0,), (0.0,), (-50.0,), unit="dBFS"),
        Param("/sono/input/wet", "f", "Dry/wet of the live input: 0 the input itself (delayed to line up), 1 the model's sound", (0.0,), (1.0,), (1.0,)),
        Param("/sono/input/level", "f", "Level of the live input after its gain, per block (read only)", (-120.0,), (0.0,), (-120.0,), unit="dBFS", access=1),
        Param("/sono/free", "i", "Free mode: 1 = the latent coordinates alone drive the sound (no slots)", (0,), (1,), (0,)),
        Param("/sono/latent", "f" * latent_dim, "Offsets of every PCA coordinate, in standard deviations", (-4.0,) * latent_dim, (4.0,) * latent_dim, (0.0,) * latent_dim, unit="sd"),
        Param("/sono/map", "ff", "Where the current sound is in the latent map: its PCA coordinates 0 and 1, in standard deviations (read only)", (-4.0, -4.0), (4.0, 4.0), (0.0, 0.0), unit="sd", access=1),
        # slots and patches
        Param("/sono/patch/save", "s", "Save the whole setup as a named patch (a name, never a path)", action=True, access=2),
        Param("/sono/patch/load", "s", "Recall a named patch", action=True, access=2),
        # daemon
        Param("/sono/info", "", "Answers version, latent dims, sample rates, block size, delay in samples", action=True, access=1),
        Param("/sono/status", "", "Answers counters: underflows, blocks, render time, buffer depth, dropped packets", action=True, access=1),
        Param("/sono/ping", "", "Answers /sono/pong", action=True, access=1),
        Param("/sono/subscribe", "f", "Push value changes to the sender for this many seconds (renew before it ends)", (1.0,), (3600.0,), (10.0,), action=True, access=2),
        Param("/sono/unsubscribe", "", "Stop pushing value changes to the sender", action=True, access=2),
        Param("/sono/quit", "", "Fade out and stop the daemon", action=True, access=2),
        # meters
        Param("/sono/meter/level", "f", "Output peak level, linear, held and falling back (read only)", (0.0,), (1.0,), (0.0,), access=1),
        Param("/sono/meter/cpu", "f", "Share of real time spent rendering, 1 = no headroom left (read only)", (0.0,), (1.0,), (0.0,), access=1),
        Param("/sono/meter/underflows", "i", "Audio gaps so far: device underflows plus ring underruns (read only)", (0,), (2**31 - 1,), (0,), access=1),
    ]
    for k in range(latent_dim):
        P.append(Param(f"/sono/latent/{k}", "f", f"Offset of PCA coordinate {k} (0 = most variance), in standard deviations", (-4.0,), (4.0,), (0.0,), unit="sd"))
        P.append(Param(f"/sono/latent/{k}/scale", "f", f"Scale of PCA coordinate {k} around the mean (1 = as encoded, 0 = flattened)", (0.0,), (4.0,), (1.0,)))
    for s in range(n_slots):
        P.append(Param(f"/sono/slot/{s}/load", "s", f"Load a sample by name (from the sample folder) into slot {s}", action=True, access=2))
        P.append(Param(f"/sono/slot/{s}/timbre", "s", f"Load a sample's timbre (its mean latent: no timing of its own) into slot {s}", action=True, access=2))
        P.append(Param(f"/sono/slot/{s}/clear", "", f"Empty slot {s}", action=True, access=2))
        P.append(Param(f"/sono/slot/{s}/name", "s", f"Name of the sample in slot {s} (read only)", access=1))
        P.append(Param(f"/sono/slot/{s}/map", "ff", f"Where the sound in slot {s} is in the latent map, at the playhead: PCA coordinates 0 and 1 in standard deviations (read only)", (-4.0, -4.0), (4.0, 4.0), (0.0, 0.0), unit="sd", access=1))
    return {p.address: p for p in P}
