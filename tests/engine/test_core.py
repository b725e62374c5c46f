"""EngineCore: blends, PCA offsets and scales, free mode, glides, smoothing, envelopes, the decode path."""

import numpy as np
import pytest
import torch

from sonolatent.engine.core import EngineCore
from sonolatent.engine.safety import SafetyConfig
from sonolatent.engine.slots import SampleCache
from sonolatent.models.synth import StreamingSynth, render_frames


#: The voice as decoded, without the output stage (tested in test_safety.py): these tests compare
#: the engine's samples with the decode path's and with each other.
RAW = SafetyConfig(limiter=False, track=False)


@pytest.fixture
def core(bundle):
    return EngineCore(StreamingSynth(bundle), safety=RAW)


@pytest.fixture(scope="module")
def sounds(bundle, samples_dir):
    cache = SampleCache(StreamingSynth(bundle), samples_dir)
    return {k: cache.load(n) for k, n in enumerate(["sine", "saw", "noise", "chirp"])}


def load(core, sounds, ks=(0, 1, 2, 3)):
    core.apply([(f"/sono/slot/{k}/load", (sounds[k].name,)) for k in ks], {k: sounds[k] for k in ks})


def settle(core, n=1):
    for _ in range(n):
        core.render_block()


def test_morph_xy_weights_last_touched_decides(core, sounds):
    load(core, sounds)
    core.apply([("/sono/smooth", (0.0,)), ("/sono/morph", (0.25,))])
    settle(core)
    assert core.weights.value[:4] == pytest.approx([0.75, 0.25, 0, 0])
    core.apply([("/sono/xy", (0.5, 0.25))])
    settle(core)
    assert core.weights.value[:4] == pytest.approx([0.375, 0.375, 0.125, 0.125])
    core.apply([("/sono/weights", (0.2, 0, 0, 0.6, 0, 0, 0, 0))])
    settle(core)
    assert core.weights.value[:4] == pytest.approx([0.25, 0, 0, 0.75])
    core.apply([("/sono/morph/pair", (2, 3))])   # touching the pair makes the morph decide again
    settle(core)
    assert core.weights.value[:4] == pytest.approx([0, 0, 0.75, 0.25])
    core.apply([("/sono/xy/y", (1.0,))])
    settle(core)
    assert core.values["/sono/xy"] == (0.5, 1.0)
    assert core.weights.value[:4] == pytest.approx([0, 0, 0.5, 0.5])


def test_blend_is_the_weighted_sum_of_slot_columns(core, sounds):
    load(core, sounds)
    core.apply([("/sono/smooth", (0.0,)), ("/sono/morph", (0.3,)), ("/sono/position", (0.4,))])
    settle(core)
    p = core.playhead.position
    want = 0.7 * sounds[0].column(p) + 0.3 * sounds[1].column(p)
    assert core.latent() == pytest.approx(want, abs=1e-6)


def test_an_empty_slots_weight_goes_to_the_latent_mean(core, sounds):
    load(core, sounds, ks=(0,))
    core.apply([("/sono/smooth", (0.0,)), ("/sono/morph", (0.5,))])
    settle(core)
    p = core.playhead.position
    want = 0.5 * sounds[0].column(p) + 0.5 * core.pca_mean
    assert core.latent() == pytest.approx(want, abs=1e-6)


def test_pca_offsets_in_sd_units_and_scales(bundle, core, sounds):
    vae = bundle.vae
    D = core.D
    load(core, sounds, ks=(0,))
    core.apply([("/sono/smooth", (0.0,)), ("/sono/latent/1", (2.0,)), ("/sono/latent/0/scale", (0.0,))])
    settle(core)
    assert core.values["/sono/latent"][:2] == (0.0, 2.0)
    z0 = torch.as_tensor(sounds[0].column(core.playhead.position))[:, None]
    c = vae.to_pca(z0.float()).double()[:, 0]
    c[0] = 0.0
    c[1] += 2.0 * vae.pca_std[1].double()
    want = vae.from_pca(c[:, None].float())[:, 0].double().numpy()
    assert core.latent() == pytest.approx(want, abs=1e-4)
    # free mode: the offsets alone
    offs = np.linspace(-1, 1, D)
    core.apply([("/sono/free", (1,)), ("/sono/latent", tuple(offs))])
    settle(core)
    want = vae.from_pca(torch.as_tensor(offs * vae.pca_std.double().numpy())[:, None].float())[:, 0].numpy()
    assert core.latent() == pytest.approx(want, abs=1e-4)


def test_discrete_jumps_glide_unless_smoothing_is_off(core, sounds):
    load(core, sounds, ks=(0, 1))
    core.apply([("/sono/smooth", (0.05,)), ("/sono/rate", (0.0,)), ("/sono/position", (0.1,))])
    settle(core, 20)
    z_before = core.latent() + core.glide
    core.apply([("/sono/position", (0.9,))])
    assert core.latent() + core.glide == pytest.approx(z_before, abs=1e-9)   # continuous at the jump
    settle(core, 100)
    assert np.abs(core.glide).max() == 0.0                                    # glided home
    core.apply([("/sono/smooth", (0.0,)), ("/sono/position", (0.1,))])
    settle(core)
    assert np.abs(core.glide).max() == 0.0


