import numpy as np
import pytest

from sonolatent.latent import PCABasis, blend, interpolate, lerp, slerp


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    return rng.standard_normal((8, 20)).astype(np.float32), rng.standard_normal((8, 20)).astype(np.float32)


def test_lerp_endpoints_and_midpoint(pair):
    a, b = pair
    np.testing.assert_array_equal(lerp(a, b, 0.0), a)
    np.testing.assert_array_equal(lerp(a, b, 1.0), b)
    np.testing.assert_allclose(lerp(a, b, 0.5), (a + b) / 2, atol=1e-6)


def test_slerp_endpoints_exact_with_center(pair):
    a, b = pair
    c = np.linspace(-1, 1, 8)
    np.testing.assert_array_equal(slerp(a, b, 0.0, c), a)
    np.testing.assert_array_equal(slerp(a, b, 1.0, c), b)
    t = np.linspace(0, 1, a.shape[1])
    out = slerp(a, b, t, c)
    np.testing.assert_array_equal(out[:, 0], a[:, 0])
    np.testing.assert_array_equal(out[:, -1], b[:, -1])


def test_slerp_follows_the_arc_around_the_center():
    c = np.array([5.0, -3.0])
    a, b = c + np.array([2.0, 0.0]), c + np.array([0.0, 2.0])
    m = slerp(a, b, 0.5, c)
    # halfway along a quarter circle of radius 2 around c (lerp would cut inside: radius sqrt(2))
    np.testing.assert_allclose(np.linalg.norm(m - c), 2.0, rtol=1e-6)
    np.testing.assert_allclose(m - c, [np.sqrt(2), np.sqrt(2)], rtol=1e-6)
    assert np.linalg.norm(lerp(a, b, 0.5) - c) < 1.5
    # angle moves uniformly
    q = slerp(a, b, 1 / 3, c) - c
    np.testing.assert_allclose(np.degrees(np.arctan2(q[1], q[0])), 30.0, atol=1e-4)


def test_slerp_falls_back_to_lerp_when_parallel():
    a = np.array([1.0, 2.0, 3.0])
    for b in (2 * a, a * (1 + 1e-9), np.zeros(3)):
        np.testing.assert_allclose(slerp(a, b, 0.3), lerp(a, b, 0.3), rtol=1e-6, atol=1e-7)
        assert np.all(np.isfinite(slerp(a, b, 0.3)))
    # antiparallel vectors: sin(angle) = 0 too, so lerp (through the centre) rather than NaN
    np.testing.assert_allclose(slerp(a, -a, 0.5), np.zeros(3), atol=1e-6)


def test_interpolate_dispatch_and_unknown(pair):
    a, b = pair
    np.testing.assert_array_equal(interpolate(a, b, 0.25, "lerp"), lerp(a, b, 0.25))
    np.testing.assert_array_equal(interpolate(a, b, 0.25, "slerp"), slerp(a, b, 0.25))
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate(a, b, 0.5, "cubic")


def test_blend_n_sources(pair):
    a, b = pair
    c = a * 0.5 - b
    n = a.shape[1]
    w = np.stack([np.full(n, 2.0), np.full(n, 1.0), np.full(n, 1.0)])
    np.testing.assert_allclose(blend([a, b, c], w, "lerp"), 0.5 * a + 0.25 * b + 0.25 * c, atol=1e-6)
    # one-hot weights pick a source exactly, for both interpolations
    for interp in ("lerp", "slerp"):
        onehot = np.zeros((3, n))
        onehot[1] = 1
        np.testing.assert_allclose(blend([a, b, c], onehot, interp), b, atol=1e-6)
    # two sources: blend == interpolate with t = w1 / (w0 + w1)
    t = np.linspace(0, 1, n)
    center = np.full(8, 0.3)
    np.testing.assert_allclose(blend([a, b], np.stack([1 - t, t]), "slerp", center), slerp(a, b, t, center), atol=1e-5)
    np.testing.assert_allclose(blend([a, b], np.stack([3 * (1 - t), 3 * t]), "lerp"), lerp(a, b, t), atol=1e-5)
    with pytest.raises(ValueError, match="sum to 0"):
        blend([a, b], np.zeros((2, n)))
    with pytest.raises(ValueError, match="non-negative"):
        blend([a, b], np.stack([-t, t]))


def test_pca_offsets_in_standard_deviations():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    basis = PCABasis(mean=np.array([1.0, 2, 3, 4]), components=q.T, std=np.array([4.0, 2, 1, 0.5]))
    z = rng.standard_normal((4, 6))
    np.testing.assert_allclose(basis.from_pca(basis.to_pca(z)), z, atol=1e-5)
    shifted = basis.offset(z, {1: 1.5})
    dc = basis.to_pca(shifted) - basis.to_pca(z)
    np.testing.assert_allclose(dc, np.outer([0, 1.5 * 2, 0, 0], np.ones(6)), atol=1e-5)
    # per-frame offsets as an array (D, n) in sd
    off = np.zeros((4, 6))
    off[3] = np.linspace(0, 2, 6)
    dc = basis.to_pca(basis.offset(z, off)) - basis.to_pca(z)
    np.testing.assert_allclose(dc[3], np.linspace(0, 2, 6) * 0.5, atol=1e-5)
    np.testing.assert_allclose(dc[:3], 0, atol=1e-5)
    with pytest.raises(ValueError, match="outside 0..3"):
        basis.offset(z, {4: 1.0})
