import librosa
import numpy as np
import pytest
import torch

from sonolatent.audio.mel import MelConfig, MelSpectrogram, mel_envelope_matrix
from sonolatent.errors import ConfigError


def test_default_mel_is_44k_with_hop_under_12ms():
    c = MelConfig()
    assert c.sample_rate == 44100 and c.hop_length / c.sample_rate <= 0.012


def test_shapes_and_matches_librosa_reference():
    c = MelConfig()
    m = MelSpectrogram(c)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 10000)).astype(np.float32) * 0.1)
    y = m(x)
    assert y.shape == (2, c.n_mels, 10000 // c.hop_length + 1) == (2, c.n_mels, m.n_frames(10000))
    ref = librosa.feature.melspectrogram(y=x[1].numpy(), sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
                                         n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax, power=1.0, pad_mode="reflect")
    np.testing.assert_allclose(y[1].numpy(), np.log(np.maximum(ref, c.log_floor)), atol=1e-3)


def test_silence_sits_at_the_log_floor():
    c = MelConfig()
    y = MelSpectrogram(c)(torch.zeros(1, 4096))
    assert torch.allclose(y, torch.full_like(y, np.log(c.log_floor)))


def test_config_round_trip_and_mismatch_refused():
    c = MelConfig()
    assert MelConfig.from_dict(c.to_dict()) == c
    other = MelConfig(n_mels=80)
    with pytest.raises(ConfigError, match="n_mels 100 vs 80"):
        c.check_compatible(other, "the VAE and the vocoder")
    with pytest.raises(ConfigError, match="unknown setting"):
        MelConfig.from_dict({**c.to_dict(), "hopsize": 3})
    with pytest.raises(ConfigError):
        MelConfig(hop_length=4096, n_fft=2048)


def test_envelope_matrix_maps_a_flat_spectrum_back_flat_and_finds_a_tone():
    c = MelConfig()
    W = mel_envelope_matrix(c, 1024)
    assert W.shape == (513, c.n_mels) and (W >= 0).all()
    fb = MelSpectrogram(c).filterbank.numpy()
    flat = W @ fb.sum(axis=1)            # the mel of a flat magnitude spectrum of 1
    assert np.allclose(flat, 1.0, atol=1e-4)
    sr = c.sample_rate
    t = np.arange(sr) / sr
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]
    env = W @ MelSpectrogram(c).magnitude(tone)[0, :, 40].numpy()
    peak_hz = env.argmax() * sr / 1024
    assert abs(peak_hz - 1000) < 150     # within the 1 kHz mel band
    assert env[(np.arange(513) * sr / 1024) > 4000].max() < 1e-3 * env.max()
