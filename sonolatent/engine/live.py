"""The live input as a source of the engine: input samples in, one latent column per block out.

:class:`LiveInput` belongs to an :class:`~.core.EngineCore` and runs where the core runs (the
producer thread live, the caller offline): ``push(samples)`` (model rate) applies the input gain and
runs the live encoder (the streaming mel and the causal encoder) on them; every block the core takes
the next latent frame with :meth:`take`. The audio callback never calls it: it only copies input
samples into a ring that the producer drains.

Per frame, the **gate** compares the frame's level (the input's RMS over the mel window, after the
gain) with ``/sono/input/gate``: open at the threshold, closed 6 dB below it (hysteresis). While it is
closed the live source's column is the latent of silence (what the encoder makes of zeros), so the
decoder's history holds silence, not the noise floor; and the wet output is faded by a gate envelope
(2 ms attack, 20 ms release) that is delayed by the synth's delay, so that it meets the audio of the
frames it was computed on. The **dry** signal is the gained input delayed to line up with the model's
output (an input sample ``i`` meets output sample ``i``), mixed by ``/sono/input/wet``.
"""

from __future__ import annotations

import collections
import math

import numpy as np

#: The gate closes this many dB below its (opening) threshold.
GATE_HYSTERESIS_DB = 6.0
GATE_ATTACK_S = 0.002
GATE_RELEASE_S = 0.02
LEVEL_FLOOR_DB = -120.0


def level_db(rms: float) -> float:
    return max(LEVEL_FLOOR_DB, 20.0 * math.log10(rms)) if rms > 0 else LEVEL_FLOOR_DB


class LiveInput:
    """One live input stream; see the module docstring."""

    def __init__(self, encoder, synth_delay: int, rate: int):
        self.encoder = encoder          # a models.encoder.LiveEncoder, handed in (the engine builds no model)
        self.encoder.reset()
        self.hop = self.encoder.hop
        self.rate = rate
        self.silence = self.encoder.silence()
        self.frames: collections.deque = collections.deque()   # (column (D,) float64, level linear)
        self.dry = collections.deque()                        # gained input chunks not yet mixed (aligned)
        self.dry_held = 0
        self.gain = 1.0
        self.gate_open = False
        self.gate_env = 0.0
        self.gates = collections.deque([0.0] * max(1, -(-synth_delay // self.hop)))   # the gate, delayed
        self.level = LEVEL_FLOOR_DB     # the last frame's level, dBFS
        self.power = 0.0                # the last frame's mean square while the gate passes it (the loudness reference)
        self.late = 0                   # blocks rendered before their input frame had arrived
        self.skipped = 0                # frames dropped to catch up after the input stalled
        self.samples_in = 0
        self.ended = False

    @property
    def delay(self) -> int:
        """The encoder's delay (samples, the decoder's count); the whole path adds the synth's."""
        return self.encoder.delay

    def ready(self) -> int:
        return len(self.frames)

    def push(self, samples: np.ndarray) -> int:
        """Input samples at the model rate; returns how many latent frames became ready."""
        x = np.asarray(samples, np.float32).reshape(-1)
        if self.gain != 1.0:
            x = x * np.float32(self.gain)
        self.samples_in += len(x)
        self.dry.append(x)
        self.dry_held += len(x)
        z, lev = self.encoder.process(x)
        return self._queue(z, lev)

    def end(self) -> int:
        """No more input (offline): the frames that read past its end."""
        self.ended = True
        z, lev = self.encoder.flush()
        return self._queue(z, lev)

    def _queue(self, z, lev) -> int:
        for k in range(z.shape[1]):
            self.frames.append((z[:, k].astype(np.float64), float(lev[k])))
        return z.shape[1]

    def skip(self) -> None:
        """Drop the oldest frame and its hop of dry input (to win back latency after a stall)."""
        if self.frames:
            self.frames.popleft()
            self._pop_dry(self.hop)
            self.skipped += 1

    def take(self, threshold_db: float) -> np.ndarray:
        """The next block's latent column (the frame, or silence while the gate is closed or the frame is
        late); updates the level and the gate."""
        if self.frames:
            col, rms = self.frames.popleft()
            self.level = level_db(rms)
        else:
            col, rms = None, 0.0
            if not self.ended:
                self.late += 1
            self.level = LEVEL_FLOOR_DB
        if self.level >= threshold_db:
            self.gate_open = True
        elif self.level < threshold_db - GATE_HYSTERESIS_DB:
            self.gate_open = False
        self.gates.append(1.0 if (self.gate_open and col is not None) else 0.0)
        self._late_block = col is None
        self.power = rms * rms if (col is not None and self.gate_open) else 0.0
        return col if (col is not None and self.gate_open) else self.silence

    def gate_ramp(self, n: int) -> np.ndarray:
        """The wet signal's gate envelope for the ``n`` samples the block renders (delayed to its audio)."""
        target = self.gates.popleft()
        e0 = self.gate_env
        if n == 0:
            return np.zeros(0)
        step = 1.0 / ((GATE_ATTACK_S if target > e0 else GATE_RELEASE_S) * self.rate)
        r = np.arange(1, n + 1, dtype=np.float64) * step
        env = np.minimum(e0 + r, target) if target >= e0 else np.maximum(e0 - r, target)
        self.gate_env = float(env[-1])
        return env

    def dry_block(self, n: int) -> np.ndarray:
        """The ``n`` dry samples that line up with the block's ``n`` output samples (zeros for a late
        block: its frame did not come, so the input that belongs to later output must wait)."""
        if self._late_block:
            return np.zeros(n, np.float32)
        return self._pop_dry(n)

    _late_block = False

    def _pop_dry(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        i = 0
        while i < n and self.dry:
            c = self.dry[0]
            k = min(n - i, len(c))
            out[i:i + k] = c[:k]
            if k == len(c):
                self.dry.popleft()
            else:
                self.dry[0] = c[k:]
            i += k
        self.dry_held -= i
        return out
