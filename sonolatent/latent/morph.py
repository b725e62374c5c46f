"""Morphs and blends of whole trajectories: align the sources, then blend frame by frame.

:func:`blend_sources` is the one place where K encoded sounds become one
mel-rate latent trajectory; a two-sound morph is the special case with weights
``(1 - b, b)`` from a curve (:func:`morph_weights`), a score supplies ``(K, n)``
weights from its keys. The result goes to the decoder as it is
(``StreamingSynth.process`` / ``render_frames``).

Pure numpy, no torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .curves import Curve, curve_positions
from .interp import blend
from .trajectory import align


def morph_weights(curve: Curve, n_out: int) -> np.ndarray:
    """Blend weights ``(2, n_out)`` for a two-sound morph: ``(1 - b, b)`` with ``b = curve(t)``, ``t = 0..1``."""
    b = np.clip(np.asarray(curve(curve_positions(n_out)), np.float64), 0.0, 1.0)
    return np.stack([1.0 - b, b])


def blend_sources(
    trajs: Sequence[np.ndarray],
    src_frames: Sequence[int],
    weights: np.ndarray,
    downsample: int,
    *,
    align_mode: str = "stretch",
    interp: str = "lerp",
    center=None,
) -> np.ndarray:
    """Align ``K`` trajectories ``(D, L_k)`` to ``n = weights.shape[1]`` mel frames and blend them.

    ``src_frames[k]`` is source ``k``'s length in mel frames, ``weights`` is
    ``(K, n)`` (non-negative, columns summing to > 0), ``center`` the PCA mean
    (used by slerp). Returns mel-rate latents ``(D, n)`` float32.
    """
    w = np.asarray(weights, np.float64)
    n_out = w.shape[1]
    aligned = align(trajs, src_frames, n_out, downsample, align_mode)
    if len(aligned) == 1:
        return aligned[0].astype(np.float32)
    return blend(aligned, w, interp, center)