def test_decode_path_is_streaming_synth(bundle, core):
    """Free mode with fixed latents, full envelope: exactly render_frames of the same latents."""
    core.apply([("/sono/free", (1,)), ("/sono/latent", tuple(np.linspace(-1, 1, core.D))),
                ("/sono/smooth", (0.0,)), ("/sono/attack", (0.001,)), ("/sono/gain", (1.0,)),
                ("/sono/play", (1.0,))])
    out = np.concatenate([core.render_block() for _ in range(20)])
    z = core.latent().astype(np.float32)
    ref = render_frames(bundle, np.repeat(z[:, None], 20, 1), chunk=1)
    n = len(out)
    assert n == 20 * 512 - core.synth.delay
    assert np.allclose(out[200:], ref[200:n], atol=1e-6)     # after the 1 ms attack
    assert np.abs(out[:44]).max() <= np.abs(ref[:44]).max()


def _gain_run(bundle, sounds, change_block, changes, blocks=60):
    c = EngineCore(StreamingSynth(bundle), safety=RAW)
    c.apply([("/sono/slot/0/load", ("sine",)), ("/sono/attack", (0.001,)), ("/sono/gain", (0.2,)),
             ("/sono/play", (1.0,))], {0: sounds[0]})
    parts = []
    for b in range(blocks):
        if b == change_block:
            c.apply(changes)
        parts.append(c.render_block())
    return c, np.concatenate(parts)


def test_gain_change_is_applied_at_the_block_boundary_and_smoothed(bundle, sounds):
    b = 30
    c, y = _gain_run(bundle, sounds, b, [("/sono/gain", (1.0,))])
    _, ref = _gain_run(bundle, sounds, b, [])
    start = int(c.output_index_of_block(b))
    ok = np.abs(ref) > 1e-3
    ratio = np.where(ok, y / np.where(ok, ref, 1), np.nan) * 0.2
    before, after = ratio[:start][ok[:start]], ratio[start:][ok[start:]]
    assert np.allclose(before[len(before) // 2:], 0.2, atol=1e-5)     # nothing moves before the block
    assert after[0] == pytest.approx(0.2, abs=2e-3)                    # the ramp starts at the boundary
    assert np.all(np.diff(after) >= -1e-5)                              # rises monotonically
    assert np.nanmax(np.abs(np.diff(ratio[start:]))) < 0.01            # in small steps, not one jump
    assert after[-1] == pytest.approx(1.0, abs=1e-3)                   # and arrives
    # no step in the output larger than the steady signal's own sample-to-sample changes at full gain
    steady = np.abs(np.diff(y[-4000:])).max()
    assert np.abs(np.diff(y[start - 2000:start + 4000])).max() <= steady * 1.01


def test_gain_change_without_smoothing_still_ramps_within_one_block(bundle, sounds):
    c, y = _gain_run(bundle, sounds, 30, [("/sono/smooth", (0.0,)), ("/sono/gain", (1.0,))])
    _, ref = _gain_run(bundle, sounds, 30, [("/sono/smooth", (0.0,))])
    start = int(c.output_index_of_block(30))
    g = np.divide(y, ref, out=np.full_like(y, np.nan), where=np.abs(ref) > 1e-3)
    assert np.nanmax(np.abs(g[start + 512:start + 2000] - 5.0)) < 1e-3   # full gain after one block


def test_play_stop_envelopes(bundle, sounds):
    c = EngineCore(StreamingSynth(bundle))
    c.apply([("/sono/slot/0/load", ("sine",)), ("/sono/attack", (0.05,)), ("/sono/release", (0.1,)),
             ("/sono/play", (0.5,))], {0: sounds[0]})
    assert c.values["/sono/playing"] == (0,) or c.sounding
    for _ in range(10):
        c.render_block()
    assert c.env == pytest.approx(0.5) and c.values["/sono/playing"] == (1,)
    c.apply([("/sono/stop", ())])
    tail = np.concatenate([c.render_block() for _ in range(12)])
    assert c.env == 0.0 and not c.sounding and c.values["/sono/playing"] == (0,)
    assert np.all(tail[-512:] == 0.0)


def test_loop_off_releases_at_the_end(bundle, sounds):
    c = EngineCore(StreamingSynth(bundle))
    c.apply([("/sono/slot/0/load", ("sine",)), ("/sono/loop/mode", (0,)), ("/sono/rate", (4.0,)),
             ("/sono/smooth", (0.0,)), ("/sono/release", (0.01,)), ("/sono/play", (1.0,))], {0: sounds[0]})
    for _ in range(40):
        c.render_block()
    assert c.playhead.ended and c.values["/sono/position"] == (1.0,) and not c.sounding


def test_quit_fades_out_and_finishes(bundle, sounds):
    c = EngineCore(StreamingSynth(bundle), output_rate=48000)
    c.apply([("/sono/free", (1,)), ("/sono/attack", (0.001,)), ("/sono/play", (1.0,))])
    for _ in range(10):
        c.render_block()
    c.apply([("/sono/quit", ())])
    n = 0
    while not c.finished and n < 100:
        last = c.render_block()
        n += 1
    assert c.finished and 4 <= n <= 6
    assert np.abs(last[-20:]).max() < 1e-4
