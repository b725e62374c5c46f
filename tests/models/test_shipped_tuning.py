"""The shipped vocoder keeps a held note at its own pitch.

A vocoder that makes every frame afresh from the mel repeats itself every mel hop on a steady note, so
its partials land on multiples of 86.1 Hz (44.1 kHz / 512) whatever the note: an E5 (659.3 Hz) comes
out near 689 Hz, 77 cents sharp. The shipped vocoder carries its phase on from frame to frame; these
notes come out within 10 cents with nearly all their energy on their partials, and with the carried
phase shut off (the gate closed on every bin) the same weights put them back on the 86 Hz grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonolatent.audio.mel import MelSpectrogram
from sonolatent.models import load_bundle


def _tone(f0: float, sr: int, seconds: float = 2.0) -> np.ndarray:
    """Six harmonics, partial k at 1/k, -10 dBFS."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7))
    return (10 ** (-0.5) * x / np.abs(x).max()).astype(np.float32)


def _pitch(y: np.ndarray, f0: float, sr: int) -> tuple[float, float]:
    """(cents from f0 of the strongest peak within half an octave, share of energy off the partials)
    over the held middle second, 1-s Hann window, parabolic interpolation on the log power."""
    seg = y[len(y) // 2 - sr // 2: len(y) // 2 + sr // 2].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    f = np.fft.rfftfreq(len(seg), 1.0 / sr)
    lo, hi = np.searchsorted(f, f0 / np.sqrt(2)), np.searchsorted(f, f0 * np.sqrt(2))
    i = lo + int(np.argmax(spec[lo:hi]))
    a, b, c = np.log(spec[i - 1: i + 2] + 1e-30)
    peak = (i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(seg)
    near = np.zeros(len(f), bool)
    for k in range(1, 7):
        near |= np.abs(f - k * f0) <= max(8.0, k * f0 * (2 ** (30 / 1200) - 1))
    return 1200 * np.log2(peak / f0), spec[~near].sum() / spec.sum()


@pytest.fixture(scope="module")
def vocoder():
    return load_bundle().vocoder


@pytest.mark.parametrize("note", [76, 88])
def test_shipped_vocoder_holds_a_steady_note_at_its_pitch(vocoder, note):
    assert vocoder.config.phase_carry
    sr = vocoder.mel_config.sample_rate
    f0 = 440.0 * 2 ** ((note - 69) / 12)
    mel = MelSpectrogram(vocoder.mel_config)(torch.from_numpy(_tone(f0, sr))[None])
    with torch.no_grad():
        cents, off = _pitch(vocoder(mel)[0].numpy(), f0, sr)
        assert abs(cents) < 10 and off < 0.05, (cents, off)
        weight, bias = vocoder.carry.weight.clone(), vocoder.carry.bias.clone()
        try:                                  # the same weights with the carried phase shut off
            vocoder.carry.weight.zero_()
            vocoder.carry.bias.fill_(-30.0)
            shut_cents, shut_off = _pitch(vocoder(mel)[0].numpy(), f0, sr)
        finally:
            vocoder.carry.weight.copy_(weight)
            vocoder.carry.bias.copy_(bias)
    grid = sr / vocoder.mel_config.hop_length
    on_grid = abs(f0 * 2 ** (shut_cents / 1200) / grid - round(f0 * 2 ** (shut_cents / 1200) / grid)) < 0.05
    assert on_grid and (abs(shut_cents) > 15 or shut_off > 0.2), (shut_cents, shut_off)
