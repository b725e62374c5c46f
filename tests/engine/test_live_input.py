"""The live input as a source of the engine core, and the offline transfer that drives the core the
daemon's way: streamed equals whole, the gate silences silence, the output follows the input's
onsets, the live source blends like a slot, dry/wet lines up."""

import numpy as np
import pytest

from sonolatent.engine.slots import SlotSound, timbre_of
from sonolatent.errors import SonolatentError
from sonolatent.models import load_bundle
from sonolatent.render.transfer import transfer

from ..livebundle import live_core, make_live_bundle, sample_cache

SR = 44100
HOP = 512


@pytest.fixture(scope="module")
def live_bundle(tmp_path_factory):
    return load_bundle(make_live_bundle(tmp_path_factory.mktemp("live")))


@pytest.fixture(scope="module")
def timbre(live_bundle, samples_dir):
    return sample_cache(live_bundle, samples_dir).load_timbre("saw")


def bursts(seconds=1.5, seed=0):
    """Tone bursts at irregular onsets with silence between (an onset pattern to follow)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    t = 0.05
    while t < seconds - 0.2:
        d = rng.uniform(0.06, 0.15)
        i, k = int(t * SR), int(d * SR)
        tt = np.arange(k) / SR
        x[i:i + k] = 0.4 * np.sin(2 * np.pi * rng.uniform(150, 600) * tt) * np.minimum(1, tt / 0.003)
        t += d + rng.uniform(0.05, 0.25)
    return x


def envelope(y, block=HOP):
    n = len(y) // block
    return np.sqrt(np.mean(np.square(y[:n * block].reshape(n, block), dtype=np.float64), 1))


def best_lag(a, b, max_lag):
    """The lag (in blocks) of ``b`` behind ``a`` where their envelopes correlate best, and that correlation."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        u, v = (a[:len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:len(b) + lag])
        n = min(len(u), len(v))
        c = np.corrcoef(u[:n], v[:n])[0, 1]
        if c > best[1]:
            best = (lag, c)
    return best


def test_transfer_streamed_in_odd_chunks_equals_whole(live_bundle, timbre):
    x = bursts(1.0)
    whole = transfer(live_bundle, x, timbre, 0.5)
    assert whole.shape == x.shape and np.abs(whole).max() > 1e-4
    for chunk in (97, 1013):
        assert np.array_equal(transfer(live_bundle, x, timbre, 0.5, chunk=chunk), whole)


