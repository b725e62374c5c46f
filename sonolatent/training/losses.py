"""Losses: log-mel L1 (the project's one mel definition), multi-resolution STFT,
and the adversarial stage (multi-resolution spectrogram discriminator, hinge
loss, feature matching)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio.mel import MelSpectrogram
from ..audio.metrics import RESOLUTIONS, stft_distance


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over resolutions."""

    def __init__(self, resolutions=RESOLUTIONS):
        super().__init__()
        self.resolutions = resolutions

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return stft_distance(y, x, self.resolutions)


class MelLoss(nn.Module):
    def __init__(self, mel: MelSpectrogram):
        super().__init__()
        self.mel = mel

    def forward(self, y, x):
        return F.l1_loss(self.mel(y), self.mel(x))


class SpectrogramDiscriminator(nn.Module):
    """One resolution of the multi-resolution spectrogram discriminator (2-D convs over log-magnitude)."""

    def __init__(self, n_fft: int, hop: int, ch: int = 32):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("win", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            nn.utils.parametrizations.weight_norm(nn.Conv2d(1, ch, (3, 9), padding=(1, 4))),
            nn.utils.parametrizations.weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            nn.utils.parametrizations.weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            nn.utils.parametrizations.weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
        ])
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, x):
        s = torch.stft(x, self.n_fft, self.hop, window=self.win, return_complex=True).abs()
        h = torch.log(s.clamp(min=1e-5))[:, None].transpose(2, 3)  # (B,1,T,F)
        feats = []
        for c in self.convs:
            h = F.leaky_relu(c(h), 0.1)
            feats.append(h)
        return self.out(h), feats


class MultiResolutionDiscriminator(nn.Module):
    def __init__(self, resolutions=RESOLUTIONS):
        super().__init__()
        self.discs = nn.ModuleList(SpectrogramDiscriminator(n, h) for n, h in resolutions)

    def forward(self, x):
        return [d(x) for d in self.discs]


def discriminator_loss(real_outs, fake_outs):
    loss = 0.0
    for (r, _), (f, _) in zip(real_outs, fake_outs):
        loss = loss + F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return loss / len(real_outs)


def generator_adv_loss(fake_outs):
    return sum(F.relu(1 - f).mean() for f, _ in fake_outs) / len(fake_outs)


def feature_matching_loss(real_outs, fake_outs):
    loss, n = 0.0, 0
    for (_, rf), (_, ff) in zip(real_outs, fake_outs):
        for a, b in zip(rf, ff):
            loss = loss + F.l1_loss(b, a.detach()) / (a.detach().abs().mean() + 1e-5)
            n += 1
    return loss / max(n, 1)
