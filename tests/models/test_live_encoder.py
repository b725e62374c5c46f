"""The live input's front end: the streaming mel equals the offline mel, the causal encoder streams
exactly, and the live encoder (both together) equals its offline reference in any chunking."""

import json

import numpy as np
import pytest
import torch

from sonolatent.audio.mel import MelConfig, MelSpectrogram, MelStream
from sonolatent.errors import CheckpointError, ConfigError
from sonolatent.models import load_bundle
from sonolatent.models.encoder import CausalEncoder, EncoderConfig, LiveEncoder, encode_live

from ..livebundle import make_live_bundle
from .test_streaming import _chunks as _odd_chunks


@pytest.fixture(scope="module")
def live_bundle(tmp_path_factory):
    return load_bundle(make_live_bundle(tmp_path_factory.mktemp("live")))


def _sound(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 44100
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * (t % 0.25 < 0.12) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.mark.parametrize("n", [200, 1024, 1025, 1537, 9001, 30000])
def test_mel_stream_equals_offline_mel_in_odd_chunks(n):
    mel = MelSpectrogram(MelConfig())
    x = _sound(n, n)
    ref = mel(torch.from_numpy(x)[None])[0].numpy()
    for seed, hi in ((0, 1), (1, 333), (2, 5000)):
        if hi == 1 and n > 2000:
            continue   # sample by sample: only the short ones (a frame per call otherwise costs the test its time)
        s = MelStream(mel)
        parts = [s.process(x[sl]) for sl in _odd_chunks(n, np.random.default_rng(seed), hi)] + [s.flush()]
        got = np.concatenate([p[0] for p in parts], 1)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-4


def test_mel_stream_lookahead_is_half_a_window():
    """Frame t comes out once sample t*hop + n_fft/2 - 1 is in (frame 0: one sample more, for the reflection),
    so after M*hop samples M-1 frames are out: a delay of n_fft/2 - hop samples in the decoder's count."""
    c = MelConfig()
    s = MelStream(MelSpectrogram(c))
    x = _sound(20 * c.hop_length)
    out, counts = 0, []
    for i in range(len(x)):
        out += s.process(x[i:i + 1])[0].shape[1]
        counts.append(out)
    counts = np.array(counts)
    assert counts[c.n_fft // 2 - 1] == 0 and counts[c.n_fft // 2] == 1      # frame 0 at 1025 samples
    for t in range(2, 19):
        need = t * c.hop_length + c.n_fft // 2       # samples needed for frame t
        assert counts[need - 2] == t and counts[need - 1] == t + 1
    assert s.delay == c.n_fft // 2 - c.hop_length == 512


def test_causal_encoder_streams_exactly_and_never_looks_ahead():
    torch.manual_seed(0)
    enc = CausalEncoder(MelConfig(), EncoderConfig(latent_dim=6, channels=16, layers=3)).eval()
    mel = torch.randn(1, 100, 90) - 5
    with torch.no_grad():
        ref = enc(mel)
        mel2 = mel.clone()
        mel2[..., 60:] += 3
        assert torch.equal(enc(mel2)[..., :60], ref[..., :60])
        from sonolatent.models import StreamState
        st = StreamState()
        got = torch.cat([enc(mel[..., s], st) for s in _odd_chunks(90, np.random.default_rng(0), 7)], -1)
    assert (got - ref).abs().max() < 1e-5
    assert enc.receptive_field == 1 + 2 + 2 * (1 + 2 + 4)


def test_live_encoder_streamed_equals_offline(live_bundle):
    x = _sound(44100 // 2 + 77, 3)
    z_ref, lev_ref = encode_live(live_bundle, x)
    assert z_ref.shape == (8, len(x) // 512 + 1)
    for seed, hi in ((0, 97), (1, 700), (2, 4001)):
        live = LiveEncoder(live_bundle)
        parts = [live.process(x[s]) for s in _odd_chunks(len(x), np.random.default_rng(seed), hi)] + [live.flush()]
        z = np.concatenate([p[0] for p in parts], 1)
        lev = np.concatenate([p[1] for p in parts])
        assert z.shape == z_ref.shape and np.abs(z - z_ref).max() < 1e-4
        assert np.abs(lev - lev_ref).max() < 1e-5
    assert live.delay == 512


def test_live_encoder_level_is_the_windowed_rms(live_bundle):
    x = np.full(44100, 0.25, np.float32)
    _, lev = encode_live(live_bundle, x)
    assert np.allclose(lev[3:-3], 0.25, atol=1e-5)
    _, lev0 = encode_live(live_bundle, np.zeros(20000, np.float32))
    assert np.all(lev0 == 0)


def test_silence_column_is_what_zeros_encode_to(live_bundle):
    live = LiveEncoder(live_bundle)
    col = live.silence()
    z, _ = encode_live(live_bundle, np.zeros(44100, np.float32))
    assert np.abs(z[:, -1] - col).max() < 1e-5


def test_bundle_refuses_an_encoder_distilled_from_another_vae(tmp_path):
    folder = make_live_bundle(tmp_path / "b")
    cfg = folder / "encoder" / "config.json"
    meta = json.loads(cfg.read_text())
    meta["provenance"]["teacher_sha256"] = "0" * 64
    cfg.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="distilled from another VAE"):
        load_bundle(folder)


def test_bundle_without_encoder_plays_no_live_input(tiny_bundle_dir):
    b = load_bundle(tiny_bundle_dir)
    assert b.encoder is None
    with pytest.raises(ConfigError, match="no live encoder"):
        LiveEncoder(b)
