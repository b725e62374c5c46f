"""Compiled per-frame kernels of the vocoder's inference path (numba, which librosa already needs).

Both are a few operations on every bin, where torch's or numpy's per-call overhead (microseconds per
operation) would cost more than the arithmetic. Training differentiates through the torch versions
of the same arithmetic in :mod:`.vocoder`; the two are tested equal.

:class:`SparsePrior`: the mel prior (the envelope map, then multiplicative NNLS steps) with its
matrices stored sparse: each STFT bin lies in at most two mel bands, so a frame costs a few thousand
multiply-adds instead of eight dense products of 100 x 513.

:func:`carry_frames`: the carried phase (``Vocoder(phase_carry=True)``).

The phase runs on from synthesis frame to synthesis frame like a phase vocoder's with identity phase
locking. For each frame, each bin belongs to its nearest local maximum of the log-magnitude about to be
synthesised; that peak's frequency is placed between bins by a parabola through its log-magnitude and
its neighbours'. The peak's phase is the last frame's phase at its bin advanced at that frequency, and
the bins around it keep a Hann window's alternating phase pattern about it. A gate per bin mixes that
carried phase with the network's own phase; the mix is renormalised to a unit phasor.

It is a recurrence over frames with a gather across bins; :func:`carry_frames` is the one
implementation used live and offline, ``Vocoder._carry_phase`` the one training differentiates.
"""

from __future__ import annotations

import math

import numba
import numpy as np


def _compiled(fn):
    """``numba.njit``, cached on disk where numba finds a writable cache folder (the package's
    ``__pycache__``, else the user's cache), compiled afresh in each process where it finds none."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:   # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


@_compiled
def _carry_frames(logmag, own_phase, gate, prev, up, per, rad, mag, out):   # pragma: no cover - compiled
    n_frames, n = logmag.shape
    shift = np.empty(n, np.float32)
    peak = np.empty(n, np.bool_)
    own = np.empty(n, np.int64)
    cur = prev.copy()
    new = np.empty(n, np.complex64)
    locked = np.empty(n, np.complex64)
    far = 4 * n
    half, lo, hi, tiny, eps = np.float32(0.5), np.float32(-0.5), np.float32(0.5), np.float32(-1e-6), np.float32(1e-6)
    radf = np.float32(rad)
    for t in range(n_frames):
        m = logmag[t]
        for k in range(n):
            a = m[k - 1] if k > 0 else m[0]
            c = m[k + 1] if k < n - 1 else m[n - 1]
            curve = min(a - np.float32(2.0) * m[k] + c, tiny)
            shift[k] = min(max(half * (a - c) / curve, lo), hi)
            peak[k] = m[k] >= a and m[k] > c
        last = -far
        for k in range(n):
            if peak[k]:
                last = k
            own[k] = last
        nxt = far
        for k in range(n - 1, -1, -1):
            if peak[k]:
                nxt = k
            j = own[k] if k - own[k] <= nxt - k else nxt
            own[k] = min(max(j, 0), n - 1)
        # each peak's carried phasor, once per peak (bins 0 and n - 1 too: the owners when no peak exists)
        for k in range(n):
            if peak[k] or k == 0 or k == n - 1:
                adv = (np.float32(k % per) + shift[k]) * radf
                locked[k] = cur[k] * np.complex64(complex(math.cos(adv), math.sin(adv)))
        g = gate[t // up]
        for k in range(n):
            j = own[k]
            carried = -locked[j] if (k - j) % 2 else locked[j]   # a Hann window alternates about its peak
            o = own_phase[t, k]
            re = o.real + g[k] * (carried.real - o.real)
            im = o.imag + g[k] * (carried.imag - o.imag)
            r = np.float32(1.0) / max(math.sqrt(re * re + im * im), eps)
            if not math.isfinite(r * re + r * im):   # a bad value must not latch in the state: start afresh
                re, im, r = np.float32(1.0), np.float32(0.0), np.float32(1.0)
            new[k] = np.complex64(complex(re * r, im * r))
            out[t, k] = new[k] * mag[t, k]
        cur[:] = new
    return cur


def carry_frames(logmag: np.ndarray, own_phase: np.ndarray, gate: np.ndarray, prev: np.ndarray | None, up: int,
                 hops_per_frame: int, radians_per_bin: float, mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectra for ``F`` synthesis frames (``mag`` times the unit phasors) and the last frame's unit
    phasors (the state to carry on).

    ``logmag``: ``(F, bins)`` float32, the log-magnitude about to be synthesised; ``own_phase``:
    ``(F, bins)`` complex64, the network's own phase as unit phasors; ``gate``: ``(ceil(F / up), bins)``
    float32 in [0, 1], one row per mel frame (0: the network's phase, 1: the carried phase); ``prev``: ``(bins,)`` complex64, the last frame's
    phasors (``None`` at the start: all ones). A bin advances ``radians_per_bin`` per bin of frequency
    per synthesis hop; ``hops_per_frame`` (n_fft / hop) hops turn any whole bin a whole number of turns.
    ``mag``: ``(F, bins)`` float32, the magnitude to put on the phasors (``exp(logmag)``).
    """
    logmag = np.ascontiguousarray(logmag, np.float32)
    own_phase = np.ascontiguousarray(own_phase, np.complex64)
    gate = np.ascontiguousarray(gate, np.float32)
    n = logmag.shape[1]
    prev = np.ones(n, np.complex64) if prev is None else np.ascontiguousarray(prev, np.complex64)
    out = np.empty(logmag.shape, np.complex64)
    mag = np.ascontiguousarray(mag, np.float32)
    last = _carry_frames(logmag, own_phase, gate, prev, up, hops_per_frame, radians_per_bin, mag, out)
    return out, last


