"""Pictures: spectrograms of morphs and their blend curves, of a sound beside what the model makes of
it, maps of a folder of sounds in latent space, and traversals along one PCA coordinate.

Matplotlib's object API with the Agg canvas (no pyplot, no display); PNGs are
written atomically (:mod:`sonolatent.outputs`: temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SonolatentError
from ..outputs import check_output_path, remove_quietly, temp_beside


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> Path:
    """Write ``fig`` as a PNG through a temporary file beside ``path``: the name holds a whole picture or
    nothing (the temporary file is removed on any failure, Ctrl-C included)."""
    p = check_output_path(path)
    tmp = temp_beside(p, "write the picture")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, p)
    except Exception as e:
        remove_quietly(tmp)
        raise SonolatentError(f"{p}: cannot write the picture ({type(e).__name__}: {e})") from None
    except BaseException:
        remove_quietly(tmp)
        raise
    return p


def log_mel(mel_config, audio: np.ndarray, sr: int | None = None) -> np.ndarray:
    """Log-mel ``(n_mels, frames)`` of ``audio`` with the model's mel definition (resampled if needed)."""
    import torch

    from ..audio.io import resample
    from ..audio.mel import MelSpectrogram

    a = np.asarray(audio, np.float32)
    if sr is not None and sr != mel_config.sample_rate:
        a = resample(a, sr, mel_config.sample_rate)
    with torch.no_grad():
        return MelSpectrogram(mel_config)(torch.from_numpy(a)[None])[0].numpy()


def _spec(ax, mel: np.ndarray, frame_rate: float, title: str, vmin: float, vmax: float):
    n = mel.shape[1]
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
              extent=(0, n / frame_rate, 0, mel.shape[0]), interpolation="nearest")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylabel("mel band", fontsize=8)
    ax.tick_params(labelsize=7)


def _range(mels) -> tuple[float, float]:
    hi = max(float(m.max()) for m in mels)
    return hi - 12.0, hi


def plot_morph(path, inputs: Sequence[tuple[str, np.ndarray]], output: tuple[str, np.ndarray],
               frame_rate: float, curves: dict[str, np.ndarray], curve_label: str = "weight",
               title: str = "") -> Path:
    """Input spectrograms (one row each), the output's spectrogram, and the blend curves under it.

    ``curves`` maps a label to one value per output mel frame (same frame rate
    as the output spectrogram).
    """
    mels = [m for _, m in inputs] + [output[1]]
    vmin, vmax = _range(mels)
    n_rows = len(inputs) + 2
    fig = _figure(10, 1.9 * n_rows)
    gs = fig.add_gridspec(n_rows, 1, height_ratios=[1.0] * (n_rows - 1) + [0.7], hspace=0.55)
    for i, (label, m) in enumerate(inputs):
        _spec(fig.add_subplot(gs[i]), m, frame_rate, label, vmin, vmax)
    ax = fig.add_subplot(gs[n_rows - 2])
    _spec(ax, output[1], frame_rate, output[0], vmin, vmax)
    dur = output[1].shape[1] / frame_rate
    ax.set_xlim(0, dur)
    cax = fig.add_subplot(gs[n_rows - 1], sharex=ax)
    for label, v in curves.items():
        v = np.asarray(v, np.float64)
        cax.plot((np.arange(len(v)) + 0.5) / frame_rate, v, label=label, lw=1.5)
    cax.set_ylim(-0.05, 1.05)
    cax.set_ylabel(curve_label, fontsize=8)
    cax.set_xlabel("time (s)", fontsize=8)
    cax.tick_params(labelsize=7)
    cax.grid(alpha=0.3)
    cax.legend(fontsize=7, loc="upper left", ncols=min(len(curves), 6))
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_reconstruction(path, original: tuple[str, np.ndarray], output: tuple[str, np.ndarray],
                        frame_rate: float, title: str = "") -> Path:
    """The original's spectrogram, the model's, and their difference in log-mel (output minus original,
    red where the model is louder, blue where it is quieter), on one time axis."""
    a, b = original[1], output[1]
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    vmin, vmax = _range([a, b])
    # where both are below the colour range the difference is inaudible detail: shown as none
    diff = np.where((a < vmin) & (b < vmin), 0.0, b - a)
    fig = _figure(10, 6.2)
    gs = fig.add_gridspec(3, 1, hspace=0.55)
    ax0 = fig.add_subplot(gs[0])
    _spec(ax0, a, frame_rate, original[0], vmin, vmax)
    _spec(fig.add_subplot(gs[1], sharex=ax0), b, frame_rate, output[0], vmin, vmax)
    ax = fig.add_subplot(gs[2], sharex=ax0)
    im = ax.imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-3.0, vmax=3.0,
                   extent=(0, n / frame_rate, 0, a.shape[0]), interpolation="nearest")
    ax.set_title(f"difference (log-mel, nepers; mean |difference| {np.abs(b - a).mean():.3f})", fontsize=9,
                 loc="left")
    ax.set_ylabel("mel band", fontsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_map(path, coords: np.ndarray, labels: Sequence[str], groups: Sequence[str],
             xlabel: str, ylabel: str, title: str = "") -> Path:
    """Scatter of one point per sound, coloured by group, each labelled."""
    coords = np.asarray(coords, np.float64)
    fig = _figure(9, 7)
    ax = fig.add_subplot(111)
    names = sorted(set(groups))
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    for gi, g in enumerate(names):
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.scatter(coords[idx, 0], coords[idx, 1], s=36, color=cmap(gi % cmap.N), label=g,
                   edgecolor="black", linewidth=0.4)
    for (x, y), lab in zip(coords, labels):
        ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="folder", title_fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_traverse(path, mels: Sequence[np.ndarray], values: Sequence[float], frame_rate: float,
                  dim: int, title: str = "") -> Path:
    """One spectrogram per step, left to right, as PCA coordinate ``dim`` moves."""
    vmin, vmax = _range(mels)
    n = len(mels)
    fig = _figure(max(6.0, 1.9 * n), 3.6)
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    for i, (ax, m, v) in enumerate(zip(axes, mels, values)):
        _spec(ax, m, frame_rate, f"PCA {dim} {v:+.2f} sd", vmin, vmax)
        ax.set_xlabel("time (s)", fontsize=7)
        if i:
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
    fig.subplots_adjust(wspace=0.08, left=0.05, right=0.99, bottom=0.15, top=0.82)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
