"""Latent operations (numpy only, no torch): morph curves, interpolation,
trajectory alignment and sampling, N-source blends, PCA offsets and scores.

See docs/latent-api.md. Shared by the offline renderer (``sonolatent.render``)
and the live engine.
"""

from .curves import CURVES, Keyframes, constant, curve_positions, ease, get_curve, hold, linear, parse_keyframes
from .interp import INTERPOLATIONS, blend, interpolate, lerp, slerp
from .morph import blend_sources, morph_weights
from .pca import PCABasis
from .score import Score, ScoreKey, ScoreSource, parse_score
from .trajectory import ALIGN_MODES, align, frame_positions, output_frames, sample, to_mel_rate

__all__ = [
    "CURVES", "Keyframes", "constant", "curve_positions", "ease", "get_curve", "hold", "linear", "parse_keyframes",
    "INTERPOLATIONS", "blend", "interpolate", "lerp", "slerp",
    "blend_sources", "morph_weights", "PCABasis",
    "Score", "ScoreKey", "ScoreSource", "parse_score",
    "ALIGN_MODES", "align", "frame_positions", "output_frames", "sample", "to_mel_rate",
]
