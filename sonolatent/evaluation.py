"""Reconstruction quality and speed against the Griffin-Lim baseline.

For each sound file, at the model rate:

- ``vocoder``: mel of the original -> vocoder;
- ``model``: encode -> decode -> vocoder (the full model, through the
  streaming decode path);
- ``griffinlim``: mel of the original -> mel inversion (librosa) -> 64
  Griffin-Lim iterations: the baseline anyone has without training.

Each output is compared with the original as log-mel L1 and multi-resolution
STFT distance (lower is better), optionally as ViSQOL v3 audio-mode MOS-LQO
(1-5, higher is better; the pure-Python ``visqol-python`` at 48 kHz), and
timed as x real time on the current thread count. The offline paths are aligned with the input by construction
(the streaming delay is flushed out), so no further shift is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch

from .audio.io import SUPPORTED_EXTENSIONS, read_audio
from .audio.mel import MelSpectrogram
from .audio.metrics import logmel_distance, stft_distance
from .models.checkpoint import ModelBundle
from .models.synth import model_stream, vocoder_stream

PATHS = ("vocoder", "model", "griffinlim")


#: ViSQOL's audio mode scores at this rate.
VISQOL_RATE = 48000
#: Shorter files are not scored by ViSQOL (its patches need about a second of audio).
VISQOL_MIN_SECONDS = 1.0


@dataclass
class FileResult:
    file: str
    seconds: float
    logmel: dict
    stft: dict
    speed: dict
    visqol: dict | None = None
    group: str = ""
    kind: str = ""

    def to_dict(self):
        d = {"file": self.file, "seconds": round(self.seconds, 3), "logmel": self.logmel, "stft": self.stft,
             "speed_x_realtime": self.speed}
        if self.visqol is not None:
            d["visqol"] = self.visqol
        if self.group or self.kind:
            d["group"], d["kind"] = self.group, self.kind
        return d


class Visqol:
    """ViSQOL v3 in audio mode (MOS-LQO, 1-5), from the optional ``visqol-python`` package."""

    def __init__(self):
        try:
            from visqol import VisqolApi
        except ImportError:
            from .errors import SonolatentError
            raise SonolatentError("--visqol needs the visqol-python package (pip install 'sonolatent[eval]')") from None
        self.api = VisqolApi()
        self.api.create(mode="audio")

    def __call__(self, ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> float | None:
        if len(ref) < VISQOL_MIN_SECONDS * sample_rate:
            return None
        from .audio.io import resample
        r = resample(ref, sample_rate, VISQOL_RATE).astype(np.float64)
        d = resample(deg, sample_rate, VISQOL_RATE).astype(np.float64)
        return round(float(self.api.measure_from_arrays(r, d, VISQOL_RATE).moslqo), 3)


def griffin_lim(logmel: np.ndarray, cfg, n_iter: int = 64) -> np.ndarray:
    """The baseline: invert the mel filterbank (NNLS) then Griffin-Lim."""
    mag = librosa.feature.inverse.mel_to_stft(
        np.exp(logmel), sr=cfg.sample_rate, n_fft=cfg.n_fft, power=cfg.power, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk", norm="slaney")
    return librosa.griffinlim(mag, n_iter=n_iter, hop_length=cfg.hop_length, n_fft=cfg.n_fft,
                              random_state=0).astype(np.float32)


@torch.no_grad()
def warm_up(bundle: ModelBundle) -> None:
    """One short vocoder call, so that its compiled kernels are loaded before anything is timed."""
    bundle.vocoder(torch.full((1, bundle.mel_config.n_mels, 4), -5.0))


def vocode(bundle: ModelBundle, audio: np.ndarray, chunk_frames: int = 4096) -> np.ndarray:
    """mel -> vocoder, through the streaming path (:func:`vocoder_stream`)."""
    return np.concatenate(list(vocoder_stream(bundle, [audio], chunk_frames)))


def full_model(bundle: ModelBundle, audio: np.ndarray, chunk_frames: int = 4096) -> np.ndarray:
    """encode -> decode -> vocoder in bounded memory (:func:`model_stream`): the mel made ``chunk_frames``
    at a time, the encoder run over it in chunks (equal to the whole-mel encode), the decode streamed."""
    return np.concatenate(list(model_stream(bundle, [audio], chunk_frames)))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    out[: min(n, len(y))] = y[:n]
    return out


#: The shortest file ``eval`` measures (seconds).
MIN_SECONDS = 0.1


def evaluate_file(bundle: ModelBundle, path: Path, griffinlim_iters: int = 64, visqol: Visqol | None = None,
                  group: str = "", kind: str = "") -> FileResult:
    cfg = bundle.mel_config
    x, sr = read_audio(path, cfg.sample_rate, min_seconds=MIN_SECONDS)
    melspec = MelSpectrogram(cfg)
    xt = torch.from_numpy(x)[None]
    logmel = melspec(xt)[0].numpy()
    outs, speed = {}, {}
    dur = len(x) / sr
    for name, fn in (("vocoder", lambda: vocode(bundle, x)), ("model", lambda: full_model(bundle, x)),
                     ("griffinlim", lambda: griffin_lim(logmel, cfg, griffinlim_iters))):
        t = time.perf_counter()
        y = fn()
        speed[name] = round(dur / (time.perf_counter() - t), 1)
        outs[name] = _fit(y, len(x))
    lm, st = {}, {}
    for name, y in outs.items():
        yt = torch.from_numpy(y)[None]
        lm[name] = round(float(logmel_distance(yt, xt, melspec)), 4)
        st[name] = round(float(stft_distance(yt, xt)), 4)
    vq = None
    if visqol is not None and dur >= VISQOL_MIN_SECONDS:
        vq = {name: visqol(x, y, sr) for name, y in outs.items()}
    return FileResult(str(path), dur, lm, st, speed, vq, group, kind)


def find_sound_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)


def summarize(results: list[FileResult]) -> dict:
    def mean(key, name):
        return round(float(np.mean([getattr(r, key)[name] for r in results])), 4)

    out = {
        "files": len(results),
        "seconds": round(sum(r.seconds for r in results), 2),
        "logmel": {n: mean("logmel", n) for n in PATHS},
        "stft": {n: mean("stft", n) for n in PATHS},
        "speed_x_realtime": {n: mean("speed", n) for n in PATHS},
    }
    scored = [r for r in results if r.visqol]
    if scored:
        out["visqol"] = {n: round(float(np.mean([r.visqol[n] for r in scored])), 3) for n in PATHS}
        out["visqol_files"] = len(scored)
        out["visqol_below_griffinlim"] = {
            n: sum(r.visqol[n] < r.visqol["griffinlim"] for r in scored) for n in PATHS if n != "griffinlim"}
    return out


def summarize_by(results: list[FileResult], key: str) -> dict[str, dict]:
    """:func:`summarize` per value of ``key`` (``group`` = source, ``kind``), for files that carry one."""
    values = sorted({getattr(r, key) for r in results if getattr(r, key)})
    return {v: summarize([r for r in results if getattr(r, key) == v]) for v in values}
