import numpy as np
import pytest
import torch

from sonolatent.latent import align, blend_sources, frame_positions, output_frames, sample, to_mel_rate
from sonolatent.models import latents_to_frames


def ramp(D, L, scale=1.0):
    return (np.arange(L, dtype=np.float32)[None, :] * scale + np.arange(D, dtype=np.float32)[:, None] * 100)


def test_sample_linear_interpolation_and_clamping():
    z = ramp(3, 5)
    out = sample(z, [0, 0.5, 2.25, 4, 7, -1])
    np.testing.assert_allclose(out[0], [0, 0.5, 2.25, 4, 4, 0])
    np.testing.assert_allclose(out[2], [200, 200.5, 202.25, 204, 204, 200])
    with pytest.raises(ValueError):
        sample(np.zeros((3, 0)), [0])


def test_own_timing_matches_latents_to_frames():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 11)).astype(np.float32)
    for n in (1, 40, 44, 50):
        ref = latents_to_frames(torch.from_numpy(z)[None], n, 4)[0].numpy()
        np.testing.assert_allclose(to_mel_rate(z, n, 4), ref, atol=1e-6)


def test_stretch_maps_whole_source_onto_output():
    n_src = 40  # mel frames; latent frames L = 10
    z = ramp(2, 10)
    for n_out in (20, 40, 160):
        pos = frame_positions(n_out, n_src, 4, "stretch")
        assert pos.shape == (n_out,)
        assert np.all(np.diff(pos) > 0)
        # first and last output frames read the first and last quarter-frame of the source
        np.testing.assert_allclose(pos[0], (0.5 * n_src / n_out) / 4 - 0.5)
        np.testing.assert_allclose(pos[-1], ((n_out - 0.5) * n_src / n_out) / 4 - 0.5)
        out = align([z], [n_src], n_out, 4, "stretch")[0]
        assert out.shape == (2, n_out)
        # the middle of the output reads the middle of the source (latent position 4.5 of 0..9)
        np.testing.assert_allclose(out[0, n_out // 2 - 1:n_out // 2 + 1].mean(), 4.5, atol=1e-4)


def test_loop_wraps_at_own_speed():
    pos = frame_positions(100, 40, 4, "loop")
    np.testing.assert_allclose(pos[:40], frame_positions(40, 40, 4, "stretch"))
    np.testing.assert_allclose(pos[40:80], pos[:40])
    np.testing.assert_allclose(pos[80:], pos[:20])


def test_first_and_output_frames():
    assert output_frames([30, 50], "first") == 30
    assert output_frames([30, 50], "stretch") == 50
    assert output_frames([30, 50], "loop") == 50
    assert output_frames([30, 50], "stretch", 77) == 77
    with pytest.raises(ValueError):
        output_frames([30, 50], "first", 77)
    with pytest.raises(ValueError, match="unknown alignment"):
        frame_positions(10, 10, 4, "wobble")


def test_alignment_modes_on_two_sources():
    za, zb = ramp(2, 5), ramp(2, 10, scale=-1.0)  # 20 and 40 mel frames
    # first: A at its own timing, B squeezed to A's 20 frames
    n = output_frames([20, 40], "first")
    a1, b1 = align([za, zb], [20, 40], n, 4, "first")
    np.testing.assert_allclose(a1, to_mel_rate(za, 20, 4))
    np.testing.assert_allclose(b1[:, 0], zb[:, 0])
    np.testing.assert_allclose(b1[:, -1], zb[:, -1])
    np.testing.assert_allclose(b1[:, 10], sample(zb, [(10.5 * 2 - 0.5 + 0.5) / 4 - 0.5])[:, 0])
    # loop: A repeats under B
    n = output_frames([20, 40], "loop")
    a2, b2 = align([za, zb], [20, 40], n, 4, "loop")
    np.testing.assert_allclose(a2[:, 20:], a2[:, :20])
    np.testing.assert_allclose(b2, to_mel_rate(zb, 40, 4))
    # blend with one-hot weights gives the aligned source back
    w = np.zeros((2, n))
    w[0] = 1
    np.testing.assert_allclose(blend_sources([za, zb], [20, 40], w, 4, align_mode="loop"), a2)