@_compiled
def _csr_matvec(ptr, idx, val, x, out):   # pragma: no cover - compiled
    for r in range(len(ptr) - 1):
        acc = np.float32(0.0)
        for i in range(ptr[r], ptr[r + 1]):
            acc += val[i] * x[idx[i]]
        out[r] = acc


@_compiled
def _sparse_prior(e, env, fb, fbt, scale, iters, floor, out):   # pragma: no cover - compiled
    n_bins = len(env[0]) - 1
    _csr_matvec(env[0], env[1], env[2], e, out)
    if iters:
        target = np.empty(n_bins, np.float32)
        _csr_matvec(fbt[0], fbt[1], fbt[2], e * scale, target)
        bands = np.empty(len(fb[0]) - 1, np.float32)
        back = np.empty(n_bins, np.float32)
        for _ in range(iters):
            _csr_matvec(fb[0], fb[1], fb[2], out, bands)
            _csr_matvec(fbt[0], fbt[1], fbt[2], bands, back)
            for k in range(n_bins):
                out[k] = out[k] * target[k] / max(back[k], np.float32(1e-9))
    for k in range(n_bins):
        out[k] = math.log(max(out[k], floor))


@_compiled
def _sparse_prior_frames(e, env, fb, fbt, scale, iters, floor, out):   # pragma: no cover - compiled
    for t in range(e.shape[0]):
        _sparse_prior(e[t], env, fb, fbt, scale, iters, floor, out[t])


def _csr(m: np.ndarray):
    rows, cols = np.nonzero(m)
    ptr = np.zeros(m.shape[0] + 1, np.int64)
    np.add.at(ptr, rows + 1, 1)
    return np.cumsum(ptr), cols.astype(np.int64), m[rows, cols].astype(np.float32)


class SparsePrior:
    """The vocoder's log mel prior: linear mel ``(n_mels,)`` -> ``log(max(prior, floor))`` on the STFT bins
    ``(bins,)``, the arithmetic of ``Vocoder._prior`` with sparse matrices. Inference uses it on every path
    (one frame live, :meth:`frames` offline), so a bounce computes the very numbers the live engine does."""

    def __init__(self, envelope: np.ndarray, filterbank: np.ndarray | None, target_scale: float, iters: int,
                 floor: float):
        self.env = _csr(envelope)
        fb = filterbank if filterbank is not None else np.zeros((1, envelope.shape[0]), np.float32)
        self.fb, self.fbt = _csr(fb), _csr(np.ascontiguousarray(fb.T))
        self.scale, self.iters, self.floor = np.float32(target_scale), int(iters), np.float32(floor)
        self.n_bins = envelope.shape[0]

    def __call__(self, linear_mel: np.ndarray) -> np.ndarray:
        return self.frames(linear_mel[None])[0]

    def frames(self, linear_mel: np.ndarray) -> np.ndarray:
        """Frame by frame: ``(T, n_mels)`` -> ``(T, bins)``."""
        out = np.empty((linear_mel.shape[0], self.n_bins), np.float32)
        _sparse_prior_frames(np.ascontiguousarray(linear_mel, np.float32), self.env, self.fb, self.fbt, self.scale,
                             self.iters, self.floor, out)
        return out
