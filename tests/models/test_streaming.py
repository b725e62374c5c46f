"""Streaming equals offline, chunk by chunk, for random block sizes."""

import numpy as np
import pytest
import torch

from sonolatent.audio.mel import MelConfig
from sonolatent.models import (MelVAE, StreamState, VAEConfig, Vocoder, VocoderConfig, load_bundle, load_checkpoint,
                               save_checkpoint)
from sonolatent.models.compiled import _conv, _depthwise, _matvec
from sonolatent.models.streaming import CausalConv1d, OverlapAdd, history_array
from sonolatent.models.synth import StreamingSynth, render_frames


def _chunks(total, rng, hi):
    i = 0
    while i < total:
        k = int(rng.integers(1, hi + 1))
        yield slice(i, min(total, i + k))
        i += k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_causal_conv_streams_exactly(seed):
    torch.manual_seed(seed)
    conv = CausalConv1d(4, 5, 7, dilation=3)
    x = torch.randn(2, 4, 101)
    ref = conv(x)
    st = StreamState()
    rng = np.random.default_rng(seed)
    y = torch.cat([conv(x[..., s], st) for s in _chunks(101, rng, 13)], -1)
    assert (y - ref).abs().max() < 1e-5


def test_causal_conv_never_looks_ahead():
    conv = CausalConv1d(1, 1, 5, dilation=2)
    x = torch.randn(1, 1, 40)
    x2 = x.clone()
    x2[..., 30:] += 10
    assert torch.equal(conv(x)[..., :30], conv(x2)[..., :30])


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (2048, 512)])
def test_overlap_add_streams_exactly(n_fft, hop):
    ola = OverlapAdd(n_fft, hop)
    spec = torch.randn(1, n_fft // 2 + 1, 40, dtype=torch.complex64)
    ref = ola(spec)
    assert ref.shape[-1] == 40 * hop
    rng = np.random.default_rng(3)
    st = StreamState()
    parts = [ola(spec[..., s], st) for s in _chunks(40, rng, 5)]
    y = torch.cat(parts + [ola.flush(st)], -1)
    assert y.shape == ref.shape and (y - ref).abs().max() < 1e-5
    # the layer's delay: after T frames, T*hop - n_fft/2 samples are out
    assert sum(p.shape[-1] for p in parts) == 40 * hop - ola.delay


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (2048, 512)])
def test_overlap_add_live_steps_take_turns_with_chunks(n_fft, hop):
    """The live step (numpy, the tail added onto in place) and the chunked path share one stream's tail:
    mixed call by call, from the very first frame, they give the offline output."""
    ola = OverlapAdd(n_fft, hop)
    spec = torch.randn(1, n_fft // 2 + 1, 40, dtype=torch.complex64)
    ref = ola(spec)
    for seed in range(3):
        st = StreamState()
        parts = [torch.from_numpy(ola.step(spec[0, :, s].T.numpy(), st))[None] if seed == 0 or s.stop - s.start == 1
                 else ola(spec[..., s], st) for s in _mixed(40, np.random.default_rng(seed), 4)]
        y = torch.cat(parts + [ola.flush(st)], -1)
        assert y.shape == ref.shape and (y - ref).abs().max() < 1e-5
        assert sum(p.shape[-1] for p in parts) == 40 * hop - ola.delay


@pytest.mark.parametrize("seed,mel_prior", [(0, False), (1, False), (2, True), (3, True)])
def test_vocoder_streaming_equals_offline(seed, mel_prior):
    torch.manual_seed(seed)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=48, n_layers=3, mel_prior=mel_prior)).eval()
    mel = torch.randn(1, 100, 77) - 5
    with torch.no_grad():
        ref = voc(mel)
        st = StreamState()
        rng = np.random.default_rng(seed)
        parts = [voc.stream(mel[..., s], st) for s in _chunks(77, rng, 9)]
        y = torch.cat(parts + [voc.flush(st)], -1)
    assert y.shape == ref.shape == (1, 77 * 512)
    assert (y - ref).abs().max() <= 1e-4
    assert voc.delay == 512


@pytest.mark.parametrize("seed", [0, 1])
def test_decoder_streaming_equals_offline(seed):
    torch.manual_seed(seed)
    vae = MelVAE(MelConfig(), VAEConfig(channels=48, dec_layers=4, enc_blocks=1)).eval()
    zf = torch.randn(1, 16, 90)
    with torch.no_grad():
        ref = vae.decode_frames(zf)
        st = StreamState()
        rng = np.random.default_rng(seed)
        y = torch.cat([vae.decode_frames(zf[..., s], st) for s in _chunks(90, rng, 11)], -1)
    assert (y - ref).abs().max() <= 1e-4
    assert vae.delay == 0


