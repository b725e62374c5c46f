"""The shipped live path (checkpoints/default with its distilled causal encoder): a transfer moves the
spectral centroid toward the sample's and follows the input's energy envelope, lined up."""

from pathlib import Path

import numpy as np
import pytest

from sonolatent.audio.io import read_audio
from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle
from sonolatent.render.transfer import transfer

from ..livebundle import live_core, sample_cache

SAMPLES = Path(__file__).resolve().parents[2] / "patches" / "samples"
SR = 44100


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(DEFAULT_CHECKPOINT)


def centroid(y):
    frames = y[: len(y) // 2048 * 2048].reshape(-1, 2048) * np.hanning(2048)
    S = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    e = S.sum(1)
    S = S[e > 1e-3 * e.max()]
    return float((S @ np.fft.rfftfreq(2048, 1 / SR)).sum() / S.sum())


def test_transfer_moves_the_centroid_toward_the_sample(shipped):
    cache = sample_cache(shipped, SAMPLES)
    x, _ = read_audio(SAMPLES / "piano_c4.wav", SR)
    x = x[: SR]
    target = centroid(read_audio(SAMPLES / "brass_c4.wav", SR)[0])
    timbre = cache.load_timbre("brass_c4")
    c0, c1 = (centroid(transfer(shipped, x, timbre, a)) for a in (0.0, 0.8))
    assert abs(c1 - target) < 0.6 * abs(c0 - target), (c0, c1, target)


def test_transfer_follows_the_input_envelope(shipped):
    cache = sample_cache(shipped, SAMPLES)
    x = np.zeros(2 * SR, np.float32)
    t = 1000
    for name, n in (("kick", 6000), ("marimba_c5", 9000), ("piano_c4", 14000), ("kick", 5000), ("organ_c3", 12000)):
        s = read_audio(SAMPLES / f"{name}.wav", SR)[0][:n]
        x[t:t + len(s)] = s
        t += len(s) + 8000
    y = transfer(shipped, x, cache.load_timbre("flute_c5"), 0.5)
    ex, ey = (np.sqrt(np.mean(v[: len(v) // 512 * 512].reshape(-1, 512) ** 2, 1)) for v in (x, y))
    corr = {lag: np.corrcoef(ex[max(0, -lag):len(ex) - max(0, lag)], ey[max(0, lag):len(ey) - max(0, -lag)])[0, 1]
            for lag in range(-3, 4)}
    best = max(corr, key=corr.get)
    assert abs(best) <= 1 and corr[best] > 0.7, corr


def test_shipped_path_latency(shipped):
    core = live_core(shipped, SR)
    assert core.live_delay + core.hop == 1536          # 34.8 ms: mel look-ahead 1024 + vocoder 512
    long = load_bundle(DEFAULT_CHECKPOINT.parent / "long-window")
    assert long.encoder is not None
    core = live_core(long, SR)
    assert core.live_delay + core.hop == 2048          # 46.4 ms: mel look-ahead 1024 + vocoder 1024


def test_a_held_latent_comes_out_with_its_own_mel(shipped):
    """Free mode and a frozen playhead hand the vocoder one mel frame over and over. The shipped
    vocoder must render that as the frame's own spectrum, not fall silent: a fine-tune on real
    recordings once took the latent mean's held frame from 0.32 to 2.2 nepers of log-mel error
    (-29 -> -56 dB) while every recording in the held-out set got better."""
    import torch

    from sonolatent.audio.mel import MelSpectrogram
    for offset in (0.0, 0.5):
        z = shipped.vae.pca_mean.detach().float().reshape(1, -1, 1)
        if offset:
            z = z + offset * torch.from_numpy(np.random.default_rng(0).standard_normal((1, z.shape[1], 1))).float()
        with torch.no_grad():
            held = shipped.vae.decode_frames(z.repeat(1, 1, 96))
            got = MelSpectrogram(shipped.mel_config)(shipped.vocoder(held))
        n = min(got.shape[-1], held.shape[-1])
        err = float((got[..., 24:n - 8] - held[..., 24:n - 8]).abs().mean())
        assert err < 0.6, (offset, err)
