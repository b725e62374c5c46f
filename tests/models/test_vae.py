import numpy as np
import pytest
import torch

from sonolatent.audio.mel import MelConfig
from sonolatent.errors import ConfigError
from sonolatent.models import MelVAE, VAEConfig, latents_to_frames
from sonolatent.models.synth import MelTranspose

CFG = VAEConfig(channels=32, dec_layers=2, enc_blocks=1)


def test_shapes_and_latent_rate():
    vae = MelVAE(MelConfig(), CFG)
    mel = torch.randn(2, 100, 129) - 5
    mu, logvar = vae.posterior(mel)
    assert mu.shape == logvar.shape == (2, 16, 33)  # ceil(129 / 4)
    assert vae.latent_rate >= 20
    rec, mu2, _ = vae(mel)
    assert rec.shape == mel.shape
    assert vae.decode(mu).shape == (2, 100, 132)


def test_forward_backward_reduces_loss():
    torch.manual_seed(0)
    vae = MelVAE(MelConfig(), CFG)
    opt = torch.optim.Adam(vae.parameters(), 3e-3)
    mel = torch.randn(4, 100, 64) * 0.5 - 5
    losses = []
    for _ in range(30):
        rec, mu, logvar = vae(mel)
        loss = (rec - mel).abs().mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters() if p.requires_grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_latents_to_frames_interpolates_between_latent_frames():
    z = torch.tensor([[[0.0, 4.0, 8.0]]])
    f = latents_to_frames(z, 12, 4)
    assert f.shape == (1, 1, 12)
    assert f[0, 0, 0] == 0 and f[0, 0, -1] == 8
    assert torch.all(f[0, 0, 1:] >= f[0, 0, :-1])  # monotone
    assert torch.allclose(f[0, 0, 5:7], torch.tensor([3.5, 4.5]))


def test_pca_orders_by_variance_and_round_trips():
    torch.manual_seed(0)
    vae = MelVAE(MelConfig(), CFG)
    D = CFG.latent_dim
    scales = torch.linspace(0.1, 3.0, D)  # most variance in the LAST raw dimension
    data = torch.randn(4000, D) * scales + 1.0
    vae.set_pca(data)
    assert torch.all(vae.pca_std[:-1] >= vae.pca_std[1:])
    assert abs(vae.pca_std[0] - 3.0) < 0.2
    assert vae.pca_components[0].abs().argmax() == D - 1
    z = torch.randn(D, 10)
    assert torch.allclose(vae.from_pca(vae.to_pca(z)), z, atol=1e-4)


def test_config_limits():
    with pytest.raises(ConfigError):
        VAEConfig(latent_dim=65)
    with pytest.raises(ConfigError, match="linear_path needs downsample 1"):
        VAEConfig(linear_path=True)
    assert VAEConfig.from_dict({"latent_dim": 48}) == VAEConfig(latent_dim=48, linear_path=False)
    with pytest.raises(ConfigError, match="gelu must be one of exact, tanh"):
        VAEConfig(gelu="erf")
    assert VAEConfig.from_dict(CFG.to_dict()) == CFG


def test_gelu_kind_reaches_every_activation():
    for kind, approx in (("exact", "none"), ("tanh", "tanh")):
        vae = MelVAE(MelConfig(), VAEConfig(channels=16, dec_layers=2, enc_blocks=1, gelu=kind))
        acts = [m for m in vae.modules() if isinstance(m, torch.nn.GELU)]
        assert acts and all(m.approximate == approx for m in acts)


def test_transpose_moves_a_peak_up_an_octave():
    c = MelConfig()
    tr = MelTranspose(c)
    freqs = tr.freqs
    mel = torch.full((1, c.n_mels, 3), float(np.log(c.log_floor)))
    k = int(np.argmin(np.abs(freqs - 440)))
    mel[0, k] = 0.0
    up = tr(mel, 12.0)
    k2 = int(up[0, :, 0].argmax())
    assert abs(freqs[k2] - 2 * freqs[k]) / (2 * freqs[k]) < 0.08
    assert torch.equal(tr(mel, 0.0), mel)


def test_decoded_mel_is_bounded_even_for_wild_latents():
    """Whatever latents come in (a live control can push far off the training paths),
    the decoder hands the vocoder a mel that audio can have."""
    import math
    torch.manual_seed(0)
    vae = MelVAE(MelConfig(), CFG)
    zf = torch.randn(1, CFG.latent_dim, 40) * 1e3
    mel = vae.decode_frames(zf)
    assert mel.max() <= CFG.mel_max and mel.min() >= math.log(MelConfig().log_floor) - 1e-6
    assert mel.std() > 0  # bounded, not flattened


@pytest.mark.parametrize("norm", [True, False])
def test_the_decoder_norm_bounds_the_output_before_the_clamp(norm):
    """With ``dec_norm`` the last layer sees a normalised frame, so what it outputs does not grow
    with the latents, however far off they are (without it, it grows with them)."""
    torch.manual_seed(0)
    cfg = VAEConfig(channels=32, dec_layers=2, enc_blocks=1, dec_norm=norm, mel_max=1e12)
    vae = MelVAE(MelConfig(), cfg)
    zf = torch.randn(1, cfg.latent_dim, 40)
    with torch.no_grad():
        peak = [float(vae.decode_frames(zf * s).abs().max()) for s in (1e2, 1e5)]
    if norm:
        assert peak[1] < 100 and abs(peak[1] - peak[0]) < 0.05 * peak[0]
    else:
        assert peak[1] > 100 * peak[0]


