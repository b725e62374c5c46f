"""Rendering a morph score (:mod:`sonolatent.latent.score`) through the streaming synth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AudioFileError, ConfigError
from ..latent import Score, blend_sources
from ..engine.safety import SafetyConfig
from ..models.checkpoint import ModelBundle
from .common import (Source, blend_reference, check_source_files, finish, frame_times, load_source, pca_basis,
                     render_latents, seconds_to_frames, track_loudness)


@dataclass
class ScoreResult:
    audio: np.ndarray
    sample_rate: int
    latents: np.ndarray      # (D, n) mel-rate latents rendered
    weights: np.ndarray      # (K, n) normalised source weights per frame
    times: np.ndarray        # (n,) frame start times, seconds
    sources: list[Source]
    duration: float


def check_score_files(score: Score) -> None:
    """The sources' files checked by their headers (before a model loads); errors as :func:`load_score_sources`."""
    for s in score.sources:
        try:
            check_source_files([s.file])
        except AudioFileError as e:
            raise ConfigError(f"{score.path}: line {s.line}: [[source]] {s.name!r}: {e}") from None


def load_score_sources(bundle: ModelBundle, score: Score) -> list[Source]:
    """Encode every source; a bad file is one error naming the score, the line and the source."""
    out = []
    for s in score.sources:
        try:
            out.append(load_source(bundle, s.file, s.name))
        except AudioFileError as e:
            raise ConfigError(f"{score.path}: line {s.line}: [[source]] {s.name!r}: {e}") from None
    return out


def score_duration(score: Score, sources: list[Source]) -> float:
    if score.duration is not None:
        return score.duration
    last = score.keys[-1].time
    return last if last > 0 else max(s.seconds for s in sources)


def render_score(bundle: ModelBundle, score: Score, *, sources: list[Source] | None = None,
                 sr: int | None = None, peak_db: float | None = -1.0, chunk: int = 64,
                 safety: SafetyConfig | None = None) -> ScoreResult:
    """``safety``: the output stage (loudness tracking toward the blended sounds and the score's gain,
    the limiter after normalising); None renders the decode as it comes (before normalising)."""
    D = bundle.vae.latent_dim
    score.check_latent_dim(D)
    if sources is None:
        sources = load_score_sources(bundle, score)
    duration = score_duration(score, sources)
    n = seconds_to_frames(bundle, duration)
    t = frame_times(bundle, n)
    w = score.weights_at(t)
    basis = pca_basis(bundle)
    zf = blend_sources([s.latents for s in sources], [s.frames for s in sources], w,
                       bundle.vae.config.downsample, align_mode=score.align, interp=score.interp,
                       center=basis.mean)
    if score.has_offsets:
        zf = basis.offset(zf, score.offsets_at(t, D))
    gain = score.gain_at(t) if score.has_gain else None
    y = render_latents(bundle, zf, chunk=chunk, gain_db=gain)
    if safety is not None and safety.track:
        ref = blend_reference(bundle, sources, w, score.align)
        if gain is not None:
            ref = ref * 10.0 ** (np.asarray(gain, np.float64) / 10.0)
        y = track_loudness(y, bundle.mel_config.hop_length, ref, bundle.sample_rate)
    out_sr = sr or bundle.sample_rate
    return ScoreResult(finish(y, bundle.sample_rate, out_sr, peak_db, safety), out_sr, zf, w, t, sources, duration)
