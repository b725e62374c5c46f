"""The engine's deterministic heart: control state -> one latent column per voice and mel frame -> audio.

:class:`EngineCore` has no threads, clocks or devices. The live engine and
``sonolatent bounce`` drive it the same way: ``apply(changes)`` at a block
boundary, then ``render_frame()`` (one mel frame, ``hop`` samples at the model
rate, into a pre-mix) and ``commit()`` until it is handed on (``chunk`` samples
at a time, resampled to the output rate; ``render_block()`` does both). Changes
that arrive while a frame is being committed go through ``apply_late()``:
voices they start or whose envelope they move enter that frame from its first
uncommitted sample. Given the same changes at the same blocks (and samples) it
produces the same samples, bit for bit.

Per block:

1. Smoothed controls move one step towards their targets (one-pole, time
   constant ``/sono/smooth``): gain, rate, transpose, the blend weights, the
   PCA offsets and scales.
2. Every loaded slot is read at the playhead's normalised position
   (:meth:`SlotSound.column`), the columns are blended by the weights (the
   weight of an empty slot goes to the latent mean), and in PCA space each
   coordinate becomes ``c * scale + offset * pca_std``. In free mode the slots
   are ignored: ``z = from_pca(offset * pca_std)``.
3. Discrete changes (a position jump, a slot loaded or cleared, free mode, a
   loop wrap) would jump the latent: the jump is added to a *glide* vector that
   decays with the same smoothing, so nothing clicks (``/sono/smooth 0`` jumps).
4. Steps 2-3 happen for every sounding voice (:mod:`.voices`), each at its own
   playhead with its own glide; all of them are rendered by ONE
   :class:`~sonolatent.models.batched.BatchSynth` call, each transposed by
   ``/sono/transpose`` plus its note's distance from ``/sono/note/root`` plus its
   own bend (``/sono/note/bend``). A voice's pressure and timbre
   (``/sono/note/pressure``, ``/sono/note/timbre``, MPE) add to its latent along
   the PCA coordinates ``/sono/note/pressure/coord`` and
   ``/sono/note/timbre/coord``: ``pressure * depth`` and
   ``(2 * timbre - 1) * depth`` standard deviations. The per-voice expression is
   smoothed like the controls of step 1 (:attr:`VoiceBank.expression`).
   Each voice's samples get its envelope (linear attack/release, velocity),
   the voices are summed into the pre-mix; the gain (ramped across the block)
   and, when quitting, a short fade apply as each chunk is committed. The
   first ``delay`` samples of the whole output (the synthesis window's
   lead-in) are dropped, so output sample ``k`` is model sample ``k`` of block
   0's timeline.
5. After resampling, chunk by chunk, the output stage (:mod:`.safety`: loudness tracking toward
   the blended sounds' own loudness, summed over the sounding voices, then the
   limiter) makes the summed ``(frames, channels)`` block safe, once.

Live input (:mod:`.live`, when the core is handed a live encoder, ``live_input``): ``/sono/input/slot K``
puts the live source in slot K's place in every voice's blend (morph, xy, weights); its column each
block is the next latent frame of the input fed with :meth:`EngineCore.feed_input`, or silence while the
gate is closed. While it is bound no voice ends with the sounds (no release at the end of a one-shot
playhead); the summed wet output passes the gate, and ``/sono/input/wet`` mixes in the dry input (under
voice 0's envelope, the ``/sono/play`` voice), before the gain and the output stage.
"""

from __future__ import annotations

import math

import numpy as np

from ..params.namespace import MAX_SLOTS, Param, build_namespace
from ..params.values import initial_values, linked_values
from ..errors import SonolatentError
from .live import LiveInput
from .playhead import LOOP_OFF
from .safety import FREE_POWER, OutputStage, SafetyConfig, power_at
from .smooth import SNAP, Smoothed
from .voices import EXPRESSION, VoiceBank

#: Length of the fade-out when the daemon quits.
QUIT_FADE_SECONDS = 0.05
#: Voices when none is asked for (``serve --voices``).
DEFAULT_VOICES = 8