def test_synth_chunking_invariant_and_reports_delay(tiny_bundle_dir):
    bundle = load_bundle(tiny_bundle_dir)
    rng = np.random.default_rng(0)
    zf = rng.standard_normal((bundle.vae.latent_dim, 60)).astype(np.float32)
    whole = render_frames(bundle, zf, chunk=60, semitones=3.0)
    synth = StreamingSynth(bundle)
    parts = [synth.process(zf[:, s], 3.0) for s in _chunks(60, rng, 7)]
    assert sum(len(p) for p in parts) == 60 * 512 - synth.delay
    y = np.concatenate(parts + [synth.flush()])
    assert y.shape == whole.shape == (60 * 512,)
    assert np.abs(y - whole).max() <= 1e-4
    assert synth.delay == bundle.delay == 512


def _mixed(total, rng, hi):
    """Chunks where about half are single frames (the live engine's case)."""
    for s in _chunks(total, rng, hi):
        if rng.random() < 0.5:
            yield from (slice(i, i + 1) for i in range(s.start, s.stop))
        else:
            yield s


@pytest.mark.parametrize("depthwise,dilation,kernel", [(False, 1, 3), (False, 4, 3), (True, 1, 7), (False, 2, 5),
                                                     (False, 1, 1)])
def test_compiled_conv_frame_shares_state_with_chunks(depthwise, dilation, kernel):
    """The compiled single-frame convolutions read and move on the very history the chunked path keeps."""
    torch.manual_seed(kernel + dilation)
    conv = CausalConv1d(6, 6, kernel, dilation=dilation, groups=6 if depthwise else 1).eval()
    w, b = conv.weight.detach().numpy().reshape(6, -1), conv.bias.detach().numpy()
    x = torch.randn(1, 6, 50)

    def frame(v, st):
        hist = history_array(st.caches, conv)
        v = np.ascontiguousarray(v.numpy())
        return torch.from_numpy(_depthwise(hist, v, w, b) if depthwise else _conv(hist, v, w, b, kernel, dilation))

    with torch.no_grad():
        ref = conv(x)
        st = StreamState()
        out = [frame(x[0, :, s.start], st)[None, :, None] if s.stop - s.start == 1 else conv(x[..., s], st)
               for s in _mixed(50, np.random.default_rng(0), 6)]
    y = torch.cat(out, -1)
    assert y.shape == ref.shape and (y - ref).abs().max() < 1e-5


def _assert_streams_as_it_renders(voc, seed):
    """Random chunks and single frames (the live engine's calls) concatenate to the offline output."""
    mel = torch.randn(1, 100, 40) - 5
    with torch.no_grad():
        ref = voc(mel)
        st = StreamState()
        parts = [voc.step(mel[0, :, s.start], st)[None] if s.stop - s.start == 1 else voc.stream(mel[..., s], st)
                 for s in _mixed(40, np.random.default_rng(seed), 5)]
        y = torch.cat(parts + [voc.flush(st)], -1)
    assert y.shape == ref.shape
    assert (y - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize("seed,mel_prior,upsample,n_fft,iters", [(0, False, 2, 1024, 0), (1, True, 2, 1024, 0),
                                                                 (2, True, 1, 2048, 0), (3, True, 1, 2048, 3)])
def test_vocoder_single_frame_step_equals_offline(seed, mel_prior, upsample, n_fft, iters):
    torch.manual_seed(seed)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=48, n_layers=3, mel_prior=mel_prior, upsample=upsample,
                                             istft_n_fft=n_fft, prior_iters=iters)).eval()
    _assert_streams_as_it_renders(voc, seed)


@pytest.mark.parametrize("norm", [True, False])
def test_decoder_single_frame_step_equals_offline(norm):
    torch.manual_seed(int(norm))
    vae = MelVAE(MelConfig(), VAEConfig(channels=48, dec_layers=5, enc_blocks=1, dec_norm=norm)).eval()
    _assert_decodes_as_it_renders(vae, 60, 4, 8)


def test_decoder_with_a_linear_path_steps_as_it_renders():
    torch.manual_seed(3)
    vae = MelVAE(MelConfig(), VAEConfig(channels=48, dec_layers=3, enc_blocks=1, downsample=1, latent_dim=40,
                                        linear_path=True)).eval()
    with torch.no_grad():
        vae.set_linear_path(torch.randn(500, 100) * torch.linspace(2, 0.1, 100))
    _assert_decodes_as_it_renders(vae, 50, 9, 6)


def _assert_decodes_as_it_renders(vae, frames, seed, hi):
    """Random chunks and single frames of the decoder concatenate to the offline decoding."""
    zf = torch.randn(1, vae.latent_dim, frames)
    with torch.no_grad():
        ref = vae.decode_frames(zf)
        st = StreamState()
        y = torch.cat([vae.decode_step(zf[0, :, s.start], st)[None, :, None] if s.stop - s.start == 1
                       else vae.decode_frames(zf[..., s], st) for s in _mixed(frames, np.random.default_rng(seed), hi)],
                      -1)
    assert (y - ref).abs().max() <= 1e-4


