import numpy as np
import pytest
import soundfile as sf
import torch

from sonolatent.audio.io import write_audio
from sonolatent.latent import get_curve, parse_score, to_mel_rate
from sonolatent.models import latents_to_frames, load_bundle
from sonolatent.models.synth import render_frames
from sonolatent.render import finish, load_source, render_latents, render_morph, render_score
from sonolatent.render.morph import morph_latents

SR = 44100


def sine(freq, seconds, amp=0.4):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t) * np.minimum(1, 20 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    return load_bundle(tiny_bundle_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("snd")
    sf.write(d / "a.wav", sine(440, 0.8), SR, subtype="PCM_16")
    rng = np.random.default_rng(3)
    burst = (rng.standard_normal(int(0.5 * 22050)) * np.exp(-np.arange(int(0.5 * 22050)) / 3000) * 0.5)
    sf.write(d / "b.flac", burst.astype(np.float32), 22050)  # other rate, other format
    return d


@pytest.fixture(scope="module")
def sources(bundle, files):
    return load_source(bundle, files / "a.wav"), load_source(bundle, files / "b.flac")


def test_sources_encoded_at_model_rate(bundle, sources):
    a, b = sources
    assert a.sample_rate == SR and len(a.audio) == int(0.8 * SR)
    assert a.frames == len(a.audio) // 512 + 1
    assert a.latents.shape == (bundle.vae.latent_dim, -(-a.frames // 4))
    assert abs(b.seconds - 0.5) < 1e-3


def test_morph_at_zero_is_rendering_a(bundle, sources):
    a, b = sources
    zf, blend = morph_latents(bundle, a, b, 0.0, align="first")
    ref = latents_to_frames(torch.from_numpy(a.latents)[None], a.frames, 4)[0].numpy()
    np.testing.assert_allclose(zf, ref, atol=1e-6)
    assert np.all(blend == 0)
    r = render_morph(bundle, a, b, 0.0, align="first", peak_db=None)
    np.testing.assert_allclose(r.audio, render_frames(bundle, ref), atol=1e-5)
    assert len(r.audio) == a.frames * 512
    # and at 1 it is B squeezed to A's length, for lerp and slerp alike
    for interp in ("lerp", "slerp"):
        z1, _ = morph_latents(bundle, a, b, 1.0, align="first", interp=interp)
        np.testing.assert_allclose(z1[:, 0], b.latents[:, 0], atol=1e-6)
        np.testing.assert_allclose(z1[:, -1], b.latents[:, -1], atol=1e-6)


def test_morph_curve_blend_and_duration(bundle, sources):
    a, b = sources
    zf, blend = morph_latents(bundle, a, b, get_curve("linear"), duration=1.0)
    n = round(SR / 512)
    assert zf.shape == (bundle.vae.latent_dim, n)
    np.testing.assert_allclose(blend, np.linspace(0, 1, n))
    za = to_mel_rate(a.latents, a.frames, 4)
    # stretched A's first frame at blend 0
    np.testing.assert_allclose(zf[:, 0], za[:, 0], atol=1e-5)
    zs, bs = morph_latents(bundle, a, b, get_curve("hold"), duration=1.0, interp="slerp", align="loop")
    assert bs[0] == 0 and bs[-1] == 1 and set(np.unique(bs)) == {0.0, 1.0}


def test_render_is_invariant_to_stream_chunking(bundle, sources):
    a, b = sources
    zf, _ = morph_latents(bundle, a, b, get_curve("ease"), duration=0.6, interp="slerp")
    outs = [render_latents(bundle, zf, chunk=c) for c in (1, 64, zf.shape[1])]
    assert len(outs[0]) == zf.shape[1] * 512
    assert float(np.abs(outs[0]).max()) > 1e-4
    assert float(np.abs(outs[0] - outs[1]).max()) <= 1e-4
    assert float(np.abs(outs[0] - outs[2]).max()) <= 1e-4


def test_finish_resamples_and_normalises_without_clipping(bundle, sources, tmp_path):
    a, b = sources
    r = render_morph(bundle, a, b, get_curve("linear"), duration=0.5, sr=22050, peak_db=-1.0)
    assert r.sample_rate == 22050
    assert abs(len(r.audio) - round(0.5 * SR / 512) * 512 / 2) <= 2
    np.testing.assert_allclose(np.abs(r.audio).max(), 10 ** (-1 / 20), rtol=1e-5)
    loud = finish(np.array([0.0, 3.0, -5.0], np.float32), SR, SR, -3.0)
    np.testing.assert_allclose(np.abs(loud).max(), 10 ** (-3 / 20), rtol=1e-6)
    for fmt, subtype in (("16", "PCM_16"), ("24", "PCM_24"), ("float", "FLOAT")):
        p = write_audio(tmp_path / f"x{fmt}.wav", r.audio, r.sample_rate, fmt)
        info = sf.info(p)
        assert info.subtype == subtype and info.samplerate == 22050
        back, _ = sf.read(p, dtype="float32")
        assert np.abs(back).max() <= 1.0 and np.abs(back - r.audio).max() < 1e-4


def score_text(extra_key=""):
    return f"""
duration = 0.7
[[source]]
name = "tone"
file = "a.wav"
[[source]]
name = "noise"
file = "b.flac"
[[key]]
time = 0.0
weights = {{tone = 1}}
{extra_key}
[[key]]
time = 0.7
weights = {{tone = 1, noise = 0}}
{extra_key}
"""


def test_score_render_matches_morph_path(bundle, files, sources):
    a, b = sources
    p = files / "one.toml"
    p.write_text(score_text())
    s = parse_score(p)
    r = render_score(bundle, s, peak_db=None)
    n = round(0.7 * SR / 512)
    assert r.latents.shape == (bundle.vae.latent_dim, n) and r.weights.shape == (2, n)
    np.testing.assert_allclose(r.weights[0], 1)
    # all weight on the tone = the tone stretched to 0.7 s = a morph at blend 0
    zm, _ = morph_latents(bundle, a, b, 0.0, duration=0.7)
    np.testing.assert_allclose(r.latents, zm, atol=1e-6)
    np.testing.assert_allclose(r.audio, render_latents(bundle, zm), atol=1e-5)
    # a constant gain of -6 dB scales the output by 10**(-6/20)
    p.write_text(score_text("gain = -6"))
    rg = render_score(bundle, parse_score(p), peak_db=None)
    np.testing.assert_allclose(rg.audio, r.audio * 10 ** (-6 / 20), atol=1e-6)
    # PCA offsets move the latents by sd * std along the component
    p.write_text(score_text("latent = {1 = 2.0}"))
    ro = render_score(bundle, parse_score(p), peak_db=None)
    vae = bundle.vae
    dc = (vae.to_pca(torch.from_numpy(ro.latents)) - vae.to_pca(torch.from_numpy(r.latents))).numpy()
    np.testing.assert_allclose(dc[1], 2.0 * vae.pca_std[1].item(), rtol=1e-4)
    np.testing.assert_allclose(np.delete(dc, 1, axis=0), 0, atol=1e-4)
    assert not np.allclose(ro.audio, r.audio)


def test_offline_loudness_tracking_moves_a_morph_toward_its_sources(bundle, sources):
    """The output stage offline: tracked, a fixed blend comes out nearer the blended sources' loudness
    (the tiny model decodes far quieter than its inputs), and within the tracking gain's range."""
    from sonolatent.engine.safety import TRACK_MAX_BOOST_DB, SafetyConfig

    a, b = sources
    raw = render_morph(bundle, a, b, 0.5, peak_db=None).audio.astype(np.float64)
    tracked = render_morph(bundle, a, b, 0.5, peak_db=None,
                           safety=SafetyConfig(limiter=False)).audio.astype(np.float64)
    assert len(tracked) == len(raw)                                    # offline: no delay
    hop = 512
    want = 10 * np.log10(0.5 * a.power(hop).mean() + 0.5 * b.power(hop).mean())
    level = {k: 10 * np.log10(np.mean(y[len(y) // 2:] ** 2)) for k, y in (("raw", raw), ("tracked", tracked))}
    assert abs(level["tracked"] - want) < abs(level["raw"] - want) - 3
    assert level["tracked"] - level["raw"] <= TRACK_MAX_BOOST_DB + 0.5