class _Mixed:
    """How one voice entered the last rendered frame: its output rows (one, or left and right), their pan
    gains (a number or a per-sample ramp), its envelope, its envelope value before the frame and its share
    of the loudness reference (before the envelope); kept so a change applied late can redo its share."""

    __slots__ = ("voice", "streams", "rows", "gains", "env", "env_start", "power")

    def __init__(self, voice, rows, gains, env, env_start, power):
        self.voice, self.streams = voice, tuple(voice.streams)
        self.rows, self.gains, self.env, self.env_start, self.power = rows, gains, env, env_start, power

    def add(self, mix, ref, env, at: int, env_sq=None) -> None:
        """``mix[at:] += rows * env * gains`` and ``ref[at:] += power * env_sq`` (default ``env * env``)."""
        if len(self.rows) == 1:
            mix[at:] += self.rows[0][at:] * env[at:]
        else:
            for c in (0, 1):
                g = self.gains[c]
                mix[at:, c] += self.rows[c][at:] * (env[at:] * (g[at:] if isinstance(g, np.ndarray) else g))
        sq = env * env if env_sq is None else env_sq
        ref[at:] += self.power * sq[at:]


#: Resampler qualities (``serve --resampler``): the soxr settings tried, in order (the first whose
#: output comes steadily, chunk by chunk, is used).
RESAMPLERS = {
    # flat to 20 kHz; soxr's variable-rate mode keeps its output steady chunk by chunk at any ratio, but
    # holds back ~261 output samples at 44.1 -> 48 kHz (5.4 ms) whatever the quality asked of it
    "hq": (("HQ", True),),
    # flat to 16 kHz (-3.5 dB at 18 kHz, images below -65 dB), a fixed-rate filter that holds back ~22
    # samples at 44.1 -> 48 kHz (0.5 ms). At some ratios (2:1, downsampling) soxr runs it in bursts of
    # several hundred samples: there the variable-rate filter is used instead
    "lq": (("LQ", False), ("HQ", True)),
}
#: The default: the one that fits the key-to-sound budget (docs/engine.md, Delays).
DEFAULT_RESAMPLER = "lq"
#: Model-rate samples handed on at a time (resampler, output stage, ring, recorder) in every mode.
COMMIT_CHUNK = 64


