"""BatchSynth: many streams in one call; each stream equals the offline render of its latents."""

import numpy as np
import pytest

from sonolatent.models import load_bundle
from sonolatent.models.batched import BatchSynth
from sonolatent.models.synth import render_frames


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    return load_bundle(tiny_bundle_dir)


def test_each_stream_of_a_batch_equals_its_offline_render(bundle):
    """Three streams with different latents and transpositions, one call per frame: each stream's samples
    (after the lead-in) are render_frames of its own latents."""
    D, frames = bundle.vae.latent_dim, 24
    Z = np.random.default_rng(2).standard_normal((3, D, frames)).astype(np.float32)
    semis = [0.0, -3.0, 7.5]
    bs = BatchSynth(bundle, 5)
    rows = [4, 0, 2]
    out = np.stack([bs.process(rows, Z[:, :, t], semis) for t in range(frames)], 1)   # (3, frames, hop)
    for i in range(3):
        ref = render_frames(bundle, Z[i], semitones=semis[i])
        y = out[i].reshape(-1)[bs.delay:]
        assert np.abs(ref).max() > 1e-3
        assert np.abs(y - ref[:len(y)]).max() <= 1e-5


def test_a_stream_sounds_the_same_alone_or_beside_others_bit_for_bit(bundle):
    D = bundle.vae.latent_dim
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((12, 4, D)).astype(np.float32)
    alone, crowd = BatchSynth(bundle, 4), BatchSynth(bundle, 4)
    a = [alone.process([1], Z[t, :1], [2.0])[0] for t in range(12)]
    # the same stream, at another place in the batch and another stream number, beside three others
    b = [crowd.process([3, 0, 2, 1], Z[t, [1, 2, 0, 3]], [0.0, -5.0, 2.0, 1.0])[2] for t in range(12)]
    assert np.array_equal(np.concatenate(a), np.concatenate(b))


def test_reset_and_copy_give_a_stream_a_fresh_or_a_borrowed_state(bundle):
    D = bundle.vae.latent_dim
    Z = np.random.default_rng(4).standard_normal((10, D)).astype(np.float32)
    bs = BatchSynth(bundle, 3)
    first = np.concatenate([bs.process([0], Z[t:t + 1])[0] for t in range(10)])
    bs.reset(0)
    again = np.concatenate([bs.process([0], Z[t:t + 1])[0] for t in range(10)])
    assert np.array_equal(first, again)            # reset: as if new
    bs.copy(0, 2)                                  # stream 2 takes stream 0's state: both go on alike
    y = bs.process([0, 2], np.stack([Z[3], Z[3]]))
    assert np.array_equal(y[0], y[1])
    assert not np.array_equal(y[0], bs.process([1], Z[3:4])[0])   # a fresh stream differs
    with pytest.raises(ValueError):
        bs.process([0, 1], Z[:1])
