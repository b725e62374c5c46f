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
