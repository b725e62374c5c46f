"""Output safety: the last stage of every render path (loudness tracking, then a peak limiter).

:class:`OutputStage` takes the output-rate blocks a render path produces
(``(frames,)`` or ``(frames, channels)`` float32, channels linked) and
returns them made safe, in place:

1. **Loudness tracking** (``track``). A latent offset or a blend can make
   the decoded voice far louder or quieter than the sounds it is made of
   (``/sono/latent/0 -3`` on a piano/strings blend: +21.5 dBFS). The stage
   measures the block's short-term loudness (mean square, one-pole average
   over :data:`TRACK_WINDOW_S`) and the same measure of a *reference* the
   caller hands in with every block: the mean square the voice should have
   (for the engine, the blend-weighted loudness of the slots' own sounds at
   the playhead, times the gain and envelope). A slow gain (cuts within
   :data:`TRACK_CUT_S`, boosts within :data:`TRACK_BOOST_S`, limited to
   -:data:`TRACK_MAX_CUT_DB` .. +:data:`TRACK_MAX_BOOST_DB`) moves the output
   toward the reference; a block where either is below :data:`GATE_DB`
   (silence, the end of a release, a latent that decodes to nothing) leaves
   the measures and the gain as they are. It adds no delay.
2. **Limiter** (``limiter``). No sample leaves above ``ceiling_db``
   (-0.3 dBFS by default). It looks :data:`LOOKAHEAD_S` ahead: the gain
   starts to fall that long before a peak, so it never has to jump, and
   recovers with :data:`RELEASE_S`. The gain is shared by all channels.
   The lookahead is a delay: the stage holds back ``delay`` samples (the first
   ``delay`` samples of a stream are withheld, like the synth's and the
   resampler's own delays, so sample indices keep their meaning); a final
   clamp at the ceiling guards against rounding.

Both run in compiled loops over preallocated state (no allocation per
sample or per block), on the thread that renders (the engine's producer),
never in the audio callback. Given the same blocks and references the
output is the same, bit for bit, so a bounce equals the performance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SonolatentError

#: The limiter's ceiling (dBFS): no output sample exceeds it.
CEILING_DB = -0.3
#: How far the limiter looks ahead (its delay), seconds.
LOOKAHEAD_S = 0.002
#: Time constant of the limiter's recovery after a peak, seconds.
RELEASE_S = 0.08
#: Time constant of the short-term loudness measure (output and reference alike), seconds.
TRACK_WINDOW_S = 0.2
#: Time constants of the tracking gain: how fast it cuts and how fast it boosts, seconds.
TRACK_CUT_S = 0.1
TRACK_BOOST_S = 0.3
#: Range of the tracking gain, dB.
TRACK_MAX_CUT_DB = 40.0
TRACK_MAX_BOOST_DB = 24.0
#: Below this short-term level (dBFS, mean square) the tracking gain holds.
GATE_DB = -60.0
#: The reference level of the latent mean's share of a blend and of free mode (dBFS, mean square).
FREE_LEVEL_DB = -14.0
FREE_POWER = 10.0 ** (FREE_LEVEL_DB / 10.0)


def add_safety_arguments(parser, *, default=True) -> None:
    """``--limiter on|off`` and ``--loudness track|off`` (``default=None``: as the input says)."""
    parser.add_argument("--limiter", choices=("on", "off"), default="on" if default else None,
                        help=f"the output limiter: no sample above {CEILING_DB:g} dBFS, "
                             f"{LOOKAHEAD_S * 1e3:g} ms lookahead"
                             + (" (default: on)" if default else " (default: as played)"))
    parser.add_argument("--loudness", choices=("track", "off"), default="track" if default else None,
                        help="track the voice's loudness toward the loudness of the sounds it is made of"
                             + (" (default: track)" if default else " (default: as played)"))


def config_from_args(args, base: "SafetyConfig | None" = None) -> "SafetyConfig":
    """The :class:`SafetyConfig` that ``--limiter``/``--loudness`` ask for (unset ones from ``base``)."""
    base = base or SafetyConfig()
    lim, loud = getattr(args, "limiter", None), getattr(args, "loudness", None)
    return SafetyConfig(base.limiter if lim is None else lim == "on",
                        base.track if loud is None else loud == "track", base.ceiling_db)


@dataclass(frozen=True)
class SafetyConfig:
    """What the output stage does; written into performance logs so a bounce does the same."""

    limiter: bool = True
    track: bool = True
    ceiling_db: float = CEILING_DB

    def to_dict(self) -> dict:
        return {"limiter": self.limiter, "track": self.track, "ceiling_db": self.ceiling_db}

    @classmethod
    def from_dict(cls, d: dict | None) -> "SafetyConfig":
        """From a log header; an older log without one played with neither stage."""
        if d is None:
            return cls(limiter=False, track=False)
        if not isinstance(d, dict):
            raise SonolatentError(f"output stage settings: expected a table, got {d!r}")
        return cls(bool(d.get("limiter", True)), bool(d.get("track", True)),
                   float(d.get("ceiling_db", CEILING_DB)))


def frame_power(audio: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Mean square of ``audio`` per mel frame (``n_frames`` values, frame ``k`` = samples ``k*hop`` on)."""
    x = np.asarray(audio, np.float64)
    pad = np.zeros(n_frames * hop)
    m = min(len(x), len(pad))
    pad[:m] = x[:m] ** 2
    return pad.reshape(n_frames, hop).mean(axis=1)


