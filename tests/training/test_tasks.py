"""Pieces of the training tasks that are plain functions: the VAE's time-stretch augmentation."""

import numpy as np
import torch

from sonolatent.training.tasks import stretch_crops


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
