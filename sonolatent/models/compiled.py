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
from numba import types
from numba.extending import overload


def _compiled(fn=None, *, fastmath=False):
    """``numba.njit``, cached on disk where numba finds a writable cache folder (the package's
    ``__pycache__``, else the user's cache), compiled afresh in each process where it finds none.
    ``fastmath``: sums may be reordered (vectorised); only for kernels whose callers tolerate rounding."""
    if fn is None:
        return lambda f: _compiled(f, fastmath=fastmath)
    try:
        return numba.njit(cache=True, nogil=True, fastmath=fastmath)(fn)
    except RuntimeError:   # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, fastmath=fastmath)(fn)


@_compiled
def _carry_frames(logmag, phase, gate, prev, up, per, rad, mag, out):   # pragma: no cover - compiled
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
            o_re, o_im = np.float32(math.cos(phase[t, k])), np.float32(math.sin(phase[t, k]))   # the network's own
            re = o_re + g[k] * (carried.real - o_re)
            im = o_im + g[k] * (carried.imag - o_im)
            r = np.float32(1.0) / max(math.sqrt(re * re + im * im), eps)
            if not math.isfinite(r * re + r * im):   # a bad value must not latch in the state: start afresh
                re, im, r = np.float32(1.0), np.float32(0.0), np.float32(1.0)
            new[k] = np.complex64(complex(re * r, im * r))
            out[t, k] = new[k] * mag[t, k]
        cur[:] = new
    return cur