def power_at(power: np.ndarray, position: float) -> float:
    """``power`` (per mel frame) at normalised ``position`` (0..1), interpolated linearly."""
    n = len(power)
    if n == 0:
        return 0.0
    j = min(max(position, 0.0), 1.0) * (n - 1)
    i0 = int(j)
    i1 = min(i0 + 1, n - 1)
    w = j - i0
    return float(power[i0] * (1.0 - w) + power[i1] * w)


def _track(x, ref, st, a_win, a_cut, a_boost, gate, lo_db, hi_db):   # pragma: no cover - compiled
    # st: [measured power, reference power, gain dB]
    n, ch = x.shape
    if n == 0:
        return
    acc = 0.0
    for i in range(n):
        for c in range(ch):
            v = np.float64(x[i, c])
            acc += v * v
    m = acc / (n * ch)
    g0 = st[2]
    if m > gate and ref > gate:        # silence and blocks without a reference neither measure nor move
        st[0] = a_win * st[0] + (1.0 - a_win) * m
        st[1] = a_win * st[1] + (1.0 - a_win) * ref
        target = 10.0 * math.log10(st[1] / st[0])
        target = min(max(target, lo_db), hi_db)
        a = a_cut if target < g0 else a_boost
        st[2] = a * g0 + (1.0 - a) * target
    g1 = st[2]
    if g0 == 0.0 and g1 == 0.0:
        return
    l0 = 10.0 ** (g0 / 20.0)
    l1 = 10.0 ** (g1 / 20.0)
    for i in range(n):
        g = l0 + (l1 - l0) * ((i + 1.0) / n)
        for c in range(ch):
            x[i, c] = np.float32(x[i, c] * g)


def _limit(x, line, req, env, ist, fst, ceiling, rel):   # pragma: no cover - compiled
    # line (L, ch): the last L input frames; req (L + 1,): the gains they and the new frame need;
    # env (L,): the recovering gain envelope, box-averaged into the applied gain;
    # ist: [line index, req index, frames seen]; fst: [last envelope value, min of req, sum of env].
    # Returns how many frames at the start of this block to withhold (the stream's first L).
    n, ch = x.shape
    L = env.shape[0]
    seen = ist[2]
    for i in range(n):
        a = 0.0
        for c in range(ch):
            v = abs(np.float64(x[i, c]))
            if v > a:
                a = v
        r = ceiling / a if a > ceiling else 1.0
        j = ist[1]
        old = req[j]
        req[j] = r
        ist[1] = (j + 1) % (L + 1)
        if r <= fst[1]:
            fst[1] = r
        elif old <= fst[1]:            # the window's minimum left it: look again
            h = 1.0
            for k in range(L + 1):
                if req[k] < h:
                    h = req[k]
            fst[1] = h
        e = 1.0 - (1.0 - fst[0]) * rel
        if fst[1] < e:
            e = fst[1]
        fst[0] = e
        d = ist[0]
        fst[2] += e - env[d]
        env[d] = e
        g = fst[2] / L
        for c in range(ch):
            y = line[d, c] * g
            if y > ceiling:
                y = ceiling
            elif y < -ceiling:
                y = -ceiling
            line[d, c] = x[i, c]
            x[i, c] = np.float32(y)
        ist[0] = (d + 1) % L
    ist[2] = seen + n
    return max(0, min(n, L - seen))


