"""Pieces of the training tasks that are plain functions: the VAE's time-stretch and EQ augmentations."""

import numpy as np
import torch

from sonolatent.training.tasks import eq_crops, magnitude_error, stretch_crops


def ramp(batch=64, frames=200):
    """Each mel band rises by 1 per frame: a crop's slope is its playback speed."""
    t = torch.arange(frames, dtype=torch.float32)
    return t.expand(batch, 3, frames).clone()


def slopes(mel):
    return (mel[..., 1:] - mel[..., :-1]).mean(dim=(1, 2)).numpy()


def test_no_stretch_is_the_first_frames():
    mel = ramp()
    out = stretch_crops(mel, 50, np.random.default_rng(0), 0.0, (0.5, 4.0))
    assert torch.equal(out, mel[..., :50])


def test_stretched_crops_move_slower_or_faster_within_the_range():
    mel = ramp(batch=400)
    out = stretch_crops(mel, 50, np.random.default_rng(1), 0.5, (0.5, 4.0))
    assert out.shape == (400, 3, 50)
    rate = slopes(out)                     # 1 / the stretch factor
    changed = np.abs(rate - 1) > 1e-3
    assert 0.4 < changed.mean() < 0.6      # about half of them
    assert rate.min() > 1 / 4.0 - 1e-3 and rate.max() < 2.0 + 1e-3
    assert (rate[changed] < 1).mean() > 0.5   # slow-downs (1..4x) are the larger part of log(0.5..4)
    assert (rate[changed] > 1).any()


def test_a_crop_too_short_to_speed_up_stays_as_it_is():
    mel = ramp(batch=32, frames=60)        # a 4x speed-up would need 200 frames
    out = stretch_crops(mel, 50, np.random.default_rng(2), 1.0, (0.25, 1.0))
    rate = slopes(out)
    kept = np.abs(rate - 1) < 1e-4
    assert np.all(kept | (rate > 1)) and kept.any() and (~kept).any()


def test_eq_is_a_smooth_bounded_curve_per_crop_and_leaves_silence_silent():
    import math
    floor = math.log(1e-5)
    rng = np.random.default_rng(3)
    mel = torch.from_numpy(rng.uniform(-4.0, 1.0, (200, 100, 20))).float()
    mel[:, :, :5] = floor                                  # each crop starts with digital silence
    out = eq_crops(mel, np.random.default_rng(4), 0.5, 12.0, floor)
    gain_db = (out - mel)[:, :, 5:] * 20 / math.log(10)     # where there is sound: the EQ in dB
    changed = gain_db.abs().amax(dim=(1, 2)) > 0.01
    assert 0.4 < changed.float().mean() < 0.6              # about half the crops
    # mel well above the floor: the curve is the gain, the same for every frame, within +-12 dB
    curve = gain_db[changed].mean(-1)
    assert torch.allclose(gain_db[changed], curve[..., None].expand_as(gain_db[changed]), atol=0.2)
    assert curve.abs().max() <= 12.0 + 1e-3 and curve.abs().max() > 6.0
    assert (curve[:, 1:] - curve[:, :-1]).abs().max() < 3.5   # smooth: no band steps by a third of the range
    assert torch.equal(out[:, :, :5], mel[:, :, :5])        # silence stays at the floor
    assert torch.equal(eq_crops(mel, np.random.default_rng(4), 0.0, 12.0, floor), mel)


def test_training_blends_match_the_morph_interpolation():
    """The morph term trains on the same blends the renderer makes (sonolatent.latent.interp)."""
    from sonolatent.latent.interp import lerp, slerp
    from sonolatent.training.tasks import blend_latents

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    center = rng.standard_normal(6).astype(np.float32)
    t = np.array([0.0, 0.3, 1.0], np.float32)
    A, B, T, C = map(torch.from_numpy, (a, b, t, center))
    for spherical, ref in ((False, lerp), (True, slerp)):
        got = blend_latents(A, B, T, C, spherical).numpy()
        for i in range(3):
            want = ref(a[i], b[i], t[i], center=center) if spherical else ref(a[i], b[i], t[i])
            assert np.allclose(got[i], want, atol=1e-4)
    A.requires_grad_(True)
    got = blend_latents(A, A.detach().clone(), T, C, True)   # parallel: the straight line, finite gradients
    assert torch.allclose(got, A, atol=1e-5)
    got.sum().backward()
    assert torch.isfinite(A.grad).all()


