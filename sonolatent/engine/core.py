"""The engine's deterministic heart: control state -> one latent column per mel frame -> audio.

:class:`EngineCore` has no threads, clocks or devices. The live engine and
``sonolatent bounce`` drive it the same way: ``apply(changes)`` at a block
boundary, then ``render_block()``; one block is one mel frame (``hop`` samples
at the model rate), resampled to the output rate. Given the same changes at
the same block indices it produces the same samples, bit for bit.

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
4. ``StreamingSynth.process(z, transpose)`` renders the frame; the samples get
   the envelope (linear attack/release, velocity), the gain (ramped across the
   block) and, when quitting, a short fade.

Live input (:mod:`.live`, when the core is handed a live encoder, ``live_input``): ``/sono/input/slot K``
puts the live source in slot K's place in every blend (morph, xy, weights); its column each block is
the next latent frame of the input fed with :meth:`EngineCore.feed_input`, or silence while the gate
is closed. While it is bound the voice does not end with the sounds (no release at the end of a
one-shot playhead), the wet output passes the gate, and ``/sono/input/wet`` mixes in the dry input.
"""

from __future__ import annotations

import math

import numpy as np

from ..params.namespace import MAX_SLOTS, Param, build_namespace
from ..params.values import initial_values, linked_values
from ..errors import SonolatentError
from .live import LiveInput
from .playhead import LOOP_OFF, Playhead

#: Length of the fade-out when the daemon quits.
QUIT_FADE_SECONDS = 0.05
#: Smoothed values closer than this to their target snap to it.
SNAP = 1e-7


class Smoothed:
    """A one-pole smoothed vector; ``step(a)`` moves ``value`` towards ``target`` by ``1 - a``."""

    def __init__(self, value):
        self.value = np.array(value, np.float64, ndmin=1)
        self.target = self.value.copy()

    def set(self, target) -> None:
        self.target[:] = target

    def step(self, a: float) -> None:
        self.value += (1.0 - a) * (self.target - self.value)
        close = np.abs(self.target - self.value) < SNAP
        self.value[close] = self.target[close]


class Resampler:
    """Streaming model-rate -> output-rate conversion (soxr, aligned, steady output)."""

    def __init__(self, rate_in: int, rate_out: int):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.ratio = self.rate_out / self.rate_in
        self.stream = None
        if self.rate_in != self.rate_out:
            import soxr
            # vr=True: steady output every chunk (~5 ms lag) instead of HQ's bursts of ~20 ms
            self.stream = soxr.ResampleStream(self.rate_in, self.rate_out, 1, dtype="float32",
                                              quality="HQ", vr=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x)


