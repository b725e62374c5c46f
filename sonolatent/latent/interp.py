"""Interpolating latent vectors: ``lerp``, ``slerp`` and N-source weighted blends.

Latents are numpy arrays with the latent dimension first: one vector ``(D,)``
or a trajectory ``(D, n)`` (one column per frame). Blend positions ``t`` are a
scalar or one value per column ``(n,)``.

``slerp`` works on the vectors relative to a centre (pass the VAE's PCA mean,
``PCABasis.mean``): it rotates from ``a - c`` to ``b - c`` along the great
circle, so a morph between two sounds keeps away from the (often dull) middle
of the latent cloud; where the two are nearly parallel (or one is at the
centre) it falls back to ``lerp``. Both give exactly ``a`` at ``t = 0`` and
exactly ``b`` at ``t = 1``.

Pure numpy (float64 inside, float32 out), no torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

INTERPOLATIONS = ("lerp", "slerp")

#: sin(angle) below which slerp falls back to lerp (the vectors are nearly parallel).
SLERP_EPS = 1e-4


def _prep(a, b, t):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"latents differ in shape: {a.shape} vs {b.shape}")
    t = np.asarray(t, np.float64)
    return a, b, t


def lerp(a, b, t) -> np.ndarray:
    """``(1 - t) * a + t * b`` column by column."""
    a, b, t = _prep(a, b, t)
    return ((1.0 - t) * a + t * b).astype(np.float32)


def slerp(a, b, t, center=None, eps: float = SLERP_EPS) -> np.ndarray:
    """Spherical interpolation of ``a - center`` towards ``b - center`` (column by column).

    The norms are interpolated too (a plain slerp of unequal vectors does so
    along the arc). Nearly parallel or zero vectors fall back to :func:`lerp`.
    """
    a, b, t = _prep(a, b, t)
    c = np.zeros(a.shape[0]) if center is None else np.asarray(center, np.float64)
    if a.ndim == 2:
        c = c[:, None]
    u, v = a - c, b - c
    nu, nv = np.linalg.norm(u, axis=0), np.linalg.norm(v, axis=0)
    safe = (nu > 1e-12) & (nv > 1e-12)
    cos = np.where(safe, (u * v).sum(0) / np.where(safe, nu * nv, 1.0), 1.0)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    so = np.sin(omega)
    use_slerp = safe & (so > eps)
    so_safe = np.where(use_slerp, so, 1.0)
    wa = np.where(use_slerp, np.sin((1.0 - t) * omega) / so_safe, 1.0 - t)
    wb = np.where(use_slerp, np.sin(t * omega) / so_safe, t)
    out = wa * u + wb * v + c
    # exact endpoints
    out = np.where(t == 0.0, a, np.where(t == 1.0, b, out))
    return out.astype(np.float32)


def interpolate(a, b, t, interp: str = "lerp", center=None) -> np.ndarray:
    if interp == "lerp":
        return lerp(a, b, t)
    if interp == "slerp":
        return slerp(a, b, t, center)
    raise ValueError(f"unknown interpolation {interp!r} (choose from {', '.join(INTERPOLATIONS)})")


def blend(latents: Sequence[np.ndarray], weights, interp: str = "lerp", center=None) -> np.ndarray:
    """Weighted blend of ``K`` latents (each ``(D,)`` or ``(D, n)``).

    ``weights`` is ``(K,)`` or ``(K, n)``, non-negative; every column must sum
    to more than 0 (the weights are normalised). ``lerp`` is the weighted mean.
    ``slerp`` folds the sources in one at a time (``r = slerp(r, s_k,
    w_k / (w_0 + .. + w_k))``): exact for two sources, for more an
    order-dependent but smooth generalisation.
    """
    if len(latents) == 0:
        raise ValueError("blend needs at least one latent")
    zs = [np.asarray(z, np.float64) for z in latents]
    w = np.asarray(weights, np.float64)
    if w.shape[0] != len(zs):
        raise ValueError(f"{len(zs)} latents but {w.shape[0]} weight rows")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("blend weights must be finite and non-negative")
    total = w.sum(0)
    if np.any(total <= 0):
        raise ValueError("blend weights sum to 0 somewhere")
    if interp == "lerp":
        out = sum(wk * zk for wk, zk in zip(w / total, zs))
        return np.asarray(out, np.float32)
    if interp != "slerp":
        raise ValueError(f"unknown interpolation {interp!r} (choose from {', '.join(INTERPOLATIONS)})")
    r = zs[0]
    cum = w[0].copy()
    for wk, zk in zip(w[1:], zs[1:]):
        cum = cum + wk
        t = np.where(cum > 0, wk / np.where(cum > 0, cum, 1.0), 0.0)
        r = slerp(r, zk, t, center).astype(np.float64)
    return r.astype(np.float32)