def test_spectral_shape_finds_a_tones_centroid_and_level():
    from sonolatent.audio.mel import MelConfig, MelSpectrogram
    from sonolatent.training.tasks import SpectralShape

    c = MelConfig()
    t = torch.arange(c.sample_rate) / c.sample_rate
    tones = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) for f in (300.0, 3000.0)])
    tones = torch.cat([tones, tones[:1] * 0.1])
    cent, energy = SpectralShape(c)(MelSpectrogram(c)(tones))
    assert cent.shape == energy.shape == (3, 87)                 # frame by frame
    assert abs(cent[0, 40] - 300) < 60 and abs(cent[1, 40] - 3000) < 400
    assert abs((energy[0, 40] - energy[2, 40]) - 2 * np.log(10)) < 0.05   # 20 dB quieter


def test_the_morph_term_cannot_be_bought_with_a_burst():
    """A blend that sits exactly between its ends scores ~0; the same blend with one loud frame
    (what a decoder could learn to emit to drag a crop-wide average) scores worse, not better."""
    from types import SimpleNamespace

    from sonolatent.audio.mel import MelConfig, MelSpectrogram
    from sonolatent.training.tasks import SpectralShape, VAETask

    c = MelConfig()
    t = torch.arange(c.sample_rate) / c.sample_rate
    rec = MelSpectrogram(c)(torch.stack([0.3 * torch.sin(2 * torch.pi * 500 * t)] * 2))   # equal ends
    mu = torch.zeros(2, 4, rec.shape[-1] // 4)

    def score(mix):
        net = SimpleNamespace(pca_mean=torch.zeros(4), decode=lambda z, n: mix)
        task = SimpleNamespace(shape=SpectralShape(c))
        return float(VAETask.interp_error(task, rec, mu, torch.full((2,), 0.5), True, net=net))

    assert score(rec.clone()) < 1e-4
    burst = rec.clone()
    burst[:, 60, 50] = 4.0
    assert score(burst) > 0.05



def test_learning_rate_halves_smoothly_and_depends_on_the_step_alone():
    from types import SimpleNamespace

    from sonolatent.training.tasks import VAETask, VAETrainConfig, VocoderTrainConfig

    p = torch.nn.Parameter(torch.zeros(1))
    for tcfg, lr0 in ((VAETrainConfig(lr=1e-3, lr_half_life=1000), 1e-3),
                      (VocoderTrainConfig(lr=4e-4, lr_half_life=1000), 4e-4)):
        opts = {"opt": torch.optim.AdamW([p], lr=123.0)}   # e.g. a resumed optimizer's saved rate
        task = SimpleNamespace(tcfg=tcfg, optimizers=lambda: opts)
        for step, want in ((0, lr0), (500, lr0 / 2 ** 0.5), (1000, lr0 / 2), (3000, lr0 / 8)):
            VAETask.schedule(task, step)
            assert abs(opts["opt"].param_groups[0]["lr"] - want) < 1e-12
    opts = {"opt": torch.optim.AdamW([p], lr=123.0)}
    VAETask.schedule(SimpleNamespace(tcfg=VAETrainConfig(lr=2e-3), optimizers=lambda: opts), 10 ** 6)
    assert opts["opt"].param_groups[0]["lr"] == 2e-3   # 0: constant


def test_the_magnitude_term_weighs_an_error_by_how_loud_the_band_is():
    """The same 1-neper error costs the log-mel L1 the same anywhere; on magnitudes, an error in a
    note's loud partial costs far more than one at the noise floor, and a gain on both sides changes
    nothing (each crop is measured against its own total)."""
    mel = torch.full((1, 100, 20), -11.0)
    mel[0, 30] = -1.0                                      # one loud partial
    loud, floor = mel.clone(), mel.clone()
    loud[0, 30] += 1.0
    floor[0, 60] += 1.0
    assert torch.isclose((loud - mel).abs().mean(), (floor - mel).abs().mean())
    assert magnitude_error(loud, mel) > 1000 * magnitude_error(floor, mel)
    assert torch.isclose(magnitude_error(loud + 2.0, mel + 2.0), magnitude_error(loud, mel))
    assert magnitude_error(mel, mel) == 0
