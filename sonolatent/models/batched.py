"""Many voices, one call: the decode path for a batch of streams, one mel frame at a time.

:class:`BatchSynth` is :class:`~.synth.StreamingSynth` for up to ``streams``
independent streams (the engine's voices, and a voice's second channel when
it is spread in stereo). Every frame, the streams that sound are decoded and
vocoded together: one compiled call through the VAE decoder for all of them,
one through the vocoder's backbone and heads, one inverse FFT, one
overlap-add. Each weight row is read (and widened from bfloat16) once per
frame for the whole batch, not once per voice.

Each stream has its own state (every convolution's history, the carried
phase, the overlap-add tail), kept stacked: row ``s`` of each array is stream
``s``. A stream's arithmetic never depends on which other streams share its
call, nor on its place in the batch, so a stream rendered alone and the same
stream rendered beside others give the same samples, bit for bit (tested);
and each stream equals :func:`~.synth.render_frames` of its latents (up to
float rounding, tested).

Unlike :class:`StreamingSynth`, a stream does not skip the first
``delay`` samples: frame ``t`` of a stream returns its samples
``t * hop - delay .. (t + 1) * hop - delay`` (the first ``delay`` are the
synthesis window's lead-in before the stream's start).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .compiled import _compiled, _conv_taps, _depthwise, _gelu_, _layer_norm, _push, head_spectra
from .synth import MelTranspose


def _load_row(w, r, bits):
    """Row ``r`` of ``w`` as float32 into ``bits`` (uint32 storage): ``w`` holds float32 numbers or
    bfloat16 bit patterns (uint16, the upper half of a float32). Compiled code uses the overload below;
    this body is the same in numpy (tests check the two agree)."""
    if w.dtype == np.uint16:
        bits[: w.shape[1]] = w[r].astype(np.uint32) << np.uint32(16)
    else:
        bits.view(np.float32)[: w.shape[1]] = w[r]


@overload(_load_row, jit_options={"nogil": True})
def _load_row_impl(w, r, bits):
    if isinstance(w, types.Array) and w.dtype == types.uint16:
        def widen(w, r, bits):   # bfloat16 bit patterns: the upper half of a float32, exactly
            for j in range(w.shape[1]):
                bits[j] = np.uint32(w[r, j]) << np.uint32(16)
        return widen

    def copy(w, r, bits):
        row = bits.view(np.float32)
        for j in range(w.shape[1]):
            row[j] = w[r, j]
    return copy


@_compiled(fastmath=True)
def _mm(w, X, b):   # pragma: no cover - compiled
    """``X @ w.T + b`` for a batch ``X`` ``(B, cols)``: each row of ``w`` (float32, or bfloat16 bit patterns)
    is loaded once and dotted with every batch row by the same loop, so a row's result does not depend on
    the batch around it."""
    rows, cols = w.shape
    n = X.shape[0]
    out = np.empty((n, rows), np.float32)
    bits = np.empty(cols, np.uint32)
    row = bits.view(np.float32)
    for r in range(rows):
        _load_row(w, r, bits)
        for i in range(n):
            acc = np.float32(0.0)
            for j in range(cols):
                acc += row[j] * X[i, j]
            out[i, r] = b[r] + acc
    return out


@_compiled
def _conv_batch(hist, rows, X, w, b, k, d):   # pragma: no cover - compiled
    """A causal convolution of frame ``X[i]`` of each stream ``rows[i]``; ``hist`` ``(streams, C_in, h)``."""
    n, C = X.shape
    U = np.empty((n, C * k), np.float32)
    for i in range(n):
        _conv_taps(hist[rows[i]], X[i], k, d, U[i])
        _push(hist[rows[i]], X[i])
    return _mm(w, U, b)


@_compiled
def _norm_act(H, w, b, eps, norm, exact):   # pragma: no cover - compiled
    out = np.empty_like(H)
    for i in range(H.shape[0]):
        out[i] = _layer_norm(H[i], w, b, eps) if norm else H[i]
        _gelu_(out[i], exact)
    return out


@_compiled
def decode_batch(Z, rows, in_w, in_b, in_hist, norm_w, norm_b, conv_w, conv_b, hists, dilations, proj_w, proj_b,
                 last_norm_w, last_norm_b, out_w, out_b, out_hist, lin_w, lin_b, k, norm, exact, eps, scale, offset,
                 lo, hi):   # pragma: no cover - compiled
    """``compiled.decode_frame`` for a batch: latents ``Z`` ``(B, D)`` of streams ``rows`` -> log-mels
    ``(B, n_mels)``; the histories are stacked ``(streams, C, h)``."""
    H = _conv_batch(in_hist, rows, Z, in_w, in_b, k, 1)
    for i in range(len(conv_w)):
        A = _norm_act(H, norm_w[i], norm_b[i], eps, norm, exact)
        A = _conv_batch(hists[i], rows, A, conv_w[i], conv_b[i], k, dilations[i])
        for j in range(A.shape[0]):
            _gelu_(A[j], exact)
        H = H + _mm(proj_w[i], A, proj_b[i])
    A = _norm_act(H, last_norm_w, last_norm_b, eps, norm, exact)
    M = _conv_batch(out_hist, rows, A, out_w, out_b, k, 1) + _mm(lin_w, Z, lin_b)
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            M[i, j] = min(max(M[i, j] * scale + offset, lo), hi)
    return M


@_compiled
def vocoder_batch(M, rows, in_offset, in_scale, emb_w, emb_b, emb_hist, k, in_norm_w, in_norm_b, dw_w, dw_b,
                  dw_hists, norm_w, norm_b, w1, b1, w2, b2, gamma, out_norm_w, out_norm_b, exact, eps, head_w, head_b,
                  up, prior_on, env, fb, prior_scale, prior_iters, floor, carry_on, carry_w, carry_b, prev, per,
                  rad):   # pragma: no cover - compiled
    """``compiled.vocoder_features`` and ``vocoder_spectra`` for a batch: log-mels ``M`` ``(B, n_mels)`` of
    streams ``rows`` -> spectra ``(B, up, bins)``; ``prev`` ``(streams, bins)``: each stream's carried phasors
    (updated in place)."""
    n = M.shape[0]
    X = _conv_batch(emb_hist, rows, (M - in_offset) / in_scale, emb_w, emb_b, k, 1)
    for i in range(n):
        X[i] = _layer_norm(X[i], in_norm_w, in_norm_b, eps)
    for layer in range(len(dw_w)):
        A = np.empty_like(X)
        for i in range(n):
            A[i] = _layer_norm(_depthwise(dw_hists[layer][rows[i]], X[i], dw_w[layer], dw_b[layer]),
                               norm_w[layer], norm_b[layer], eps)
        A = _mm(w1[layer], A, b1[layer])
        for i in range(n):
            _gelu_(A[i], exact)
        X = X + gamma[layer] * _mm(w2[layer], A, b2[layer])
    F = np.empty_like(X)
    for i in range(n):
        F[i] = _layer_norm(X[i], out_norm_w, out_norm_b, eps)
    Hd = _mm(head_w, F, head_b)
    G = _mm(carry_w, F, carry_b) if carry_on else np.zeros((n, 0), np.float32)
    bins = Hd.shape[1] // (2 * up)
    out = np.empty((n, up, bins), np.complex64)
    for i in range(n):
        spec, last = head_spectra(Hd[i], G[i], M[i], up, prior_on, env, fb, prior_scale, prior_iters, floor,
                                  carry_on, prev[rows[i]], per, rad)
        out[i] = spec
        prev[rows[i]] = last
    return out


@_compiled
def ola_batch(frames, window, tails, rows, hop):   # pragma: no cover - compiled
    """The overlap-add of each stream: unwindowed frames ``(B, up, N)`` -> ``(B, up * hop)`` final samples;
    ``tails`` ``(streams, N - hop)`` updated in place (``compiled.ola_frames`` per stream)."""
    n, up, N = frames.shape
    keep = N - hop
    out = np.empty((n, up * hop), np.float32)
    for s in range(n):
        tail = tails[rows[s]]
        for t in range(up):
            for i in range(hop):
                out[s, t * hop + i] = tail[i] + frames[s, t, i] * window[i]
            for i in range(keep - hop):
                tail[i] = tail[i + hop] + frames[s, t, hop + i] * window[hop + i]
            for i in range(keep - hop, keep):
                tail[i] = frames[s, t, hop + i] * window[hop + i]
    return out


class BatchSynth:
    """The decode path for up to ``streams`` streams at once; see the module docstring."""

    def __init__(self, bundle, streams: int):
        if streams < 1:
            raise ValueError("a batch needs at least one stream")
        self.bundle = bundle
        self.vae, self.vocoder = bundle.vae, bundle.vocoder
        self.streams = int(streams)
        self.hop = bundle.mel_config.hop_length
        self.latent_dim = self.vae.latent_dim
        self.transposer = MelTranspose(bundle.mel_config)
        first, middle, after, lin, consts, convs = self.vae.frame_args()
        S = self.streams
        self._vae_hists = [np.zeros((S, c.in_channels, c.history), np.float32) for c in convs]
        h = self._vae_hists
        self._vae_args = (*first, h[0], *middle, tuple(h[1:-1]), *after, h[-1], *lin, *consts)
        embed, after_embed, rest, head, prior, carry, per, rad, vconvs = self.vocoder.frame_args()
        self._voc_hists = [np.zeros((S, c.in_channels, c.history), np.float32) for c in vconvs]
        v = self._voc_hists
        self._prev = np.ones((S, self.vocoder.n_bins), np.complex64)
        ola = self.vocoder.ola
        self.n_fft, self.istft_hop = ola.n_fft, ola.hop
        self._window = np.ascontiguousarray(ola.window.detach().cpu().numpy(), np.float32)
        self._tails = np.zeros((S, ola.n_fft - ola.hop), np.float32)
        self._voc_args = (*embed, v[0], *after_embed, tuple(v[1:]), *rest, *head, *prior, *carry, self._prev, per,
                          float(rad))
        # one throwaway frame compiles (or loads) the kernels here, not on the first live frame
        self.process(np.zeros(1, np.int64), np.zeros((1, self.latent_dim), np.float32))
        self.reset(0)

    @property
    def delay(self) -> int:
        return self.vae.delay + self.vocoder.delay

    def batch(self, streams: int) -> "BatchSynth":
        """This batch when it holds ``streams`` streams, else a larger one of the same model."""
        return self if streams <= self.streams else BatchSynth(self.bundle, streams)

    def _states(self):
        return self._vae_hists + self._voc_hists + [self._prev, self._tails]

    def reset(self, s: int) -> None:
        """Stream ``s`` starts afresh (as a new :class:`StreamingSynth` would)."""
        for a in self._states():
            a[s] = 1.0 if a is self._prev else 0.0

    def copy(self, src: int, dst: int) -> None:
        """Stream ``dst`` takes stream ``src``'s whole state: from here on the same frames give the same samples."""
        for a in self._states():
            a[dst] = a[src]

    def process(self, rows, Z, semitones=None) -> np.ndarray:
        """One mel frame of each stream ``rows[i]`` (distinct) with latent ``Z[i]`` ``(D,)``, transposed by
        ``semitones[i]``: returns ``(B, hop)`` float32 samples."""
        rows = np.ascontiguousarray(rows, np.int64)
        Z = np.ascontiguousarray(Z, np.float32)
        n = len(rows)
        if Z.shape != (n, self.latent_dim):
            raise ValueError(f"expected latents of shape ({n}, {self.latent_dim}), got {tuple(Z.shape)}")
        if n == 0:
            return np.zeros((0, self.hop), np.float32)
        M = decode_batch(Z, rows, *self._vae_args)
        if semitones is not None:
            for i, st in enumerate(semitones):
                if st:
                    M[i] = self.transposer.frame(M[i], float(st))
        spec = vocoder_batch(M, rows, *self._voc_args)
        up = spec.shape[1]
        frames = np.fft.irfft(spec.reshape(n * up, -1), n=self.n_fft, axis=1).astype(np.float32, copy=False)
        return ola_batch(frames.reshape(n, up, self.n_fft), self._window, self._tails, rows, self.istft_hop)