def test_the_decoder_norm_is_a_config_switch():
    """Checkpoints from before ``dec_norm`` (config without it says false) keep their decoder."""
    torch.manual_seed(0)
    old = MelVAE(MelConfig(), VAEConfig(channels=32, dec_layers=2, enc_blocks=1, dec_norm=False))
    assert not any("norm" in k for k in old.state_dict() if k.startswith("dec"))
    new = MelVAE(MelConfig(), CFG)
    assert sum(k.startswith("dec") and "norm" in k for k in new.state_dict()) == 2 * (CFG.dec_layers + 1)


def test_linear_path_starts_as_the_pca_of_the_frames_it_is_fitted_to():
    """Fitted, with the conv paths' outputs at zero, the model is exactly a per-frame PCA: frames in
    the span of the top directions come back, and the codes have the prior's unit variance."""
    torch.manual_seed(0)
    cfg = VAEConfig(channels=32, dec_layers=2, enc_blocks=1, downsample=1, latent_dim=6, linear_path=True)
    vae = MelVAE(MelConfig(), cfg).eval()
    assert not vae.linear_path_fitted
    basis = torch.linalg.qr(torch.randn(100, 6))[0]                      # 6 directions in mel space
    codes = torch.randn(3000, 6) * torch.tensor([3.0, 2.0, 1.5, 1.0, 0.7, 0.5])
    frames = codes @ basis.T + 0.3                                       # normalised log-mel frames
    vae.set_linear_path(frames)
    assert vae.linear_path_fitted
    with torch.no_grad():
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.zero_()
        vae.dec_out.weight.zero_()
        vae.dec_out.bias.zero_()
        mel = vae.denormalize(frames[:200].T[None])                       # (1, 100, 200)
        mu = vae.encode(mel)
        rec = vae.decode(mu)
    sd = mu[0].std(1)
    assert torch.all(sd[:-1] > sd[1:])                                   # in order of variance ...
    assert abs(float(sd.pow(2).mean()) - 1.0) < 0.15                     # ... with the prior's mean variance
    assert (rec - mel).abs().max() < 1e-3
    with pytest.raises(ConfigError, match="no linear path"):
        MelVAE(MelConfig(), CFG).set_linear_path(frames)


@pytest.mark.parametrize("config", [
    VAEConfig(channels=32, dec_layers=2, enc_blocks=1, latent_dim=8),                     # tests' tiny model
    VAEConfig(channels=24, dec_layers=2, enc_blocks=2, latent_dim=6, downsample=8),
    VAEConfig(channels=24, dec_layers=2, enc_blocks=2, latent_dim=6, downsample=1, linear_path=True),  # as shipped
])
@pytest.mark.parametrize("chunk", [29, 64, 203])
def test_the_chunked_encoder_equals_the_whole_file_encoder(config, chunk):
    """encode_chunks (the GroupNorms' statistics gathered over chunks, pass by pass; each chunk read with
    a margin) gives the whole-mel encode's latents, on a clip several chunks long, its length no multiple
    of the downsampling, and asks for no more than a chunk and its margins at a time."""
    from sonolatent.models.vae import _encoder_reach
    torch.manual_seed(1)
    vae = MelVAE(MelConfig(), config).eval()
    if config.linear_path:
        torch.nn.init.normal_(vae.enc_lin.weight, std=0.1)
    T = 997
    mel = (torch.randn(1, 100, T) * 2 - 5).cumsum(-1) / 8 - 4   # wandering, not white: norms far from 0/1
    with torch.no_grad():
        whole = vae.encode(mel)[0]
    spans = []

    def read(a, b):
        spans.append(b - a)
        return mel[0, :, a:b]
    parts = list(vae.encode_chunks(read, T, chunk))
    got = torch.cat(parts, -1)
    assert got.shape == whole.shape and len(parts) > 3
    assert (got - whole).abs().max() < 1e-5 * max(1.0, float(whole.abs().max()))
    ds = config.downsample
    norms = sum(isinstance(m, torch.nn.GroupNorm) for m in vae.encoder.modules())
    assert len(spans) == (norms + 1) * len(parts)
    assert max(spans) <= (chunk // ds) * ds + 2 * (-(-_encoder_reach(vae.encoder) // ds) * ds)


def test_the_chunked_encoder_needs_each_norms_whole_file_statistics():
    """What the passes are for: the same chunks with each chunk's own statistics (what the encoder run
    on the chunk alone does) give other latents."""
    torch.manual_seed(1)
    vae = MelVAE(MelConfig(), VAEConfig(channels=32, dec_layers=2, enc_blocks=1, latent_dim=8)).eval()
    mel = (torch.randn(1, 100, 400) * 2 - 5).cumsum(-1) / 8 - 4
    with torch.no_grad():
        whole = vae.encode(mel)[0]
        alone = torch.cat([vae.encode(mel[..., a:a + 100])[0] for a in range(0, 400, 100)], -1)
    assert (alone - whole).abs().max() > 1e-2
