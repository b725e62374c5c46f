import numpy as np
import pytest
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


def test_the_sharpened_prior_on_a_shorter_synthesis_stft_comes_closer_to_the_sound():
    """With 1024-point synthesis (43 Hz bins, wider than the lowest mel bands) the bands are laid on those
    bins: put back on the sound's own phase, the sharpened prior is nearer the original's log-mel than the
    envelope alone, at the scale of that shorter STFT."""
    c = MelConfig()
    t = torch.arange(44100) / c.sample_rate
    x = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((65, 130, 196, 262, 523, 1760), 1))[None]
    mel = MelSpectrogram(c)
    X = mel(x)[0]
    win = torch.hann_window(1024)
    S = torch.stft(x[0], 1024, 256, window=win, center=True, return_complex=True)
    e = torch.exp(X)[:, torch.clamp(torch.arange(S.shape[1]) * 256 // c.hop_length, max=X.shape[1] - 1)]
    errors = []
    for iters in (0, 3):
        voc = Vocoder(c, VocoderConfig(dim=16, n_layers=1, istft_n_fft=1024, upsample=2, prior_iters=iters))
        s = voc._prior(e)
        assert s.shape == (513, e.shape[-1]) and bool((s >= 0).all())
        y = torch.istft(torch.polar(s, torch.angle(S)), 1024, 256, window=win, center=True, length=x.shape[1])
        errors.append(float((mel(y[None])[0] - X).abs().mean()))
    assert errors[1] < 0.8 * errors[0], errors


def test_config_errors_are_clear():
    import pytest

    from sonolatent.errors import ConfigError
    with pytest.raises(ConfigError, match="gelu must be one of exact, tanh"):
        VocoderConfig(gelu="fast")
    with pytest.raises(ConfigError, match="gelu"):
        VocoderConfig.from_dict({"gelu": [1]})
    with pytest.raises(ConfigError, match="prior_iters needs mel_prior"):
        Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, prior_iters=2, mel_prior=False))
    with pytest.raises(ConfigError, match="prior_iters must be 0 or more"):
        VocoderConfig(prior_iters=-1)


def _peak_hz(y: torch.Tensor, sr: int) -> float:
    import numpy as np
    seg = y[len(y) // 4: len(y) // 4 + 16384].numpy() * np.hanning(16384)
    return float(np.fft.rfftfreq(16384, 1 / sr)[np.argmax(np.abs(np.fft.rfft(seg)))])


def test_carried_phase_holds_a_steady_tone_at_its_own_pitch():
    """Made afresh from the mel at every frame, a steady 1000 Hz tone repeats every mel hop and comes out on
    the grid of multiples of sr / hop (1033.6 Hz); with the gate open, each bin's phase runs on at its
    spectral peak's frequency like an oscillator, and the tone keeps its pitch."""
    c = MelConfig()
    f0 = 1000.0
    x = (0.3 * torch.sin(2 * torch.pi * f0 * torch.arange(2 * c.sample_rate) / c.sample_rate))[None]
    mel = MelSpectrogram(c)(x)
    voc = Vocoder(c, VocoderConfig(dim=16, n_layers=1, prior_iters=3, phase_carry=True)).eval()
    peaks = {}
    with torch.no_grad():
        voc.head.weight.zero_()
        voc.head.bias.zero_()                        # magnitude: the prior alone; the network's phase: 0
        for gate in (-20.0, 20.0):
            voc.carry.bias.fill_(gate)
            peaks[gate] = _peak_hz(voc(mel)[0], c.sample_rate)
    grid = c.sample_rate / c.hop_length
    assert abs(peaks[-20.0] / grid - round(peaks[-20.0] / grid)) < 0.05 and abs(peaks[-20.0] - f0) > 20, peaks
    assert abs(peaks[20.0] - f0) < 4, peaks


def test_peak_advance_finds_each_bins_partial_between_bins():
    """Two partials at fractional bins 20.3 and 60.8 (Hann window log-magnitudes): every bin advances at the
    frequency of the peak nearest to it."""
    import numpy as np
    voc = Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, phase_carry=True))
    n = voc.config.istft_n_fft
    t = np.arange(n)
    frame = np.hanning(n + 1)[:n] * (np.cos(2 * np.pi * 20.3 * t / n) + 0.5 * np.cos(2 * np.pi * 60.8 * t / n))
    logmag = torch.from_numpy(np.log(np.abs(np.fft.rfft(frame)) + 1e-9)).float()
    peak, advance = voc._peak_advance(logmag)
    bins = peak - peak % voc.hops_per_frame + advance / voc.radians_per_bin   # advance drops whole turns
    assert int(peak[18]) == 20 and int(peak[58]) == 61
    assert abs(float(bins[20]) - 20.3) < 0.03 and abs(float(bins[18]) - 20.3) < 0.03
    assert abs(float(bins[61]) - 60.8) < 0.03 and abs(float(bins[58]) - 60.8) < 0.03
    assert bins.shape == (voc.n_bins,)