def test_synth_frame_by_frame_equals_the_offline_render(tiny_bundle_dir):
    """The live engine feeds one frame per call (the single-frame path); a bounce feeds chunks."""
    bundle = load_bundle(tiny_bundle_dir)
    zf = np.random.default_rng(1).standard_normal((bundle.vae.latent_dim, 40)).astype(np.float32)
    for semitones in (0.0, -5.0):
        whole = render_frames(bundle, zf, chunk=64, semitones=semitones)
        synth = StreamingSynth(bundle)
        y = np.concatenate([synth.process(zf[:, i:i + 1], semitones) for i in range(40)] + [synth.flush()])
        assert y.shape == whole.shape
        assert np.abs(y - whole).max() <= 1e-4


def test_single_frame_plan_follows_weight_updates():
    """The step path binds weights once; loading new weights in place (or .train()/.eval()) must show."""
    torch.manual_seed(7)
    cfg = VocoderConfig(dim=32, n_layers=2)
    voc = Vocoder(MelConfig(), cfg).eval()
    other = Vocoder(MelConfig(), cfg).eval()
    mel = torch.randn(100) - 5
    with torch.no_grad():
        voc.step_spectra(mel, StreamState())            # builds the plan
        voc.load_state_dict(other.state_dict())
        assert torch.allclose(voc.step_spectra(mel, StreamState()), other.spectra(mel[None, :, None])[0], atol=1e-5)
        vae = MelVAE(MelConfig(), VAEConfig(channels=32, dec_layers=2, enc_blocks=1)).eval()
        z = torch.randn(16)
        vae.decode_step(z, StreamState())
        vae.train()
        with torch.no_grad():
            for p in vae.parameters():
                p.mul_(1.5)
        vae.eval()
        assert torch.allclose(vae.decode_step(z, StreamState()), vae.decode_frames(z[None, :, None])[0, :, 0], atol=1e-5)


@pytest.mark.parametrize("seed,upsample,gate", [(5, 2, -4.0), (6, 2, 0.5), (7, 1, 3.0)])
def test_vocoder_with_carried_phase_streams_as_it_renders(seed, upsample, gate):
    """The carried phase is a recurrence over frames: chunks and single frames must pick it up where
    the last call left it."""
    torch.manual_seed(seed)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=48, n_layers=2, upsample=upsample, istft_n_fft=2048 // upsample,
                                             prior_iters=2, phase_carry=True)).eval()
    with torch.no_grad():   # a gate that differs by bin and frame
        voc.carry.weight.normal_(0, 0.05)
        voc.carry.bias.fill_(gate)
    _assert_streams_as_it_renders(voc, seed)


def test_bfloat16_frame_weights_stream_as_they_render(tmp_path):
    """Saved checkpoints carry their live matrices rounded to bfloat16; the compiled frames then read the
    16-bit patterns and still equal the chunked path, which multiplies by the same numbers."""
    torch.manual_seed(11)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=48, n_layers=2, prior_iters=2, phase_carry=True)).eval()
    vae = MelVAE(MelConfig(), VAEConfig(channels=48, dec_layers=5, enc_blocks=1)).eval()
    assert all(w.dtype == np.float32 for w in voc._frame_weights() + vae._frame_weights())
    save_checkpoint(tmp_path / "voc", voc)
    save_checkpoint(tmp_path / "vae", vae)
    voc, _ = load_checkpoint(tmp_path / "voc", "vocoder")
    vae, _ = load_checkpoint(tmp_path / "vae", "vae")
    assert all(w.dtype == np.uint16 for w in voc._frame_weights() + vae._frame_weights())
    assert voc.norm_in.weight.dtype == torch.float32
    _assert_streams_as_it_renders(voc, 11)
    _assert_decodes_as_it_renders(vae, 40, 2, 6)
    # a weight that is not a bfloat16 number sends the whole model back to float32 matrices
    with torch.no_grad():
        vae.dec_out.weight[0, 0, 0] += 1e-4
    assert all(w.dtype == np.float32 for w in vae._frame_weights())


def test_bfloat16_matrix_vector_product_compiled_and_in_numpy():
    """A 1x1 compiled convolution on bfloat16 bit patterns gives ``b + w @ x`` for the rounded ``w``, as the
    numpy form of the same product does."""
    torch.manual_seed(3)
    w, x, b = torch.randn(7, 5), torch.randn(5), torch.randn(7)
    bits = w.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    want = (b + w.to(torch.bfloat16).float() @ x).numpy()
    got = _conv(np.zeros((5, 0), np.float32), x.numpy(), bits, b.numpy(), 1, 1)
    assert np.allclose(got, want, atol=1e-5) and np.allclose(_matvec(bits, x.numpy(), b.numpy()), want, atol=1e-5)
    assert not np.allclose(got, (b + w @ x).numpy(), atol=1e-5)   # the rounding is real