class Resampler:
    """Streaming model-rate -> output-rate conversion (soxr, aligned, steady output).

    ``channels``: 1 (blocks ``(n,)``) or more (blocks ``(n, channels)``). ``quality``: a key of
    :data:`RESAMPLERS`. ``delay``: output samples it holds back once running steadily, measured at
    construction on a throwaway stream fed ``chunk``-sample blocks (which also tells whether a setting's
    output comes steadily; ``setting`` is the one used).
    """

    def __init__(self, rate_in: int, rate_out: int, channels: int = 1, chunk: int = 512,
                 quality: str = DEFAULT_RESAMPLER):
        if quality not in RESAMPLERS:
            raise SonolatentError(f"--resampler {quality}: must be one of {', '.join(RESAMPLERS)}")
        self.quality = quality
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.ratio = self.rate_out / self.rate_in
        self.stream = None
        self.setting = None
        self.delay = 0
        if self.rate_in == self.rate_out:
            return
        silence = np.zeros((chunk, channels) if channels > 1 else chunk, np.float32)
        for setting in RESAMPLERS[quality]:
            probe, given, held = self._open(channels, setting), 0, []
            for i in range(max(24, 12288 // chunk)):
                given += len(probe.resample_chunk(silence))
                held.append((i + 1) * chunk * self.ratio - given)
            steady = held[len(held) // 3:]
            if max(steady) - min(steady) <= chunk * self.ratio + 2:
                break
        self.setting = setting
        self.stream = self._open(channels, setting)
        self.delay = int(round(float(np.mean(steady))))

    def _open(self, channels: int, setting):
        import soxr
        q, vr = setting
        return soxr.ResampleStream(self.rate_in, self.rate_out, channels, dtype="float32", quality=q, vr=vr)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x)


class EngineCore:
    """Control state and rendering of ``voices`` voices; see the module docstring.

    ``synth`` is handed in (the engine never imports the models): anything with ``bundle`` and
    ``batch(streams)``, which gives the batched synth the voices render through
    (``StreamingSynth.batch`` -> ``models.batched.BatchSynth``). ``live_input``: a live encoder
    (``models.encoder.LiveEncoder``), handed in the same way, for the live input source. ``safety``:
    what the output stage does (default: loudness tracking and the limiter, :class:`~.safety.SafetyConfig`).
    """

    def __init__(self, synth, output_rate: int | None = None, namespace: dict[str, Param] | None = None,
                 voices: int = DEFAULT_VOICES, channels: int = 1, safety: SafetyConfig | None = None,
                 live_input=None, resampler: str = DEFAULT_RESAMPLER, chunk: int = COMMIT_CHUNK):
        if not isinstance(voices, int) or not 1 <= voices <= 64:
            raise SonolatentError(f"--voices {voices}: must be 1..64")
        if channels not in (1, 2):
            raise SonolatentError(f"--channels {channels}: must be 1 or 2")
        self.channels = channels
        bundle = synth.bundle
        self.bundle = bundle
        self.model_rate = bundle.sample_rate
        self.output_rate = int(output_rate or self.model_rate)
        self.hop = bundle.mel_config.hop_length
        self.dt = self.hop / self.model_rate
        self.D = bundle.vae.latent_dim
        self.namespace = namespace or build_namespace(self.D, MAX_SLOTS)
        self.bank = VoiceBank(voices, self.D, self.model_rate)
        self.synth = synth.batch(self.bank.capacity)   # every voice's streams, rendered in one call a frame
        vae = bundle.vae
        self.pca_mean = vae.pca_mean.detach().double().numpy().copy()
        self.pca_comp = vae.pca_components.detach().double().numpy().copy()
        self.pca_std = vae.pca_std.detach().double().numpy().copy()
        # the latent map (/sono/map, /sono/slot/K/map): PCA coordinates 0 and 1 in standard deviations
        self.map_proj = np.zeros((2, self.D))
        k = min(2, self.D)
        self.map_proj[:k] = self.pca_comp[:k] / np.maximum(self.pca_std[:k], 1e-12)[:, None]
        self.values: dict[str, tuple] = initial_values(self.namespace)
        v = self.values
        v["/sono/voices"] = (voices,)
        self.slots: list = [None] * MAX_SLOTS
        for voice in self.bank.voices:
            self._loop_settings(voice.playhead)
        self.start_point = v["/sono/position"][0]
        self.playhead.set_position(self.start_point)
        self.blend_source = "weights"
        self.free = bool(v["/sono/free"][0])
        self.gain = Smoothed(v["/sono/gain"])
        self.rate = Smoothed(v["/sono/rate"])
        self.transpose = Smoothed(v["/sono/transpose"])
        self.weights = Smoothed(self._target_weights())
        self.offsets = Smoothed(v["/sono/latent"])
        self.scales = Smoothed([v[f"/sono/latent/{k}/scale"][0] for k in range(self.D)])
        self.width = Smoothed(v["/sono/width"])
        self.smoothed = (self.gain, self.rate, self.transpose, self.weights, self.offsets, self.scales, self.width,
                         self.bank.expression)
        self._expression_dirs()
        spread = np.zeros(self.D)                  # the left channel's offset direction at width 1 (in latent units)
        spread[1 % self.D] += 1.0
        spread[2 % self.D] -= 1.0
        self._width_dir = self.pca_comp.T @ (spread * self.pca_std)
        self.fade = 1.0
        self.quitting = False
        self.finished = False
        self.block = 0
        self.samples_out = 0
        self.note_voices: list[tuple[float, int]] = []   # (pitch, voice) of each note-on, for replies
        self._skip = self.synth.delay                     # the lead-in still to drop from the output
        if not (isinstance(chunk, int) and 1 <= chunk <= self.hop and self.hop % chunk == 0):
            raise SonolatentError(f"commit chunk {chunk!r}: must divide the hop ({self.hop})")
        self.chunk = chunk
        self.resampler = Resampler(self.model_rate, self.output_rate, channels, chunk, resampler)
        # the last rendered frame, before the gain: the voices' sum, the gain/fade ramp and the loudness
        # reference per sample (see render_frame); `committed` of its samples are handed on
        self._mix = self._amp = self._ref = None
        self.committed = 0
        self._rendered: list = []   # how each voice entered that frame (_Mixed), for changes applied late
        self.output = OutputStage(self.output_rate, safety)
        # the synth plays a block's latent this many blocks later: each voice keeps the loudness of its
        # sources at the latents of its last blocks (Voice.loudness) for the output stage's reference
        self._ref_lag = int(round(self.synth.delay / self.hop))
        self._ramp = np.arange(1, self.hop + 1, dtype=np.float64)
        self.live = None
        self.live_column = None
        if live_input is not None:   # a LiveEncoder (models/encoder.py), handed in like the synth
            self.live = LiveInput(live_input, self.synth.delay, self.model_rate)
            self.live_column = self.live.silence.copy()

    # -- voice 0 (the /sono/play voice) seen as the single voice of earlier versions -------------------
    @property
    def playhead(self):
        return self.bank.voices[0].playhead

    @property
    def glide(self) -> np.ndarray:
        return self.bank.voices[0].glide

    @property
    def env(self) -> float:
        return self.bank.voices[0].env

    @property
    def env_target(self) -> float:
        return self.bank.voices[0].env_target

    # -- live input ------------------------------------------------------------------------------
    @property
    def live_slot(self) -> int:
        """The slot the live input plays in, -1 when none."""
        return self.values.get("/sono/input/slot", (-1,))[0] if self.live is not None else -1

    def feed_input(self, samples: np.ndarray) -> int:
        """Input samples at the model rate (the producer's call); returns the latent frames now ready."""
        if self.live is None:
            return 0
        self.live.gain = 10.0 ** (self.values["/sono/input/gain"][0] / 20.0)
        return self.live.push(samples)

    @property
    def live_delay(self) -> int:
        """Samples (model rate) from an input sample to the output sample it lines up with becoming final."""
        return (self.live.delay if self.live is not None else 0) + self.synth.delay

    # -- derived --------------------------------------------------------------------------------
    @property
    def smooth_coef(self) -> float:
        tau = self.values["/sono/smooth"][0]
        return math.exp(-self.dt / tau) if tau > 0 else 0.0

    @property
    def sounding(self) -> bool:
        return any(v.sounding for v in self.bank.voices)

    @property
    def delay(self) -> int:
        """Model samples from a block's start to the first output sample it renders (``BatchSynth.delay``)."""
        return self.synth.delay

    def output_index_of_block(self, block: int) -> float:
        """Output-rate sample index of the first sample that block ``block`` renders."""
        return (block * self.hop - self.synth.delay) * self.output_rate / self.model_rate

    def _samples(self, address: str) -> float:
        return self.values[address][0] * self.model_rate

    def _loop_settings(self, ph) -> None:
        v = self.values
        ph.mode = v["/sono/loop/mode"][0]
        ph.loop_start, ph.loop_end = v["/sono/loop/start"][0], v["/sono/loop/end"][0]

    def _target_weights(self) -> np.ndarray:
        """The blend in effect: ``/sono/weights`` holds it whichever way it was set (``linked_values``)."""
        return np.array(self.values["/sono/weights"], np.float64)

    def _expression_dirs(self) -> None:
        """The latent directions of a voice's pressure (at 1) and timbre (at 1, from 0.5), from their settings."""
        v = self.values
        dirs = []
        for what in ("pressure", "timbre"):
            k = v[f"/sono/note/{what}/coord"][0]
            dirs.append(self.pca_comp[k] * (self.pca_std[k] * v[f"/sono/note/{what}/depth"][0]))
        self._pressure_dir, self._timbre_dir = dirs

    def voice_offset(self, voice) -> np.ndarray:
        """What ``voice``'s pressure and timbre add to its latent now."""
        _, pressure, timbre = self.bank.expression_of(voice)
        return pressure * self._pressure_dir + (2.0 * timbre - 1.0) * self._timbre_dir

    def latent(self, position: float | None = None) -> np.ndarray:
        """The raw latent (without glide) at ``position`` (default: voice 0's) with the current smoothed controls."""
        off = self.offsets.value * self.pca_std
        if self.free:
            c = off
        else:
            p = self.playhead.position if position is None else position
            w = self.weights.value
            live = self.live_slot
            z = self.pca_mean * max(0.0, 1.0 - sum(w[i] for i, s in enumerate(self.slots)
                                                   if s is not None or i == live))
            for i, s in enumerate(self.slots):
                if i == live and w[i] != 0.0:
                    z = z + w[i] * self.live_column
                elif s is not None and w[i] != 0.0:
                    z = z + w[i] * s.column(p)
            c = (self.pca_comp @ (z - self.pca_mean)) * self.scales.value + off
        return self.pca_comp.T @ c + self.pca_mean

    def sound_length(self) -> float:
        """Blend-weighted length of the loaded sounds in mel frames (the playhead's rate-1 length)."""
        w = self.weights.value
        num = den = 0.0
        for i, s in enumerate(self.slots):
            if s is not None and i != self.live_slot:
                num += w[i] * s.n_frames
                den += w[i]
        if den > 1e-9:
            return num / den
        lens = [s.n_frames for i, s in enumerate(self.slots) if s is not None and i != self.live_slot]
        return float(np.mean(lens)) if lens else self.model_rate / self.hop

    # -- control ---------------------------------------------------------------------------------
    def apply(self, changes, sounds: dict | None = None) -> list:
        """Apply ``(address, values)`` changes together at this block boundary.

        ``sounds`` maps slot index -> :class:`SlotSound` for ``/sono/slot/K/load``
        changes (loading happens elsewhere; this only installs). The values are
        checked where they entered (``params.values``). Returns the changes as
        applied, for the performance log. :attr:`note_voices` lists
        ``(pitch, voice)`` for each ``/sono/note/on`` of this call (voice -1 for
        velocity 0, a note off).
        """
        bank = self.bank
        tracked = [v for v in bank.voices if v.sounding or v.index == 0] + bank.ghosts
        before = [self.latent(v.playhead.position) + self.voice_offset(v) for v in tracked]
        bank.started.clear()
        self.note_voices = []
        applied = []
        for address, values in changes:
            p = self.namespace.get(address)
            if p is None:
                raise SonolatentError(f"{address}: no such address")
            vals = tuple(values)
            self._apply_one(address, vals, sounds or {})
            applied.append((address, vals))
        fresh = set(map(id, bank.started))
        for v, z in zip(tracked, before):   # discrete jumps glide; a voice started afresh has nothing to glide from
            if id(v) not in fresh:
                v.glide += z - self.latent(v.playhead.position) - self.voice_offset(v)
        self.values["/sono/voices/active"] = (bank.n_sounding(),)
        self.values["/sono/playing"] = (int(self.sounding),)
        return applied

    def _apply_one(self, a: str, vals: tuple, sounds: dict) -> None:
        v = self.values
        p = self.namespace[a]
        if not p.action and p.access & 2:
            v.update(linked_values(a, vals, v.get))
        bank = self.bank
        if a == "/sono/note/on":
            pitch, vel = vals
            if vel <= 0.0:
                bank.note_off(pitch, self._samples("/sono/release"))
                self.note_voices.append((pitch, -1))
                return
            semis = pitch - v["/sono/note/root"][0]
            pan = min(1.0, max(-1.0, v["/sono/pan"][0] + v["/sono/spread"][0] * semis / 24.0))
            voice = bank.note_on(pitch, semis, vel, self._samples("/sono/attack"), self.start_point, pan)
            self.note_voices.append((pitch, voice.index))
        elif a == "/sono/note/off":
            bank.note_off(vals[0], self._samples("/sono/release"))
        elif a in EXPRESSION:
            bank.express(vals[0], EXPRESSION.index(a), vals[1])
        elif a.startswith(("/sono/note/pressure/", "/sono/note/timbre/")):
            self._expression_dirs()
        elif a == "/sono/sustain":
            bank.set_sustain(bool(vals[0]), self._samples("/sono/release"))
        elif a == "/sono/allnotesoff":
            bank.all_off(self._samples("/sono/release"))
        elif a == "/sono/voices/steal":
            bank.steal = vals[0]
        elif a == "/sono/play":
            bank.play(vals[0] if vals else 1.0, self._samples("/sono/attack"), self._samples("/sono/release"),
                      self.start_point).pan = v["/sono/pan"][0]
        elif a == "/sono/pan":
            if bank.voices[0].note is None:
                bank.voices[0].pan = vals[0]
        elif a == "/sono/width":
            self.width.set(vals)
        elif a == "/sono/stop":
            bank.voices[0].release(self._samples("/sono/release"))
        elif a == "/sono/quit":
            self.quitting = True
        elif a == "/sono/gain":
            self.gain.set(vals)
        elif a == "/sono/rate":
            self.rate.set(vals)
        elif a == "/sono/transpose":
            self.transpose.set(vals)
        elif a == "/sono/position":
            self.playhead.set_position(vals[0])
            self.start_point = vals[0]
        elif a.startswith("/sono/loop/"):
            for voice in bank.voices + bank.ghosts:
                self._loop_settings(voice.playhead)
        elif a in ("/sono/morph", "/sono/morph/pair"):
            self.blend_source = "morph"
            self.weights.set(self._target_weights())
        elif a.startswith("/sono/xy"):
            self.blend_source = "xy"
            self.weights.set(self._target_weights())
        elif a == "/sono/weights":
            self.blend_source = "weights"
            self.weights.set(self._target_weights())
        elif a == "/sono/free":
            self.free = bool(vals[0])
        elif a == "/sono/latent" or (a.startswith("/sono/latent/") and not a.endswith("/scale")):
            self.offsets.set(v["/sono/latent"])
        elif a.startswith("/sono/latent/") and a.endswith("/scale"):
            self.scales.target[int(a.split("/")[3])] = vals[0]
        elif a.startswith("/sono/slot/"):
            k = int(a.split("/")[3])
            if a.endswith("/load") or a.endswith("/timbre"):
                sound = sounds.get(k)
                if sound is None:
                    raise SonolatentError(f"{a}: no encoded sound given to install")
                self.slots[k] = sound
                v[f"/sono/slot/{k}/name"] = (sound.name,)
            elif a.endswith("/clear"):
                self.slots[k] = None
                v[f"/sono/slot/{k}/name"] = ("",)

    # -- rendering -------------------------------------------------------------------------------
    def render_frame(self) -> None:
        """Stage 1: render one mel frame of every sounding voice (one batched synth call) into the pre-mix.

        Nothing is handed on here: :meth:`commit` does that, ``chunk`` samples at a time. What the commit
        needs is kept per sample (the voices' sum before the gain, the gain and fade ramp, the loudness
        reference), so nothing rendered depends on when it is committed."""
        if self.uncommitted:
            raise RuntimeError("render_frame: the last frame is not committed yet")
        a = self.smooth_coef
        g0 = float(self.gain.value[0])
        for s in self.smoothed:
            s.step(a)
        g1 = float(self.gain.value[0])
        live = self.live if self.live_slot >= 0 else None
        if live is not None:
            self.live_column = live.take(self.values["/sono/input/gate"][0])
            self.values["/sono/input/level"] = (float(live.level),)
        bank = self.bank
        wide = self._wide()
        rendered = [v for v in bank.active() if self._streams_for(v, wide)]
        for voice in bank.voices + bank.ghosts:
            if voice not in rendered:
                voice.glide *= a
                voice.glide[np.abs(voice.glide) < SNAP] = 0.0
        n = self.hop
        r = self._ramp
        stereo = self.channels == 2
        mix = np.zeros((n, 2) if stereo else n)
        ref = np.zeros(n)   # the mean square the sum should have, before the gain (see _heard_power)
        self._rendered = self._render_voices(rendered, wide, mix, ref, 0, a)
        if live is not None:   # the summed wet output passes the gate; the dry input lines up with the output
            env0 = next((m.env for m in self._rendered if m.voice is bank.voices[0]), None)
            ramp = live.gate_ramp(n)
            mix = mix * (ramp[:, None] if stereo else ramp)
            lead = min(self._skip, n)   # the lead-in the output drops: no dry input belongs to it
            dry = np.zeros(n, np.float32)
            dry[lead:] = live.dry_block(n - lead)
            wet = self.values["/sono/input/wet"][0]
            if wet < 1.0:
                d = (1.0 - wet) * dry * (env0 if env0 is not None else 0.0)
                mix = wet * mix + (d[:, None] if stereo else d)
        amp = g0 + (g1 - g0) * (r / n)
        if self.quitting:
            fade = np.maximum(self.fade - r / (QUIT_FADE_SECONDS * self.model_rate), 0.0)
            self.fade = float(fade[-1])
            amp = amp * fade
            if self.fade <= 0.0:
                self.finished = True
        self._mix, self._amp, self._ref, self.committed = mix, amp, ref, 0
        for voice in bank.voices + bank.ghosts:
            self._advance(voice)
        bank.settle()
        self.values["/sono/position"] = (float(self.playhead.position),)
        self.values["/sono/playing"] = (int(self.sounding),)
        self.values["/sono/voices/active"] = (bank.n_sounding(),)
        self._update_map(self.latent(self.playhead.position) + bank.voices[0].glide)   # voice 0: /sono/play's sound
        self.block += 1

    @property
    def uncommitted(self) -> int:
        """Model samples of the last rendered frame not yet handed on by :meth:`commit`."""
        return self.hop - self.committed if self._mix is not None else 0

    def commit(self) -> np.ndarray:
        """Stage 2: hand on the next ``chunk`` samples of the last rendered frame: gain, the lead-in dropped,
        resampled, through the output stage. Returns the new output-rate samples (float32, ``(n,)`` mono or
        ``(n, 2)`` stereo; none while the lead-in or a hold-back swallows them)."""
        c = self.committed
        k = min(self.chunk, self.uncommitted)
        if k <= 0:
            return np.zeros((0, 2) if self.channels == 2 else 0, np.float32)
        amp = self._amp[c:c + k]
        mix = self._mix[c:c + k]
        y = (mix * (amp[:, None] if mix.ndim == 2 else amp)).astype(np.float32)
        reference = float(np.mean(self._ref[c:c + k] * (amp * amp)))
        self.committed = c + k
        if self._skip:
            s = min(self._skip, len(y))
            self._skip -= s
            y = y[s:]
        out = self.output.process(self.resampler(np.ascontiguousarray(y, np.float32)), reference)
        self.samples_out += len(out)
        return out

    def render_block(self) -> np.ndarray:
        """One frame rendered and committed whole (chunk by chunk, as the live engine does); returns its
        output-rate samples."""
        self.render_frame()
        parts = [self.commit() for _ in range(self.hop // self.chunk)]
        return np.concatenate(parts)

    def apply_late(self, changes, sounds: dict | None = None, at: int | None = None) -> list:
        """Apply changes while the last rendered frame is being committed, from its sample ``at`` on
        (default: the first uncommitted one): a note-on or ``/sono/play`` does not wait for the next frame.

        Everything else a change does takes effect from the next frame, as with :meth:`apply` at the
        frame boundary (nothing committed reads the control state). What changes inside this frame is
        the envelopes: a voice started on fresh streams renders this frame alone (its own streams, the
        frame's smoothed state, which changes only when a frame is rendered) with its envelope starting at
        ``at`` (:attr:`Voice.onset`), added into the pre-mix; a voice already in the frame whose envelope
        was retargeted (a legato restart, a release) has its share from ``at`` on redone with the new
        envelope. ``bounce`` replays the same call at the same ``at``, so the samples are the same."""
        if at is None:
            at = self.committed
        if self._mix is None or not self.committed <= at < self.hop:
            raise SonolatentError(f"a late change at sample {at} of a frame that cannot take it")
        bank = self.bank
        env_before = {id(v): (v.env_target, v.env_step) for v in bank.voices}
        applied = self.apply(changes, sounds)
        fresh = [v for v in bank.voices if v.sounding and not v.streams]
        for m in self._rendered:   # voices of this frame whose envelope moved: redo their share from `at` on
            v = m.voice
            if v.index >= 0 and tuple(v.streams) == m.streams and env_before.get(id(v)) != (v.env_target, v.env_step):
                self._reshape(m, at)
        if fresh:
            wide = self._wide()
            fresh = [v for v in fresh if self._streams_for(v, wide)]
            for v in fresh:
                v.onset = at
            self._rendered += self._render_voices(fresh, wide, self._mix, self._ref, at, None)
            for v in fresh:
                self._advance(v)
        self.values["/sono/voices/active"] = (bank.n_sounding(),)
        self.values["/sono/playing"] = (int(self.sounding),)
        return applied

    def _wide(self) -> bool:
        """Stereo with width (or on its way to it): voices get a second stream."""
        return self.channels == 2 and (float(self.width.value[0]) > 0.0 or self.width.target[0] > 0.0)

    def _render_voices(self, voices, wide: bool, mix, ref, at: int, a) -> list:
        """Render ``voices`` (streams given) in one synth call and add their shares into ``mix`` and ``ref``
        from sample ``at`` on; returns how each entered (:class:`_Mixed`). ``a``: the glide decay to apply
        after their latents are taken (None: a late voice, started afresh, has no glide)."""
        if not voices:
            return []
        bank = self.bank
        stereo = self.channels == 2
        width = float(self.width.value[0]) if stereo else 0.0
        transpose = float(self.transpose.value[0])
        rows, Z, semis = [], [], []
        for voice in voices:
            z = self.latent(voice.playhead.position) + voice.glide + self.voice_offset(voice)
            st = transpose + voice.pitch + float(bank.expression_of(voice)[0])
            if len(voice.streams) == 2:   # left and right: the latent offset either way
                rows += voice.streams
                Z += [z + width * self._width_dir, z - width * self._width_dir]
                semis += [st, st]
            else:
                rows.append(voice.streams[0])
                Z.append(z)
                semis.append(st)
            if a is not None:
                voice.glide *= a
                voice.glide[np.abs(voice.glide) < SNAP] = 0.0
        Y = self.synth.process(np.array(rows, np.int64), np.array(Z, np.float32), semis)
        n = self.hop
        r = self._ramp
        out = []
        k = 0
        for voice in voices:
            env_start = voice.env
            env = voice.envelope(r)
            heard = self._heard_power(voice)
            if not stereo:
                m = _Mixed(voice, (Y[k],), (1.0,), env, env_start, heard)
                k += 1
            else:
                left = Y[k]
                right = Y[k + 1] if len(voice.streams) == 2 else left
                k += len(voice.streams)
                if len(voice.streams) == 2 and not wide:   # narrowed to 0: the right fades onto the left, then goes
                    right = right + (left - right) * (r / n)
                    bank.drop_second_stream(voice)
                gl, gr = min(1.0, 1.0 - voice.pan), min(1.0, 1.0 + voice.pan)
                l0, r0 = voice.gains or (gl, gr)
                voice.gains = (gl, gr)
                m = _Mixed(voice, (left, right),
                           ((l0 + (gl - l0) * (r / n)) if l0 != gl else gl, (r0 + (gr - r0) * (r / n)) if r0 != gr else gr),
                           env, env_start, heard * 0.5 * (gl * gl + gr * gr))   # the mean over both channels
            m.add(mix, ref, env, at)
            out.append(m)
        return out

    def _reshape(self, m: "_Mixed", at: int) -> None:
        """Redo voice ``m.voice``'s share of the last frame from sample ``at`` on with its new envelope."""
        v = m.voice
        v.env = float(m.env[at - 1]) if at > 0 else m.env_start
        v.onset = at
        env = v.envelope(self._ramp)
        delta = env - m.env
        m.add(self._mix, self._ref, delta, at, env * env - m.env * m.env)
        m.env = np.concatenate([m.env[:at], env[at:]])

    def source_power(self, position: float) -> float:
        """The mean square of the sounds blended at ``position``: the blend-weighted loudness of the slots'
        own sounds there (the latent mean's share, and free mode, at ``FREE_POWER``; the live input's share
        at its current frame's mean square, 0 while the gate is closed)."""
        if self.free:
            return FREE_POWER
        w = self.weights.value
        p, rest = 0.0, 1.0
        live = self.live_slot
        if live >= 0 and w[live] != 0.0:   # the live source: its current frame's own loudness
            p += w[live] * self.live.power
            rest -= w[live]
        for i, s in enumerate(self.slots):
            if s is not None and w[i] != 0.0 and i != live:
                p += w[i] * power_at(s.power, position)
                rest -= w[i]
        return p + max(0.0, rest) * FREE_POWER

    def _heard_power(self, voice) -> float:
        """The loudness ``voice`` should have in this block's samples, for the output stage's reference.

        The synth plays a latent ``_ref_lag`` blocks after it is given, so each voice keeps the loudness
        of its sources at the latents of its last blocks (:attr:`Voice.loudness`, cleared when it starts
        on a fresh stream, whose first blocks are the lead-in: no reference); this block hears the
        oldest. The caller weights it by the voice's envelope (velocity), its pan and the gain; the
        sounding voices' shares add up.
        """
        hist = voice.loudness
        hist.append(self.source_power(voice.playhead.position))
        return hist.pop(0) if len(hist) > self._ref_lag else 0.0

    def _update_map(self, z: np.ndarray) -> None:
        """The current sound and each loaded slot (at the playhead) as points of the latent map."""
        v, proj, mean = self.values, self.map_proj, self.pca_mean
        x, y = proj @ (z - mean)
        v["/sono/map"] = (float(x), float(y))
        p = self.playhead.position
        for k, s in enumerate(self.slots):
            if s is not None:
                x, y = proj @ (s.column(p) - mean)
                v[f"/sono/slot/{k}/map"] = (float(x), float(y))

    def _streams_for(self, voice, wide: bool) -> bool:
        """Give ``voice`` its stream (fresh) and, spread in stereo, a second one (a copy of the first); False
        when the pool is empty (more steals in one frame than it holds: the voice stays silent)."""
        bank = self.bank
        if not voice.streams:
            s = bank.take_stream()
            if s is None:
                voice.env = voice.env_target = 0.0
                return False
            self.synth.reset(s)
            voice.streams = [s]
            voice.loudness.clear()
        if wide and len(voice.streams) == 1:
            s = bank.take_stream()
            if s is not None:
                self.synth.copy(voice.streams[0], s)
                voice.streams.append(s)
        return True

    def _advance(self, voice) -> None:
        ph = voice.playhead
        if not voice.sounding or self.free:
            return
        rate = float(self.rate.value[0])
        wrapped = ph.advance(rate, self.sound_length())
        if wrapped:
            a, b = ph.loop_points()
            end, start = (b, a) if rate * ph.direction > 0 else (a, b)
            voice.glide += self.latent(end) - self.latent(start)
        if ph.ended and ph.mode == LOOP_OFF and voice.env_target > 0.0 and self.live_slot < 0:
            voice.release(self._samples("/sono/release"))
