"""Offline morphs between two sounds, rendered through the streaming synth.

``load_source`` both sounds, then :func:`render_morph` aligns the two latent
trajectories, blends them frame by frame along a curve (or at a fixed blend),
and renders the result with :func:`sonolatent.models.synth.render_frames` --
the same decode path the live engine plays through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..latent import blend_sources, morph_weights, output_frames
from ..latent.curves import Curve, constant
from ..engine.safety import SafetyConfig
from ..models.checkpoint import ModelBundle
from .common import Source, blend_reference, finish, pca_basis, render_latents, seconds_to_frames, track_loudness


@dataclass
class MorphResult:
    audio: np.ndarray        # output samples at ``sample_rate`` (normalised)
    sample_rate: int
    latents: np.ndarray      # mel-rate latents (D, n) that were rendered
    blend: np.ndarray        # blend position per frame (n,): 0 = first sound, 1 = second


def morph_latents(bundle: ModelBundle, a: Source, b: Source, curve: Curve | float, *,
                  duration: float | None = None, interp: str = "lerp", align: str = "stretch"):
    """Mel-rate latents ``(D, n)`` and blend ``(n,)`` of a morph from ``a`` to ``b``.

    ``curve`` is a curve (``t in 0..1 -> blend``) or a fixed blend in 0..1.
    ``duration`` (seconds) sets the length for ``stretch`` and ``loop``
    (default: the longer sound); ``first`` takes the first sound's length.
    """
    if not callable(curve):
        curve = constant(float(curve))
    n_req = None if duration is None else seconds_to_frames(bundle, duration)
    n_out = output_frames([a.frames, b.frames], align, n_req)
    w = morph_weights(curve, n_out)
    zf = blend_sources([a.latents, b.latents], [a.frames, b.frames], w, bundle.vae.config.downsample,
                       align_mode=align, interp=interp, center=pca_basis(bundle).mean)
    return zf, w[1]


def render_morph(bundle: ModelBundle, a: Source, b: Source, curve: Curve | float, *,
                 duration: float | None = None, interp: str = "lerp", align: str = "stretch",
                 sr: int | None = None, peak_db: float | None = -1.0, chunk: int = 64,
                 safety: SafetyConfig | None = None) -> MorphResult:
    """``safety``: the output stage (loudness tracking toward the blended sounds, the limiter after
    normalising); None renders the decode as it comes (before normalising)."""
    zf, blend = morph_latents(bundle, a, b, curve, duration=duration, interp=interp, align=align)
    y = render_latents(bundle, zf, chunk=chunk)
    if safety is not None and safety.track:
        ref = blend_reference(bundle, [a, b], np.stack([1.0 - blend, blend]), align)
        y = track_loudness(y, bundle.mel_config.hop_length, ref, bundle.sample_rate)
    out_sr = sr or bundle.sample_rate
    return MorphResult(finish(y, bundle.sample_rate, out_sr, peak_db, safety), out_sr, zf, blend)
