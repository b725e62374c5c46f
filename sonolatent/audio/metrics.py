"""Distances between two signals, shared by training losses and evaluation.

- :func:`stft_distance`: multi-resolution STFT distance (spectral convergence
  + log-magnitude L1, averaged over 512/128, 1024/256 and 2048/512).
- :func:`logmel_distance`: L1 between log-mels of the project's mel definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mel import MelSpectrogram

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
_WINDOWS: dict[int, torch.Tensor] = {}


def _window(n: int) -> torch.Tensor:
    w = _WINDOWS.get(n)
    if w is None:
        w = _WINDOWS[n] = torch.hann_window(n)
    return w


def stft_distance(y: torch.Tensor, x: torch.Tensor, resolutions=RESOLUTIONS) -> torch.Tensor:
    """``y``, ``x``: ``(B, n)``; differentiable, mean over the batch."""
    total = y.new_zeros(())
    for n, hop in resolutions:
        w = _window(n).to(y.device)
        Y = torch.stft(y, n, hop, window=w, return_complex=True).abs().clamp(min=1e-7)
        X = torch.stft(x, n, hop, window=w, return_complex=True).abs().clamp(min=1e-7)
        sc = torch.linalg.norm(X - Y, dim=(1, 2)) / torch.linalg.norm(X, dim=(1, 2)).clamp(min=1e-7)
        total = total + sc.mean() + F.l1_loss(torch.log(Y), torch.log(X))
    return total / len(resolutions)


def logmel_distance(y: torch.Tensor, x: torch.Tensor, mel: MelSpectrogram) -> torch.Tensor:
    return F.l1_loss(mel(y), mel(x))