def carry_frames(logmag: np.ndarray, phase: np.ndarray, gate: np.ndarray, prev: np.ndarray | None, up: int,
                 hops_per_frame: int, radians_per_bin: float, mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectra for ``F`` synthesis frames (``mag`` times the unit phasors) and the last frame's unit
    phasors (the state to carry on).

    ``logmag``: ``(F, bins)`` float32, the log-magnitude about to be synthesised; ``phase``:
    ``(F, bins)`` float32, the network's own phase in radians; ``gate``: ``(ceil(F / up), bins)``
    float32 in [0, 1], one row per mel frame (0: the network's phase, 1: the carried phase); ``prev``: ``(bins,)`` complex64, the last frame's
    phasors (``None`` at the start: all ones). A bin advances ``radians_per_bin`` per bin of frequency
    per synthesis hop; ``hops_per_frame`` (n_fft / hop) hops turn any whole bin a whole number of turns.
    ``mag``: ``(F, bins)`` float32, the magnitude to put on the phasors (``exp(logmag)``).
    """
    logmag = np.ascontiguousarray(logmag, np.float32)
    phase = np.ascontiguousarray(phase, np.float32)
    gate = np.ascontiguousarray(gate, np.float32)
    n = logmag.shape[1]
    prev = np.ones(n, np.complex64) if prev is None else np.ascontiguousarray(prev, np.complex64)
    out = np.empty(logmag.shape, np.complex64)
    mag = np.ascontiguousarray(mag, np.float32)
    last = _carry_frames(logmag, phase, gate, prev, up, hops_per_frame, radians_per_bin, mag, out)
    return out, last


@_compiled(fastmath=True)
def _band_rows(band, x, out):   # pragma: no cover - compiled
    """``out = M @ x`` for a matrix stored by rows, each row's span of columns contiguous (:func:`_banded`)."""
    starts, stops, offsets, w = band
    for r in range(len(starts)):
        acc = np.float32(0.0)
        o = offsets[r] - starts[r]
        for j in range(starts[r], stops[r]):
            acc += w[o + j] * x[j]
        out[r] = acc


@_compiled(fastmath=True)
def _band_cols(band, y, out):   # pragma: no cover - compiled
    """``out = M.T @ y`` for the same storage: each row scattered onto its contiguous span."""
    starts, stops, offsets, w = band
    out[:] = 0
    for r in range(len(starts)):
        o, yr = offsets[r] - starts[r], y[r]
        for j in range(starts[r], stops[r]):
            out[j] += w[o + j] * yr


@_compiled
def _sparse_prior(e, env, fb, scale, iters, floor, out):   # pragma: no cover - compiled
    n_bins = out.shape[0]
    _band_rows(env, e, out)
    if iters:
        target = np.empty(n_bins, np.float32)
        _band_cols(fb, e * scale, target)
        bands = np.empty(len(fb[0]), np.float32)
        back = np.empty(n_bins, np.float32)
        for _ in range(iters):
            _band_rows(fb, out, bands)
            _band_cols(fb, bands, back)
            for k in range(n_bins):
                out[k] = out[k] * target[k] / max(back[k], np.float32(1e-9))
    for k in range(n_bins):
        out[k] = math.log(max(out[k], floor))


@_compiled
def _sparse_prior_frames(e, env, fb, scale, iters, floor, out):   # pragma: no cover - compiled
    for t in range(e.shape[0]):
        _sparse_prior(e[t], env, fb, scale, iters, floor, out[t])


def _banded(m: np.ndarray):
    """A matrix by rows, each row kept from its first to its last nonzero column: (starts, stops, offsets into
    the weights, weights). The mel maps are banded (each band covers neighbouring bins; each bin lies in at
    most two bands), so this holds their few thousand nonzeros in runs the compiler can vectorise."""
    starts, stops = np.zeros(m.shape[0], np.int64), np.zeros(m.shape[0], np.int64)
    for r in range(m.shape[0]):
        nz = np.flatnonzero(m[r])
        if len(nz):
            starts[r], stops[r] = nz[0], nz[-1] + 1
    offsets = np.concatenate([[0], np.cumsum(stops - starts)]).astype(np.int64)
    weights = np.concatenate([m[r, starts[r]:stops[r]] for r in range(m.shape[0])] + [np.zeros(0)])
    return starts, stops, offsets, weights.astype(np.float32)


EMPTY_BAND = _banded(np.zeros((0, 0), np.float32))


class SparsePrior:
    """The vocoder's log mel prior: linear mel ``(n_mels,)`` -> ``log(max(prior, floor))`` on the STFT bins
    ``(bins,)``, the arithmetic of ``Vocoder._prior`` with sparse matrices. Inference uses it on every path
    (one frame live, :meth:`frames` offline), so a bounce computes the very numbers the live engine does."""

    def __init__(self, envelope: np.ndarray, filterbank: np.ndarray | None, target_scale: float, iters: int,
                 floor: float):
        self.env = _banded(envelope)
        self.fb = _banded(filterbank if filterbank is not None else np.zeros((1, envelope.shape[0]), np.float32))
        self.scale, self.iters, self.floor = np.float32(target_scale), int(iters), np.float32(floor)
        self.n_bins = envelope.shape[0]

    def __call__(self, linear_mel: np.ndarray) -> np.ndarray:
        return self.frames(linear_mel[None])[0]

    def frames(self, linear_mel: np.ndarray) -> np.ndarray:
        """Frame by frame: ``(T, n_mels)`` -> ``(T, bins)``."""
        out = np.empty((linear_mel.shape[0], self.n_bins), np.float32)
        _sparse_prior_frames(np.ascontiguousarray(linear_mel, np.float32), self.env, self.fb, self.scale, self.iters,
                             self.floor, out)
        return out


# -- single frames of the VAE decoder and the vocoder's backbone ---------------------------------------------
#
# The live engine renders one mel frame per call. Run as tensor operations, a frame is ~150 small torch
# calls whose dispatch costs more than their arithmetic; here it is one compiled call per model, and what
# is left is reading every weight once per frame. Weights that are exactly bfloat16 numbers (checkpoints
# are saved so) are read as their 16-bit patterns, half the bytes of float32; others go through BLAS. A
# convolution's history is the same (C, h) tensor the chunked torch path keeps in the stream state (oldest
# frame first), edited in place, so the two paths can take turns on one stream.


def _matvec(w, x, b):
    """``b + w @ x`` with ``w`` float32 or bfloat16 bit patterns (``uint16``), in numpy; compiled code calls
    the overload below instead, the same arithmetic."""
    if w.dtype == np.uint16:
        w = (w.astype(np.uint32) << 16).view(np.float32)
    return b + w @ x


@overload(_matvec, jit_options={"fastmath": True, "nogil": True})
def _matvec_impl(w, x, b):
    """``b + w @ x``: float32 ``w`` through BLAS; ``uint16`` ``w`` holds bfloat16 bit patterns (half the
    bytes to read per frame), widened a row at a time into float32 (exactly) and summed in float32."""
    if isinstance(w, types.Array) and w.dtype == types.uint16:
        def bf16(w, x, b):
            rows, cols = w.shape
            out = np.empty(rows, np.float32)
            bits = np.empty(cols, np.uint32)
            row = bits.view(np.float32)
            for r in range(rows):
                for j in range(cols):
                    bits[j] = np.uint32(w[r, j]) << np.uint32(16)
                acc = np.float32(0.0)
                for j in range(cols):
                    acc += row[j] * x[j]
                out[r] = b[r] + acc
            return out
        return bf16
    return lambda w, x, b: b + np.dot(w, x)


@_compiled
def _gelu_(x, exact):   # pragma: no cover - compiled
    """GELU in place: the erf form or torch's tanh approximation."""
    if exact:
        for i in range(x.shape[0]):
            v = x[i]
            x[i] = np.float32(0.5) * v * (np.float32(1.0) + np.float32(math.erf(v * np.float32(0.7071067811865476))))
    else:
        c, a = np.float32(0.7978845608028654), np.float32(0.044715)
        for i in range(x.shape[0]):
            v = x[i]
            x[i] = np.float32(0.5) * v * (np.float32(1.0) + np.float32(math.tanh(c * (v + a * v * v * v))))


@_compiled
def _layer_norm(x, w, b, eps):   # pragma: no cover - compiled
    n = x.shape[0]
    mean = np.float32(0.0)
    for i in range(n):
        mean += x[i]
    mean /= np.float32(n)
    var = np.float32(0.0)
    for i in range(n):
        d = x[i] - mean
        var += d * d
    r = np.float32(1.0) / np.float32(math.sqrt(var / np.float32(n) + eps))
    out = np.empty(n, np.float32)
    for i in range(n):
        out[i] = (x[i] - mean) * r * w[i] + b[i]
    return out


@_compiled
def _push(hist, x):   # pragma: no cover - compiled
    """Append frame ``x`` to a ``(C, h)`` history, dropping the oldest frame."""
    C, h = hist.shape
    for c in range(C):
        for j in range(h - 1):
            hist[c, j] = hist[c, j + 1]
        if h:
            hist[c, h - 1] = x[c]


@_compiled
def _conv(hist, x, w, b, k, d):   # pragma: no cover - compiled
    """A causal convolution's output for frame ``x`` ``(C_in,)``: ``w`` ``(C_out, C_in * k)`` (tap-minor, as
    ``Conv1d``'s weight flattened), dilation ``d``; the history moves on by one frame."""
    u = np.empty(hist.shape[0] * k, np.float32)
    _conv_taps(hist, x, k, d, u)
    _push(hist, x)
    return _matvec(w, u, b)


@_compiled
def _conv_taps(hist, x, k, d, u):   # pragma: no cover - compiled
    """The ``k`` taps (dilation ``d``) of every input channel for frame ``x``, gathered into ``u``
    ``(C_in * k,)`` tap-minor; the history is not moved."""
    C, h = hist.shape
    for c in range(C):
        for j in range(k):
            p = h - (k - 1 - j) * d
            u[c * k + j] = x[c] if p == h else hist[c, p]


@_compiled
def _depthwise(hist, x, w, b):   # pragma: no cover - compiled
    """A causal depthwise convolution (dilation 1): ``w`` ``(C, k)``."""
    C, h = hist.shape
    k = w.shape[1]
    out = np.empty(C, np.float32)
    for c in range(C):
        acc = b[c] + w[c, k - 1] * x[c]
        for j in range(k - 1):
            acc += w[c, j] * hist[c, h - (k - 1) + j]
        out[c] = acc
    _push(hist, x)
    return out


@_compiled
def decode_frame(z, in_w, in_b, in_hist, norm_w, norm_b, conv_w, conv_b, hists, dilations, proj_w, proj_b,
                 last_norm_w, last_norm_b, out_w, out_b, out_hist, lin_w, lin_b, k, norm, exact, eps, scale, offset,
                 lo, hi):   # pragma: no cover - compiled
    """One mel-rate latent frame ``(D,)`` through ``MelVAE``'s causal decoder -> log-mel ``(n_mels,)``;
    ``lin_w`` ``(n_mels, D)`` float32, ``lin_b``: the per-frame linear path (zeros when the model has none)."""
    h = _conv(in_hist, z, in_w, in_b, k, 1)
    for i in range(len(conv_w)):
        a = _layer_norm(h, norm_w[i], norm_b[i], eps) if norm else h.copy()
        _gelu_(a, exact)
        a = _conv(hists[i], a, conv_w[i], conv_b[i], k, dilations[i])
        _gelu_(a, exact)
        h = h + _matvec(proj_w[i], a, proj_b[i])
    a = _layer_norm(h, last_norm_w, last_norm_b, eps) if norm else h.copy()
    _gelu_(a, exact)
    m = _conv(out_hist, a, out_w, out_b, k, 1) + _matvec(lin_w, z, lin_b)
    for i in range(m.shape[0]):
        m[i] = min(max(m[i] * scale + offset, lo), hi)
    return m


@_compiled
def vocoder_features(mel, in_offset, in_scale, emb_w, emb_b, emb_hist, k, in_norm_w, in_norm_b, dw_w, dw_b,
                     dw_hists, norm_w, norm_b, w1, b1, w2, b2, gamma, out_norm_w, out_norm_b, exact,
                     eps):   # pragma: no cover - compiled
    """One log-mel frame ``(n_mels,)`` through ``Vocoder``'s causal ConvNeXt backbone -> the features
    ``(dim,)`` its heads read."""
    x = _conv(emb_hist, (mel - in_offset) / in_scale, emb_w, emb_b, k, 1)
    x = _layer_norm(x, in_norm_w, in_norm_b, eps)
    for i in range(len(dw_w)):
        a = _layer_norm(_depthwise(dw_hists[i], x, dw_w[i], dw_b[i]), norm_w[i], norm_b[i], eps)
        a = _matvec(w1[i], a, b1[i])
        _gelu_(a, exact)
        x = x + gamma[i] * _matvec(w2[i], a, b2[i])
    return _layer_norm(x, out_norm_w, out_norm_b, eps)


@_compiled
def vocoder_spectra(f, mel, head_w, head_b, up, prior_on, env, fb, prior_scale, prior_iters, floor, carry_on,
                    carry_w, carry_b, prev, per, rad):   # pragma: no cover - compiled
    """``Vocoder``'s heads for one mel frame: features ``f`` ``(dim,)`` (and the log-mel ``(n_mels,)`` for the
    prior) -> the spectra of its ``up`` synthesis frames ``(up, bins)`` and the carried phasors to keep."""
    h = _matvec(head_w, f, head_b)   # (up, 2, bins) flattened: log-magnitude, then phase
    g = _matvec(carry_w, f, carry_b) if carry_on else np.empty(0, np.float32)
    return head_spectra(h, g, mel, up, prior_on, env, fb, prior_scale, prior_iters, floor, carry_on, prev, per, rad)


@_compiled
def head_spectra(h, g, mel, up, prior_on, env, fb, prior_scale, prior_iters, floor, carry_on, prev, per,
                 rad):   # pragma: no cover - compiled
    """What :func:`vocoder_spectra` makes of the heads' outputs: ``h`` (log-magnitude and phase of ``up``
    synthesis frames, flattened) and ``g`` (the carry gate's logits per bin; empty without the carry)."""
    bins = h.shape[0] // (2 * up)
    prior = np.zeros(bins, np.float32)
    if prior_on:
        _sparse_prior(np.exp(mel), env, fb, prior_scale, prior_iters, floor, prior)
    logmag = np.empty((up, bins), np.float32)
    mag = np.empty((up, bins), np.float32)
    phase = np.empty((up, bins), np.float32)
    for u in range(up):
        for k in range(bins):
            lm = min(h[u * 2 * bins + k] + prior[k], np.float32(6.0))
            logmag[u, k] = lm
            mag[u, k] = np.float32(math.exp(lm))
            phase[u, k] = h[u * 2 * bins + bins + k]
    out = np.empty((up, bins), np.complex64)
    if not carry_on:
        for u in range(up):
            for k in range(bins):
                p = phase[u, k]
                m = mag[u, k]
                out[u, k] = np.complex64(complex(m * np.float32(math.cos(p)), m * np.float32(math.sin(p))))
        return out, prev
    gate = np.empty((1, bins), np.float32)
    for k in range(bins):
        gate[0, k] = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-g[k])))
    return out, _carry_frames(logmag, phase, gate, prev, up, per, rad, mag, out)


