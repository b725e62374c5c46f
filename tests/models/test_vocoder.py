import torch

from sonolatent.audio.mel import MelConfig, MelSpectrogram
from sonolatent.models import Vocoder, VocoderConfig
from sonolatent.training.losses import MultiResolutionSTFTLoss


def test_shapes_and_backward():
    torch.manual_seed(0)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=32, n_layers=2))
    mel = torch.randn(2, 100, 20) - 5
    y = voc(mel)
    assert y.shape == (2, 20 * 512)
    y.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in voc.parameters())


def test_learns_to_reconstruct_a_tone():
    torch.manual_seed(0)
    c = MelConfig()
    mel = MelSpectrogram(c)
    t = torch.arange(8192) / c.sample_rate
    x = (0.5 * torch.sin(2 * torch.pi * 330 * t))[None]
    voc = Vocoder(c, VocoderConfig(dim=32, n_layers=2))
    opt = torch.optim.Adam(voc.parameters(), 2e-3)
    loss_fn = MultiResolutionSTFTLoss()
    first = None
    for _ in range(60):
        y = voc(mel(x))[:, : x.shape[-1]]
        loss = loss_fn(y, x) + (mel(y) - mel(x)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.75 * first


def test_prior_iterations_bring_the_priors_own_mel_to_the_input():
    """The refined prior is a spectrum whose mel is (nearly) the input mel; the plain envelope map blurs it."""
    import numpy as np

    from sonolatent.audio.mel import mel_filterbank
    c = MelConfig()
    t = torch.arange(44100) / c.sample_rate
    x = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((110, 220, 330, 440, 1760), 1))[None]
    e = torch.exp(MelSpectrogram(c)(x))[0]                                      # (n_mels, T)
    fb = torch.from_numpy(mel_filterbank(c))
    errors = []
    for iters in (0, 3):
        voc = Vocoder(c, VocoderConfig(dim=16, n_layers=1, istft_n_fft=2048, upsample=1, prior_iters=iters))
        s = voc._prior(e)
        assert s.shape == (1025, e.shape[-1]) and bool((s >= 0).all())
        errors.append(float((torch.log((fb @ s).clamp(min=1e-5)) - torch.log(e.clamp(min=1e-5))).abs().mean()))
    assert errors[1] < 0.6 * errors[0], errors
    assert np.isfinite(errors).all()


def test_config_errors_are_clear():
    import pytest

    from sonolatent.errors import ConfigError
    with pytest.raises(ConfigError, match="gelu must be one of exact, tanh"):
        VocoderConfig(gelu="fast")
    with pytest.raises(ConfigError, match="gelu"):
        VocoderConfig.from_dict({"gelu": [1]})
    with pytest.raises(ConfigError, match="prior_iters needs mel_prior and istft_n_fft"):
        Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, prior_iters=2))   # istft_n_fft 1024 != 2048
    with pytest.raises(ConfigError, match="prior_iters must be 0 or more"):
        VocoderConfig(prior_iters=-1)
