"""Voices: notes with their own playhead, pitch, velocity and envelope; allocation, stealing, sustain.

A :class:`VoiceBank` holds ``n`` voices. Voice 0 is also the monophonic
voice that ``/sono/play`` and ``/sono/stop`` drive (legato: a play while it
sounds keeps its stream and moves the envelope from where it is).
``/sono/note/on pitch velocity`` takes a voice:

1. the voice already playing that pitch, if one does (it restarts, legato);
2. else a free (silent) voice, voice 0 last;
3. else it steals one: with ``steal`` 0 a released voice (the quietest of
   them) before the oldest held one, with ``steal`` 1 the quietest of all.

A stolen voice's sound does not stop dead: it becomes a *ghost* that keeps
its streams and fades to silence over :data:`STEAL_FADE_SECONDS` (linearly,
sample by sample), while the voice starts the new note on fresh streams. So
the bank needs up to twice as many streams as voices at a time, and twice
that again for voices spread in stereo.

``/sono/note/off pitch`` releases the voices holding that pitch, unless the
sustain pedal is down: then they sound on until it comes up.

Per-note expression (MPE): ``/sono/note/bend``, ``/sono/note/pressure`` and
``/sono/note/timbre`` set the bend (semitones), pressure (0..1) and timbre
(0..1) of the voice sounding that pitch, one row per voice of
:attr:`VoiceBank.expression`, smoothed like every other control (the engine
core steps it with the rest). Every note-on resets its voice's row to
:data:`EXPRESSION_RESET`: at once for a voice that starts on fresh streams, by
gliding for a legato restart. A voice started on fresh streams takes
expression sent in the same change batch at once (an MPE controller sends a
note's bend, pressure and timbre with its note-on: no glide from the rest
values). A ghost keeps its voice's expression as it was.

Everything here is plain bookkeeping at block boundaries: the engine core
computes the latents and renders all sounding voices' streams in one
:class:`~sonolatent.models.batched.BatchSynth` call.
"""

from __future__ import annotations

import numpy as np

from .playhead import Playhead
from .smooth import Smoothed

#: How long a stolen voice takes to fade out.
STEAL_FADE_SECONDS = 0.005
STEAL_OLDEST, STEAL_QUIETEST = 0, 1
#: The per-note expression, the columns of :attr:`VoiceBank.expression`, and their values on a note-on.
EXPRESSION = ("/sono/note/bend", "/sono/note/pressure", "/sono/note/timbre")
EXPRESSION_RESET = (0.0, 0.0, 0.5)


class Voice:
    """One voice's state (see the module docstring)."""

    def __init__(self, index: int, latent_dim: int):
        self.index = index
        self.playhead = Playhead()
        self.glide = np.zeros(latent_dim)
        self.env = 0.0
        self.env_target = 0.0
        self.env_step = 1.0
        self.note: float | None = None   # the pitch it plays; None: the /sono/play voice (or free)
        self.pitch = 0.0                 # semitones from the root
        self.held = False                # key down
        self.sustained = False           # key up while the pedal was down: released with the pedal
        self.age = 0                     # when its note started (stealing takes the oldest)
        self.streams: list[int] = []     # its BatchSynth streams (none while silent)
        self.onset = 0                   # model samples of its next frame before it starts sounding
        self.fade = 1.0                  # a ghost's fade-out gain (1 for a voice)
        self.fade_step = 0.0
        self.pan = 0.0                   # -1 left .. 1 right
        self.gains = None                # (left, right) applied at the end of the last frame
        self.loudness: list[float] = []  # its sources' loudness at its last latents (the engine core's)
        self.expression = None           # a ghost's (bend, pressure, timbre), as its voice had them

    @property
    def sounding(self) -> bool:
        return self.env_target > 0.0 or self.env > 0.0

    def start(self, velocity: float, attack_samples: float) -> None:
        self.env_target = velocity
        self.env_step = 1.0 / attack_samples

    def release(self, release_samples: float) -> None:
        self.env_target = 0.0
        self.env_step = 1.0 / release_samples
        self.held = self.sustained = False

    def envelope(self, r: np.ndarray) -> np.ndarray:
        """Amplitude over the frame's samples ``r`` (1..hop), moving ``env`` on; includes a ghost's fade."""
        e0, tgt = self.env, self.env_target
        if self.onset:
            r = np.maximum(r - self.onset, 0.0)
            self.onset = 0
        if e0 < tgt:
            env = np.minimum(e0 + self.env_step * r, tgt)
        elif e0 > tgt:
            env = np.maximum(e0 - self.env_step * r, tgt)
        else:
            env = np.full(len(r), e0)
        self.env = float(env[-1])
        if self.fade_step:
            fade = np.maximum(self.fade - self.fade_step * r, 0.0)
            self.fade = float(fade[-1])
            env = env * fade
        return env

    def ghost(self) -> "Voice":
        """A copy that keeps this voice's streams and sound and fades out; this voice is left silent, streamless."""
        g = Voice(-1, len(self.glide))
        g.playhead.__dict__.update(self.playhead.__dict__)
        g.glide = self.glide.copy()
        g.env, g.env_target, g.env_step = self.env, self.env_target, self.env_step
        g.pitch, g.note, g.streams = self.pitch, self.note, self.streams
        g.pan, g.gains = self.pan, self.gains
        g.loudness, self.loudness = self.loudness, []
        self.streams = []
        self.env = self.env_target = 0.0
        self.held = self.sustained = False
        return g


