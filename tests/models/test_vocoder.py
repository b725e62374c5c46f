import numpy as np
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


def test_phase_advance_turns_a_steady_output_into_a_steady_partial():
    """With ``phase_advance``, a head that outputs the same advance every frame in a partial's
    bins makes one clean sinusoid (its frequency between bins): nothing turning to track."""
    c = MelConfig()
    voc = Vocoder(c, VocoderConfig(dim=16, n_layers=1, phase_advance=True)).eval()
    hop, n = voc.istft_hop, voc.config.istft_n_fft
    f = 1000.0
    k = round(f * n / c.sample_rate)
    dev = torch.zeros(1, 80, voc.n_bins)
    dev[..., k - 2: k + 3] = 2 * torch.pi * hop * f / c.sample_rate   # the partial's turn per hop, in its bins
    mag = torch.zeros(1, voc.n_bins, 80)
    mag[:, k - 2: k + 3] = 1.0
    y = voc.ola(torch.polar(mag, voc._integrate(dev, None).transpose(1, 2)))[0, 4096:-4096].numpy()
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / c.sample_rate)
    assert abs(freqs[spec.argmax()] - f) < 5
    assert spec[np.abs(freqs - f) > 60].max() < 0.03 * spec.max()   # nothing else of note