def test_silence_in_gives_silence_out(live_bundle, timbre):
    rng = np.random.default_rng(0)
    for x in (np.zeros(SR // 2, np.float32), (1e-4 * rng.standard_normal(SR // 2)).astype(np.float32)):   # -80 dBFS
        for amount in (0.0, 1.0):
            y = transfer(live_bundle, x, timbre, amount, gate_db=-50.0)
            assert np.abs(y).max() == 0.0
    # the same noise floor passes with the gate open below it: the gate is what silenced it
    y = transfer(live_bundle, (1e-4 * rng.standard_normal(SR)).astype(np.float32), timbre, 0.0, gate_db=-100.0)
    assert np.abs(y).max() > 0.0


def test_output_sounds_where_the_input_does(live_bundle, timbre):
    """With random weights the model's envelope inside a burst means nothing; where it sounds must follow
    the input, lined up (the file is written lined up with the input): every burst sounds within a block
    of its own blocks, and wherever the input has been silent longer than the mel window's half, the
    gate's release and a block, the output is exactly silent. (The envelope itself is followed by the
    shipped model: tests/models/test_shipped_live.py.)"""
    from sonolatent.engine.live import GATE_RELEASE_S

    x = bursts(2.0, seed=3)
    y = transfer(live_bundle, x, timbre, 0.5)
    on_x, ey = envelope(x) > 0, envelope(y)
    tail = 1024 // HOP + int(np.ceil(GATE_RELEASE_S * SR / HOP)) + 1
    runs = np.flatnonzero(np.diff(np.concatenate([[0], on_x.astype(int), [0]])))
    starts, stops = runs[::2], runs[1::2]
    assert len(starts) >= 6
    for a, b in zip(starts, stops):
        assert ey[max(a - 1, 0):b + 1].max() > 0.05 * ey.max(), (a, b)
    quiet = np.ones(len(on_x), bool)
    for a, b in zip(starts, stops):
        quiet[max(a - 2, 0):b + tail] = False
    assert quiet.sum() > 40 and np.all(ey[quiet] == 0.0)


def test_live_path_delay_is_reported_and_holds(live_bundle, timbre):
    """Fed S samples (a whole number of hops), the core renders S/hop - 1 blocks' frames and the synth has
    put out S - live_delay samples, less the output stage's (the limiter's lookahead, held back): the delay
    the daemon reports is the path's plus the stage's."""
    core = live_core(live_bundle, SR)
    core.apply([("/sono/input/slot", (0,)), ("/sono/play", (1.0,))])
    x = bursts(0.5)
    S = 40 * HOP
    assert core.feed_input(x[:S]) == S // HOP - 1
    out = sum(len(core.render_block()) for _ in range(S // HOP - 1))
    assert core.live_delay == core.live.delay + core.synth.delay == 512 + core.synth.delay
    assert core.output.delay > 0 and out == S - core.live_delay - core.output.delay
    assert core.live.late == 0
    core.render_block()                    # no frame ready: a late block, silence
    assert core.live.late == 1


def test_live_source_blends_like_a_slot(live_bundle, samples_dir):
    core = live_core(live_bundle, SR)
    saw = sample_cache(live_bundle, samples_dir).load("saw")
    core.apply([("/sono/slot/1/load", ("saw",)), ("/sono/input/slot", (0,)), ("/sono/smooth", (0.0,)),
                ("/sono/weights", (0.25, 0.75) + (0.0,) * 6), ("/sono/input/gate", (-120.0,)), ("/sono/play", (1.0,))],
               {1: saw})
    core.feed_input(bursts(0.5))
    for _ in range(5):
        core.render_block()
    live_col = core.live_column
    assert not np.allclose(live_col, core.live.silence)
    want = 0.25 * live_col + 0.75 * saw.column(core.playhead.position)
    assert np.allclose(core.latent(), want, atol=1e-9)
    # morph between the live slot and the sample, PCA scale 0 on coordinate 0: the live column moves with them
    core.apply([("/sono/morph/pair", (0, 1)), ("/sono/morph", (0.0,)), ("/sono/latent/0/scale", (0.0,)),
                ("/sono/latent/0", (1.5,))])
    core.render_block()
    c = core.pca_comp @ (core.latent() - core.pca_mean)
    c_live = core.pca_comp @ (core.live_column - core.pca_mean)
    assert c[0] == pytest.approx(1.5 * core.pca_std[0])
    assert np.allclose(c[1:], c_live[1:])


def test_dry_lines_up_with_the_input_and_gain_moves_the_meter(live_bundle, timbre):
    from sonolatent.engine.safety import SafetyConfig

    x = bursts(1.0, seed=5)
    core = live_core(live_bundle, SR, safety=SafetyConfig(track=False))   # the tracking gain would move it
    core.apply([("/sono/input/slot", (0,)), ("/sono/input/wet", (0.0,)), ("/sono/gain", (1.0,)),
                ("/sono/attack", (0.001,)), ("/sono/smooth", (0.0,)), ("/sono/play", (1.0,))])
    core.feed_input(x)
    core.live.end()
    y = np.concatenate([core.render_block() for _ in range(core.live.ready() + 3)])[:len(x)]
    assert np.allclose(y[HOP * 4:], x[HOP * 4:len(y)], atol=1e-6)     # wet 0: the input itself, sample for sample
    levels = {}
    for gain in (0.0, 6.0):
        core = live_core(live_bundle, SR)
        core.apply([("/sono/input/slot", (0,)), ("/sono/input/gain", (gain,)), ("/sono/play", (1.0,))])
        core.feed_input(np.full(SR // 4, 0.1, np.float32))
        for _ in range(10):
            core.render_block()
        levels[gain] = core.values["/sono/input/level"][0]
    assert levels[0.0] == pytest.approx(-20.0, abs=0.01)
    assert levels[6.0] - levels[0.0] == pytest.approx(6.0, abs=0.01)


def test_timbre_is_the_energy_weighted_mean_latent():
    lat = np.array([[0.0, 10.0, 20.0], [1.0, 1.0, 1.0]])
    s = SlotSound("x", lat, 3, "sha", 1)
    audio = np.zeros(3 * HOP, np.float32)
    audio[HOP - HOP // 2:HOP + HOP // 2] = 1.0           # only frame 1 sounds
    t = timbre_of(s, audio, HOP)
    assert t.latents.shape == (2, 1) and np.allclose(t.latents[:, 0], [10.0, 1.0])
    assert np.allclose(t.column(0.3), [10.0, 1.0])


def test_a_core_without_live_input_refuses_nothing_and_plays_no_input(live_bundle):
    core = live_core(live_bundle, SR, live=False)
    assert core.live is None and core.live_slot == -1 and core.feed_input(np.ones(1000)) == 0
    core.apply([("/sono/input/slot", (0,))])    # accepted, and nothing to play from
    assert core.live_slot == -1


def test_bundle_without_encoder_cannot_take_live_input(bundle):
    with pytest.raises(SonolatentError, match="no live encoder"):
        live_core(bundle, SR)     # (LiveEncoder refuses it, before the core is built)


def test_live_source_plays_in_every_voice_and_dry_reaches_both_channels(live_bundle):
    """With voices and stereo (main's voices merged in): a note's voice blends the live column like the
    /sono/play voice does and, with the live source bound, sounds on past the rate-1 sound length (no
    release at the end of its playhead); the dry input reaches both channels sample for sample."""
    from sonolatent.engine.core import EngineCore
    from sonolatent.models.encoder import LiveEncoder
    from sonolatent.models.synth import StreamingSynth

    from sonolatent.engine.safety import SafetyConfig

    def core():
        return EngineCore(StreamingSynth(live_bundle), SR, voices=4, channels=2, live_input=LiveEncoder(live_bundle),
                          safety=SafetyConfig(track=False))

    x = bursts(1.5, seed=7)
    c = core()
    c.apply([("/sono/input/slot", (0,)), ("/sono/input/gate", (-120.0,)), ("/sono/smooth", (0.0,)),
             ("/sono/loop/mode", (0,)), ("/sono/release", (0.05,)), ("/sono/note/on", (60.0, 1.0))])
    c.feed_input(x)
    blocks = int(1.2 * SR / HOP)                     # past the 1 s a one-shot playhead takes with no sound
    y = np.concatenate([c.render_block() for _ in range(blocks)])
    assert y.shape[1] == 2 and np.abs(y).max() > 1e-4
    assert c.bank.n_sounding() == 1 and not c.bank.voices[0].sounding
    assert np.abs(y[-HOP:]).max() > 0.0            # the note still sounds
    assert np.allclose(c.latent(c.bank.voices[1].playhead.position), c.latent())   # the live column, same as voice 0's
    # wet 0, the /sono/play voice: the input itself on both channels
    c = core()
    c.apply([("/sono/input/slot", (0,)), ("/sono/input/wet", (0.0,)), ("/sono/gain", (1.0,)),
             ("/sono/attack", (0.001,)), ("/sono/smooth", (0.0,)), ("/sono/play", (1.0,))])
    c.feed_input(x[:SR // 2])
    c.live.end()
    y = np.concatenate([c.render_block() for _ in range(c.live.ready() + 3)])[:SR // 2]
    assert np.allclose(y[HOP * 4:, 0], x[HOP * 4:len(y)], atol=1e-6)
    assert np.array_equal(y[:, 0], y[:, 1])