@pytest.mark.parametrize("seed,upsample,n_fft", [(0, 2, 1024), (1, 1, 2048)])
def test_compiled_carried_phase_equals_the_one_training_differentiates(seed, upsample, n_fft):
    """Live and offline renders use the compiled recurrence; training differentiates through torch's. On a
    vocoder with a gate that varies by bin and frame, both give the same spectra."""
    torch.manual_seed(seed)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=32, n_layers=2, upsample=upsample, istft_n_fft=n_fft,
                                             prior_iters=2, phase_carry=True))
    with torch.no_grad():
        voc.carry.weight.normal_(0, 0.1)
    mel = torch.randn(2, 100, 30) - 5
    with torch.no_grad():
        compiled = voc.spectra(mel)
    mel.requires_grad_(True)
    traced = voc.spectra(mel)
    assert traced.requires_grad
    assert (compiled - traced.detach()).abs().max() <= 1e-4 * float(traced.detach().abs().max())


@pytest.mark.parametrize("iters", [0, 3])
def test_sparse_prior_of_the_live_path_equals_the_dense_one(iters):
    """The single-frame path computes the mel prior with sparse matrices (compiled); training and the chunk
    path use dense products. Same numbers, on a quiet and a loud frame."""
    voc = Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, prior_iters=iters))
    from sonolatent.models.compiled import SparsePrior
    sp = SparsePrior(voc.envelope.numpy(), voc.filterbank.numpy() if iters else None,
                     getattr(voc, "prior_target_scale", 1.0), iters, voc.mel_config.log_floor)
    for level in (-9.0, 0.0):
        mel = torch.randn(100) + level
        dense = torch.log(voc._prior(torch.exp(mel)).clamp(min=voc.mel_config.log_floor))
        fast = torch.from_numpy(sp(torch.exp(mel).numpy()))
        assert (dense - fast).abs().max() < 1e-4


def _carry_inputs(case: str, frames: int = 6, bins: int = 513, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(bins, dtype=torch.float32)
    if case == "flat":            # no peak anywhere: every bin belongs to an edge
        logmag = torch.zeros(frames, bins)
    elif case == "edge":          # falling from bin 0: the only peak is the first bin
        logmag = (-0.01 * k).repeat(frames, 1)
    elif case == "tie":           # peaks at 10 and 14: bin 12 is as far from both
        logmag = -((k - 10).abs().minimum((k - 14).abs())).repeat(frames, 1)
    else:
        logmag = torch.randn(frames, bins, generator=g)
    phase = 3 * torch.randn(frames, bins, generator=g)
    gate = torch.rand(frames // 2, bins, generator=g)
    prev = torch.polar(torch.ones(bins), 3 * torch.randn(bins, generator=g))
    return logmag, phase, gate, prev


@pytest.mark.parametrize("case", ["flat", "edge", "tie", "random"])
def test_carried_phase_compiled_and_torch_agree_on_every_bin_and_the_state(case):
    """Unit magnitudes, so every bin's phase counts (bins at the floor included), and the state carried into
    a second call: the compiled kernel and the torch recurrence training differentiates give the same."""
    from sonolatent.models.compiled import carry_frames
    from sonolatent.models.streaming import StreamState
    voc = Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, phase_carry=True))
    logmag, phase, gate, prev = _carry_inputs(case)
    ones = torch.ones_like(logmag)
    halves = ((slice(0, 2), slice(0, 1)), (slice(2, 6), slice(1, 3)))   # frames, mel frames (upsample 2)
    st = StreamState()
    st.set(voc.carry, prev[None])
    traced = []
    for fr, mf in halves:     # torch, with grad on, in two calls sharing the state
        lm = logmag[None, fr].clone().requires_grad_(True)
        traced.append(voc._carry_phase(lm, ones[None, fr], phase[None, fr], gate[None, mf], st)[0].detach())
    traced_state = st.get(voc.carry)[0]
    last = prev.numpy()
    for (fr, mf), ref in zip(halves, traced):
        unit, last = carry_frames(logmag[fr].numpy(), phase[fr].numpy(), gate[mf].numpy(),
                                  last, 2, voc.hops_per_frame, voc.radians_per_bin, ones[fr].numpy())
        assert (torch.from_numpy(unit) - ref).abs().max() < 1e-4
    assert (torch.from_numpy(last) - traced_state).abs().max() < 1e-4


def test_a_bad_value_does_not_latch_in_the_carried_phase():
    """A NaN in one frame's phase gives way to the network's phase again at the next frame."""
    from sonolatent.models.compiled import carry_frames
    logmag, phase, gate, prev = _carry_inputs("random")
    phase[1, 100:110] = float("nan")
    gate[:] = 0.9
    ones = np.ones(logmag.shape, np.float32)
    unit, last = carry_frames(logmag.numpy(), phase.numpy(), gate.numpy(),
                              prev.numpy(), 2, 4, np.pi / 2, ones)
    assert np.isfinite(unit).all() and np.isfinite(last).all()
    assert np.allclose(np.abs(unit), 1, atol=1e-4)