class EngineCore:
    """Control state and rendering of one voice; see the module docstring."""

    def __init__(self, synth, output_rate: int | None = None, namespace: dict[str, Param] | None = None,
                 live_input=None):
        bundle = synth.bundle
        self.bundle = bundle
        self.synth = synth
        synth.reset()
        self.model_rate = bundle.sample_rate
        self.output_rate = int(output_rate or self.model_rate)
        self.hop = bundle.mel_config.hop_length
        self.dt = self.hop / self.model_rate
        self.D = bundle.vae.latent_dim
        self.namespace = namespace or build_namespace(self.D, MAX_SLOTS)
        vae = bundle.vae
        self.pca_mean = vae.pca_mean.detach().double().numpy().copy()
        self.pca_comp = vae.pca_components.detach().double().numpy().copy()
        self.pca_std = vae.pca_std.detach().double().numpy().copy()
        self.values: dict[str, tuple] = initial_values(self.namespace)
        v = self.values
        self.slots: list = [None] * MAX_SLOTS
        self.playhead = Playhead()
        self.playhead.mode = v["/sono/loop/mode"][0]
        self.playhead.loop_start, self.playhead.loop_end = v["/sono/loop/start"][0], v["/sono/loop/end"][0]
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
        self.smoothed = (self.gain, self.rate, self.transpose, self.weights, self.offsets, self.scales)
        self.glide = np.zeros(self.D)
        self.env = 0.0
        self.env_target = 0.0
        self.env_step = 1.0
        self.fade = 1.0
        self.quitting = False
        self.finished = False
        self.block = 0
        self.samples_out = 0
        self.resampler = Resampler(self.model_rate, self.output_rate)
        self._ramp = np.arange(1, self.hop * 4 + 1, dtype=np.float64)
        self.live = None
        self.live_column = None
        if live_input is not None:   # a LiveEncoder (models/encoder.py), handed in like the synth
            self.live = LiveInput(live_input, self.synth.delay, self.model_rate)
            self.live_column = self.live.silence.copy()

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
        return self.env_target > 0.0 or self.env > 0.0

    def output_index_of_block(self, block: int) -> float:
        """Output-rate sample index of the first sample that block ``block`` renders."""
        return (block * self.hop - self.synth.delay) * self.output_rate / self.model_rate

    def _target_weights(self) -> np.ndarray:
        v = self.values
        w = np.zeros(MAX_SLOTS)
        if self.blend_source == "morph":
            a, b = v["/sono/morph/pair"]
            m = v["/sono/morph"][0]
            w[a] += 1.0 - m
            w[b] += m
        elif self.blend_source == "xy":
            x, y = v["/sono/xy"]
            w[:4] = ((1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y)
        else:
            w[:] = v["/sono/weights"]
            s = w.sum()
            w = w / s if s > 0 else w
        return w

    def latent(self, position: float | None = None) -> np.ndarray:
        """The raw latent (without glide) at ``position`` with the current smoothed controls."""
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
        applied, for the performance log.
        """
        before = self.latent()
        applied = []
        for address, values in changes:
            p = self.namespace.get(address)
            if p is None:
                raise SonolatentError(f"{address}: no such address")
            vals = tuple(values)
            self._apply_one(address, vals, sounds or {})
            applied.append((address, vals))
        self.glide += before - self.latent()
        return applied

    def _apply_one(self, a: str, vals: tuple, sounds: dict) -> None:
        v = self.values
        p = self.namespace[a]
        if not p.action and p.access & 2:
            v.update(linked_values(a, vals, v.get))
        ph = self.playhead
        if a == "/sono/play":
            vel = vals[0] if vals else 1.0
            ph.set_position(self.start_point)
            self.env_target = vel
            self.env_step = 1.0 / (v["/sono/attack"][0] * self.model_rate)
            if vel <= 0.0:
                self.env_step = 1.0 / (v["/sono/release"][0] * self.model_rate)
        elif a == "/sono/stop":
            self.env_target = 0.0
            self.env_step = 1.0 / (v["/sono/release"][0] * self.model_rate)
        elif a == "/sono/quit":
            self.quitting = True
        elif a == "/sono/gain":
            self.gain.set(vals)
        elif a == "/sono/rate":
            self.rate.set(vals)
        elif a == "/sono/transpose":
            self.transpose.set(vals)
        elif a == "/sono/position":
            ph.set_position(vals[0])
            self.start_point = vals[0]
        elif a == "/sono/loop/mode":
            ph.mode = vals[0]
        elif a == "/sono/loop/start":
            ph.loop_start = vals[0]
        elif a == "/sono/loop/end":
            ph.loop_end = vals[0]
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
    def render_block(self) -> np.ndarray:
        """Render one mel frame; returns the new output-rate samples (float32)."""
        a = self.smooth_coef
        g0 = float(self.gain.value[0])
        for s in self.smoothed:
            s.step(a)
        g1 = float(self.gain.value[0])
        live = self.live if self.live_slot >= 0 else None
        if live is not None:
            self.live_column = live.take(self.values["/sono/input/gate"][0])
            self.values["/sono/input/level"] = (float(live.level),)
        z = self.latent() + self.glide
        self.glide *= a
        self.glide[np.abs(self.glide) < SNAP] = 0.0
        y = self.synth.process(z.astype(np.float32)[:, None], float(self.transpose.value[0]))
        n = len(y)
        if live is not None:
            wet = self.values["/sono/input/wet"][0]
            y = y * live.gate_ramp(n)
            if wet < 1.0:
                y = wet * y + (1.0 - wet) * live.dry_block(n)
            else:
                live.dry_block(n)
        if n:
            r = self._ramp[:n]
            gain = g0 + (g1 - g0) * (r / n)
            env = self._envelope(r)
            amp = gain * env
            if self.quitting:
                fade = np.maximum(self.fade - r / (QUIT_FADE_SECONDS * self.model_rate), 0.0)
                self.fade = float(fade[-1])
                amp = amp * fade
            y = (y * amp).astype(np.float32)
        elif self.quitting:
            self.fade = max(0.0, self.fade - self.hop / (QUIT_FADE_SECONDS * self.model_rate))
        if self.quitting and self.fade <= 0.0:
            self.finished = True
        self._advance()
        self.values["/sono/position"] = (float(self.playhead.position),)
        self.values["/sono/playing"] = (int(self.sounding),)
        self.block += 1
        out = self.resampler(np.ascontiguousarray(y, np.float32))
        self.samples_out += len(out)
        return out

    def _envelope(self, r: np.ndarray) -> np.ndarray:
        e0, tgt = self.env, self.env_target
        if e0 < tgt:
            env = np.minimum(e0 + self.env_step * r, tgt)
        elif e0 > tgt:
            env = np.maximum(e0 - self.env_step * r, tgt)
        else:
            return np.full(len(r), e0)
        self.env = float(env[-1])
        return env

    def _advance(self) -> None:
        ph = self.playhead
        if not self.sounding or self.free:
            return
        rate = float(self.rate.value[0])
        wrapped = ph.advance(rate, self.sound_length())
        if wrapped:
            a, b = ph.loop_points()
            end, start = (b, a) if rate * ph.direction > 0 else (a, b)
            self.glide += self.latent(end) - self.latent(start)
        if ph.ended and ph.mode == LOOP_OFF and self.env_target > 0.0 and self.live_slot < 0:
            self.env_target = 0.0
            self.env_step = 1.0 / (self.values["/sono/release"][0] * self.model_rate)
