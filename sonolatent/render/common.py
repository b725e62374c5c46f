"""Shared pieces of offline rendering: loading and encoding sources, rendering
mel-rate latents through :func:`sonolatent.models.synth.render_frames` (the one
decode path), resampling, peak normalisation and atomic output checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.io import check_audio_file, peak_normalize, read_audio, resample, WRITE_FORMATS
from ..engine.safety import OutputStage, SafetyConfig, frame_power
from ..errors import SonolatentError
from ..latent import PCABasis
from ..models.checkpoint import ModelBundle
from ..models.synth import encode_audio, render_frames
from ..outputs import check_output_path as _check_output_path

#: Shortest input we accept (seconds): a few mel frames.
MIN_SECONDS = 0.02
MAX_OUTPUT_SECONDS = 3600.0
SAMPLE_RATES = (8000, 384000)


@dataclass
class Source:
    """An encoded input sound: audio at the model rate, latents ``(D, L)``, length in mel frames."""

    path: Path
    audio: np.ndarray
    latents: np.ndarray
    frames: int
    sample_rate: int
    name: str = ""

    def power(self, hop: int) -> np.ndarray:
        """Mean square per mel frame (``frames`` values): the loudness the output stage tracks toward."""
        return frame_power(self.audio, hop, self.frames)

    @property
    def seconds(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def load_source(bundle: ModelBundle, path, name: str = "") -> Source:
    """Read ``path`` at the model rate and encode it (posterior mean); errors name the file."""
    sr = bundle.sample_rate
    audio, _ = read_audio(path, sr, min_seconds=MIN_SECONDS)
    z = encode_audio(bundle, audio).cpu().numpy().astype(np.float32)
    frames = len(audio) // bundle.mel_config.hop_length + 1
    return Source(Path(path), audio, z, frames, sr, name or Path(path).stem)


def check_source_files(paths) -> None:
    """What :func:`load_source` would refuse that a file's header tells (see
    :func:`~sonolatent.audio.io.check_audio_file`), for each of ``paths``: called before a model loads."""
    for p in paths:
        check_audio_file(p, min_seconds=MIN_SECONDS)


def pca_basis(bundle: ModelBundle) -> PCABasis:
    return PCABasis.from_vae(bundle.vae)


def seconds_to_frames(bundle: ModelBundle, seconds: float) -> int:
    return max(1, int(round(seconds * bundle.sample_rate / bundle.mel_config.hop_length)))


def frame_times(bundle: ModelBundle, n: int) -> np.ndarray:
    """Start time (seconds) of each of ``n`` output mel frames."""
    return np.arange(n) * (bundle.mel_config.hop_length / bundle.sample_rate)


def render_latents(bundle: ModelBundle, zf, *, chunk: int = 64, gain_db=None) -> np.ndarray:
    """Mel-rate latents ``(D, n)`` -> audio at the model rate ``(n * hop,)`` through the streaming synth.

    ``gain_db`` (optional, ``(n,)``, one value per frame) is applied as a
    sample-accurate envelope (linear between frame starts).
    """
    y = render_frames(bundle, np.asarray(zf, np.float32), chunk=chunk)
    if gain_db is not None:
        g = np.asarray(gain_db, np.float64)
        hop = bundle.mel_config.hop_length
        env = np.interp(np.arange(len(y)) / hop, np.arange(len(g)), g)
        y = (y * 10.0 ** (env / 20.0)).astype(np.float32)
    return y


def track_loudness(audio: np.ndarray, hop: int, reference: np.ndarray, rate: int) -> np.ndarray:
    """The output stage's loudness tracking over a whole render: block ``t`` (``hop`` samples) is moved
    toward the mean square ``reference[t]``, as the live engine does block by block."""
    stage = OutputStage(rate, SafetyConfig(limiter=False, track=True))
    y = np.array(audio, np.float32)
    ref = np.asarray(reference, np.float64)
    for t in range(0, len(y), hop):
        stage.process(y[t:t + hop], float(ref[min(t // hop, len(ref) - 1)]) if len(ref) else 0.0)
    return y


def limit(audio: np.ndarray, rate: int, ceiling_db: float | None = None) -> np.ndarray:
    """The output stage's limiter over a whole render, its lookahead taken back (no delay offline)."""
    cfg = SafetyConfig(limiter=True, track=False) if ceiling_db is None else \
        SafetyConfig(limiter=True, track=False, ceiling_db=ceiling_db)
    stage = OutputStage(rate, cfg)
    y = stage.process(np.array(audio, np.float32), None)
    return np.concatenate([y, stage.flush().ravel()]).astype(np.float32)


def finish(audio: np.ndarray, model_sr: int, sr: int | None = None, peak_db: float | None = -1.0,
           safety: SafetyConfig | None = None) -> np.ndarray:
    """Resample to ``sr`` (default: the model rate), peak-normalise to ``peak_db`` dBFS (None: leave),
    then, when ``safety`` asks for it, limit to its ceiling (-0.3 dBFS)."""
    y = resample(np.asarray(audio, np.float32), model_sr, sr or model_sr)
    if not np.all(np.isfinite(y)):
        raise SonolatentError("the model produced NaN or infinite samples (is the checkpoint broken?)")
    if peak_db is not None:
        y = peak_normalize(y, peak_db)
    if safety is not None and safety.limiter:
        y = limit(y, sr or model_sr, safety.ceiling_db)
    return y


def blend_reference(bundle: ModelBundle, sources: list[Source], weights: np.ndarray, align_mode: str) -> np.ndarray:
    """Per output frame, the blend-weighted loudness (mean square) of the sources, aligned as their
    latents are: what the output stage tracks an offline render toward."""
    from ..latent.trajectory import align

    hop = bundle.mel_config.hop_length
    w = np.asarray(weights, np.float64)
    w = w / np.maximum(w.sum(axis=0, keepdims=True), 1e-12)
    tracks = align([s.power(hop)[None] for s in sources], [s.frames for s in sources], w.shape[1], 1, align_mode)
    return sum(wk * t[0] for wk, t in zip(w, tracks))


# -- option checks (shared by the morph and render commands) ---------------------------
def check_output_path(path, option: str = "-o", suffixes=(".wav", ".wave")) -> Path:
    """The output's folder must exist and be writable (a real write probe), and the name must end in a
    known suffix: :func:`sonolatent.outputs.check_output_path` with the WAV suffixes as default."""
    return _check_output_path(path, option, suffixes)


def check_not_input(output, inputs, option: str = "-o") -> None:
    """Refuse to write over one of the inputs."""
    out = Path(output).resolve()
    for i in inputs:
        if Path(i).resolve() == out:
            raise SonolatentError(f"{option} {output}: is also an input file; choose another name")


def check_sr(sr) -> int | None:
    if sr is None:
        return None
    lo, hi = SAMPLE_RATES
    if not lo <= int(sr) <= hi:
        raise SonolatentError(f"--sr: {sr} Hz is outside {lo}..{hi}")
    return int(sr)


def check_format(fmt: str) -> str:
    if fmt not in WRITE_FORMATS:
        raise SonolatentError(f"--format: unknown format {fmt!r} (choose 16, 24 or float)")
    return fmt


def check_peak(peak_db: float) -> float:
    if not np.isfinite(peak_db) or not -60.0 <= peak_db <= 0.0:
        raise SonolatentError(f"--peak: {peak_db:g} dBFS is outside -60..0 (0 would touch full scale)")
    return float(peak_db)