class VoiceBank:
    """``n`` voices, their ghosts and a pool of stream numbers; see the module docstring."""

    def __init__(self, n: int, latent_dim: int, model_rate: int, streams_per_voice: int = 2):
        if not 1 <= n <= 64:
            raise ValueError("voices: 1..64")
        self.voices = [Voice(i, latent_dim) for i in range(n)]
        self.ghosts: list[Voice] = []
        self.model_rate = model_rate
        self.capacity = 2 * n * streams_per_voice
        self._free = list(range(self.capacity - 1, -1, -1))   # pop() hands out 0 first
        self.sustain = False
        self.steal = STEAL_OLDEST
        self._age = 0
        self.started: list[Voice] = []   # voices (re)started on fresh streams since the last take_started()
        self.expression = Smoothed(np.tile(EXPRESSION_RESET, (n, 1)))   # per voice: bend, pressure, timbre

    # -- streams ---------------------------------------------------------------------------------
    def take_stream(self) -> int | None:
        return self._free.pop() if self._free else None

    def give_streams(self, v: Voice) -> None:
        self._free.extend(reversed(v.streams))
        v.streams = []

    def drop_second_stream(self, v: Voice) -> None:
        """``v`` goes back to one stream (its right channel, when it stops being spread in stereo)."""
        self._free.append(v.streams.pop())

    def active(self) -> list[Voice]:
        """What renders this frame: sounding voices, then ghosts."""
        return [v for v in self.voices if v.sounding] + self.ghosts

    def n_sounding(self) -> int:
        return sum(1 for v in self.voices if v.sounding)

    # -- notes -----------------------------------------------------------------------------------
    def _steal_fade(self) -> float:
        return 1.0 / (STEAL_FADE_SECONDS * self.model_rate)

    def _fresh(self, v: Voice) -> None:
        """``v`` will start on fresh streams: a sounding voice leaves a fading ghost behind."""
        if v.sounding and v.streams:
            g = v.ghost()
            g.fade_step = self._steal_fade()
            g.expression = self.expression.value[v.index].copy()
            self.ghosts.append(g)
        elif v.streams:
            self.give_streams(v)
        v.env = v.env_target = 0.0
        v.glide[:] = 0.0
        v.gains = None
        self.expression.value[v.index] = EXPRESSION_RESET
        self.started.append(v)

    def choose(self, note: float) -> Voice:
        """The voice a new note at ``note`` takes (see the module docstring)."""
        for v in self.voices:
            if v.note == note and v.sounding:
                return v
        order = self.voices[1:] + self.voices[:1]
        for v in order:
            if not v.sounding:
                return v
        if self.steal == STEAL_QUIETEST:
            return min(order, key=lambda v: (v.env, v.age))
        released = [v for v in order if v.env_target == 0.0]
        if released:
            return min(released, key=lambda v: (v.env, v.age))
        return min(order, key=lambda v: v.age)

    def note_on(self, note: float, pitch: float, velocity: float, attack_samples: float, start: float,
                pan: float = 0.0) -> Voice:
        """Start ``note`` (``pitch`` semitones from the root, at ``pan``); returns the voice. ``start``: playhead
        position."""
        v = self.choose(note)
        legato = v.note == note and v.sounding
        if not legato:
            self._fresh(v)
        self._age += 1
        v.age = self._age
        self.expression.target[v.index] = EXPRESSION_RESET   # a legato restart glides back to the rest values
        v.note, v.pitch, v.pan = note, pitch, pan
        v.held, v.sustained = True, False
        v.playhead.set_position(start)
        v.start(velocity, attack_samples)
        return v

    def note_off(self, note: float, release_samples: float) -> None:
        for v in self.voices:
            if v.note == note and v.held:
                if self.sustain:
                    v.held, v.sustained = False, True
                else:
                    v.release(release_samples)

    def set_sustain(self, down: bool, release_samples: float) -> None:
        self.sustain = down
        if not down:
            for v in self.voices:
                if v.sustained:
                    v.release(release_samples)

    def all_off(self, release_samples: float) -> None:
        for v in self.voices:
            if v.sounding:
                v.release(release_samples)
            v.held = v.sustained = False

    def play(self, velocity: float, attack_samples: float, release_samples: float, start: float) -> Voice:
        """``/sono/play``: voice 0, legato while it sounds (its stream and envelope carry on)."""
        v = self.voices[0]
        if not v.sounding:
            self._fresh(v)
        elif v.note is not None:   # a note held voice 0: /sono/play takes it over
            v.held = v.sustained = False
        self.expression.target[0] = EXPRESSION_RESET
        v.note, v.pitch = None, 0.0
        v.playhead.set_position(start)
        v.start(velocity, attack_samples)
        if velocity <= 0.0:
            v.env_step = 1.0 / release_samples
        return v

    def express(self, note: float, k: int, x: float) -> None:
        """Expression ``k`` (an index of :data:`EXPRESSION`) of the voice sounding ``note`` becomes ``x``: smoothed,
        or at once for a voice started on fresh streams in this change batch (:attr:`started`)."""
        e = self.expression
        for v in self.voices:
            if v.note == note and v.sounding:
                e.target[v.index, k] = x
                if any(s is v for s in self.started):
                    e.value[v.index, k] = x

    def expression_of(self, v: Voice):
        """``(bend, pressure, timbre)`` of voice or ghost ``v`` now."""
        return self.expression.value[v.index] if v.index >= 0 else v.expression

    # -- after each frame ------------------------------------------------------------------------
    def settle(self) -> None:
        """Hand back the streams of voices that went silent and of ghosts that faded out."""
        for v in self.voices:
            if v.streams and not v.sounding:
                self.give_streams(v)
        keep = []
        for g in self.ghosts:
            if g.fade > 0.0 and g.sounding:
                keep.append(g)
            else:
                self.give_streams(g)
        self.ghosts = keep