@_compiled
def _overlap_add(frames, window, hop, out):   # pragma: no cover - compiled
    for b in range(frames.shape[0]):
        for t in range(frames.shape[1]):
            o = t * hop
            for i in range(frames.shape[2]):
                out[b, o + i] += frames[b, t, i] * window[i]


def overlap_add(frames: np.ndarray, window: np.ndarray, hop: int) -> np.ndarray:
    """Windowed frames ``(B, T, N)`` laid ``hop`` apart and summed: ``(B, (T - 1) * hop + N)`` float32."""
    B, T, N = frames.shape
    out = np.zeros((B, (T - 1) * hop + N if T else 0), np.float32)
    if T:
        _overlap_add(np.ascontiguousarray(frames, np.float32), np.ascontiguousarray(window, np.float32), hop, out)
    return out


@_compiled
def ola_frames(frames, window, tail, hop):   # pragma: no cover - compiled
    """The live overlap-add: unwindowed frames ``(k, N)`` one ``hop`` apart, each windowed and added onto the
    held ``tail`` ``(N - hop,)`` (updated in place) -> the ``k * hop`` samples that became final."""
    k, N = frames.shape
    keep = N - hop
    out = np.empty(k * hop, np.float32)
    for t in range(k):
        for i in range(hop):
            out[t * hop + i] = tail[i] + frames[t, i] * window[i]
        for i in range(keep - hop):
            tail[i] = tail[i + hop] + frames[t, hop + i] * window[hop + i]
        for i in range(keep - hop, keep):
            tail[i] = frames[t, hop + i] * window[hop + i]
    return out


@_compiled
def encode_frame(x, in_w, in_b, in_hist, norm_w, norm_b, conv_w, conv_b, hists, dilations, proj_w, proj_b,
                 last_norm_w, last_norm_b, out_w, out_b, lin_w, lin_b, k, exact, eps):   # pragma: no cover - compiled
    """One normalised log-mel frame ``(n_mels,)`` through ``CausalEncoder`` -> its latent ``(D,)``: the decoder's
    kind of causal residual layers (:func:`decode_frame`), a 1x1 output and the per-frame linear path."""
    h = _conv(in_hist, x, in_w, in_b, k, 1)
    for i in range(len(conv_w)):
        a = _layer_norm(h, norm_w[i], norm_b[i], eps)
        _gelu_(a, exact)
        a = _conv(hists[i], a, conv_w[i], conv_b[i], k, dilations[i])
        _gelu_(a, exact)
        h = h + _matvec(proj_w[i], a, proj_b[i])
    a = _layer_norm(h, last_norm_w, last_norm_b, eps)
    _gelu_(a, exact)
    return _matvec(out_w, a, out_b) + _matvec(lin_w, x, lin_b)