_KERNELS: list = []


def _kernels():
    """``(track, limit)`` compiled (numba, cached on disk where it can be) and run once, on first use:
    importing this module stays cheap (``--help``), and the first block of a performance pays nothing."""
    if not _KERNELS:
        import numba

        def jit(fn):
            try:
                return numba.njit(cache=True, nogil=True)(fn)
            except RuntimeError:   # no writable cache folder: compile afresh in each process
                return numba.njit(nogil=True)(fn)

        track, limit = jit(_track), jit(_limit)
        x = np.zeros((4, 1), np.float32)
        track(x, 0.0, np.zeros(3), 0.5, 0.5, 0.5, 1e-6, -1.0, 1.0)
        limit(x, np.zeros((2, 1), np.float32), np.ones(3), np.ones(2), np.zeros(3, np.int64),
              np.array([1.0, 1.0, 2.0]), 0.9, 0.5)
        _KERNELS.extend((track, limit))
    return _KERNELS


class OutputStage:
    """Loudness tracking and the limiter for one output stream at ``rate`` Hz; see the module docstring."""

    def __init__(self, rate: int, config: SafetyConfig | None = None):
        self.rate = int(rate)
        self.config = config or SafetyConfig()
        self.ceiling = float(np.float32(10.0 ** (self.config.ceiling_db / 20.0)))
        self.lookahead = max(1, int(round(LOOKAHEAD_S * self.rate)))
        self._track_state = np.zeros(3)
        self._channels = 0
        self._gate = 10.0 ** (GATE_DB / 10.0)
        self._rel = math.exp(-1.0 / (RELEASE_S * self.rate))
        self._lim_i = np.zeros(3, np.int64)
        self._lim_f = np.zeros(3)
        self._alloc(1)
        self._track, self._limit = _kernels()

    @property
    def delay(self) -> int:
        """Samples the stage holds back (the limiter's lookahead; 0 when the limiter is off)."""
        return self.lookahead if self.config.limiter else 0

    @property
    def gain_db(self) -> float:
        """The tracking gain now, dB."""
        return float(self._track_state[2])

    @property
    def reduction_db(self) -> float:
        """How far the limiter's gain is below 1 now, dB (0 when it is not limiting)."""
        return float(-20.0 * math.log10(max(self._lim_f[0], 1e-12))) if self.config.limiter else 0.0

    def _alloc(self, channels: int) -> None:
        L = self.lookahead
        self._channels = channels
        self._line = np.zeros((L, channels), np.float32)
        self._req = np.ones(L + 1)
        self._env = np.ones(L)
        self._lim_f[:] = (1.0, 1.0, float(L))

    def process(self, x: np.ndarray, reference: float | None) -> np.ndarray:
        """Make the block ``x`` safe, in place; returns it (without the samples the limiter withholds).

        ``reference`` is the mean square the block should have (0 or None: no
        reference, the tracking gain holds).
        """
        y = x if x.ndim == 2 else x.reshape(-1, 1)
        n = y.shape[0]
        if n == 0:
            return x
        dt = n / self.rate
        if self.config.track:
            self._track(y, float(reference or 0.0), self._track_state, math.exp(-dt / TRACK_WINDOW_S),
                   math.exp(-dt / TRACK_CUT_S), math.exp(-dt / TRACK_BOOST_S), self._gate,
                   -TRACK_MAX_CUT_DB, TRACK_MAX_BOOST_DB)
        if self.config.limiter:
            if y.shape[1] != self._channels:
                self._alloc(y.shape[1])
            skip = self._limit(y, self._line, self._req, self._env, self._lim_i, self._lim_f, self.ceiling, self._rel)
            if skip:
                return x[skip:]
        return x

    def flush(self) -> np.ndarray:
        """The samples still held back (offline renders call this at the end; the live engine never does)."""
        if not self.config.limiter:
            return np.zeros((0, max(self._channels, 1)), np.float32)
        z = np.zeros((self.lookahead, self._channels), np.float32)
        self._limit(z, self._line, self._req, self._env, self._lim_i, self._lim_f, self.ceiling, self._rel)
        return z
