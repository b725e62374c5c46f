"""The output stage (loudness tracking + limiter) and the promise it keeps: whatever the controls, the
engine's output stays below the limiter's ceiling.

The sweep renders through :class:`EngineCore` (what freewheel, the live engine and ``bounce`` run)
with the shipped checkpoint and the bundled samples: every pair of samples and every latent
coordinate, at the extremes of the controls' ranges.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from sonolatent.engine.core import EngineCore
from sonolatent.engine.safety import CEILING_DB, FREE_LEVEL_DB, TRACK_MAX_BOOST_DB, OutputStage, SafetyConfig
from sonolatent.engine.slots import SampleCache
from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle
from sonolatent.models.synth import StreamingSynth

SAMPLES = Path(__file__).resolve().parents[2] / "patches" / "samples"
CEILING = np.float32(10 ** (CEILING_DB / 20))


def _stream(stage, x, sizes, reference=None):
    """Feed ``x`` through ``stage`` in blocks of the given sizes (cycled); the concatenated output."""
    out, i = [], 0
    for n in itertools.cycle(sizes):
        if i >= len(x):
            break
        out.append(stage.process(x[i:i + n].copy(), reference))
        i += n
    return np.concatenate(out)


# ---- the stage on its own ------------------------------------------------------------------------
def test_limiter_keeps_every_sample_under_the_ceiling_with_one_gain_for_all_channels():
    rng = np.random.default_rng(0)
    n = 48000
    left = rng.standard_normal(n) * np.linspace(0.01, 6.0, n)
    x = np.stack([left, 0.5 * left], axis=1).astype(np.float32)    # right = half the left
    stage = OutputStage(48000, SafetyConfig(track=False))
    y = _stream(stage, x, [557, 1, 300, 558])
    assert np.abs(y).max() <= CEILING
    assert np.abs(y).max() > 0.95 * CEILING                       # it limits, it doesn't mute
    assert stage.reduction_db > 6.0                                 # and says by how much
    # one gain for both channels: the right stays half the left, sample by sample
    assert np.allclose(y[:, 1], 0.5 * y[:, 0], atol=2e-7)
    # the same samples whatever the block sizes
    assert np.array_equal(y, _stream(OutputStage(48000, SafetyConfig(track=False)), x, [4096]))


@pytest.mark.parametrize("rate", [22050, 48000])
def test_limiter_delay_is_its_lookahead_and_quiet_audio_passes_untouched(rate):
    stage = OutputStage(rate, SafetyConfig(track=False))
    assert stage.delay == round(0.002 * rate)
    x = (0.5 * np.sin(np.arange(rate) * 0.05)).astype(np.float32)
    x[1000] = 0.9                                                  # an impulse (still under the ceiling)
    y = _stream(stage, x, [512])
    # the first `delay` samples are held back, after that the stream is the input, sample for sample
    assert len(y) == len(x) - stage.delay
    assert np.array_equal(y, x[:len(y)])
    tail = stage.flush().ravel()
    assert np.array_equal(np.concatenate([y, tail]), x)
    # switched off: no delay, nothing touched, even far above full scale
    off = OutputStage(rate, SafetyConfig(limiter=False, track=False))
    loud = 8 * x
    assert off.delay == 0 and np.array_equal(_stream(off, loud, [512]), loud)


def test_loudness_tracking_moves_toward_the_reference_and_holds_in_silence():
    rate = 44100
    rng = np.random.default_rng(1)
    x = (0.5 * rng.standard_normal(3 * rate)).astype(np.float32)  # -6 dBFS mean square
    ref = 10 ** (-26 / 10)                                          # asks for -26 dB
    stage = OutputStage(rate, SafetyConfig(limiter=False))
    y = _stream(stage, x, [512], reference=ref)
    last = y[-rate // 2:]
    assert 10 * np.log10(np.mean(last ** 2)) == pytest.approx(-26, abs=1.0)
    g = stage.gain_db
    # silence (or no reference): the gain holds where it was instead of running off
    _stream(stage, np.zeros(rate, np.float32), [512], reference=ref)
    _stream(stage, x[:rate], [512], reference=0.0)
    assert stage.gain_db == g
    # boosts are bounded: a quiet voice far below its reference gets at most +18 dB
    quiet = OutputStage(rate, SafetyConfig(limiter=False))
    _stream(quiet, (x * 1e-2).astype(np.float32), [512], reference=1.0)
    assert quiet.gain_db == pytest.approx(TRACK_MAX_BOOST_DB, abs=0.5)


# ---- the engine, swept over every sample pair and latent coordinate ---------------------------------
@pytest.fixture(scope="module")
def shipped():
    synth = StreamingSynth(load_bundle(DEFAULT_CHECKPOINT))   # one synth, reset by every EngineCore made on it
    cache = SampleCache(synth, SAMPLES)
    names = sorted(p.stem for p in SAMPLES.glob("*.wav"))
    return synth, {n: cache.load(n) for n in names}


def _conditions(D: int, n_groups: int, per_group: int):
    """Latent settings (coordinate, offset in sd) dealt out over the groups: every coordinate at
    +4 and -4 (and then at -2, +2), in turn."""
    values = (4.0, -4.0, -2.0, 2.0)
    jobs = [(j % D, values[(j // D) % len(values)]) for j in range(n_groups * per_group)]
    return [jobs[g * per_group:(g + 1) * per_group] for g in range(n_groups)]


def _sweep(synth, sounds, safety, blocks_per=4):
    """Peak of the engine's output over the sweep, and what was covered."""
    names = sorted(sounds)
    pairs = list(itertools.combinations(names, 2))
    D = synth.latent_dim
    per = -(-2 * D // (len(pairs) + 1)) + 1
    groups = _conditions(D, len(pairs) + 1, per)        # the last group plays in free mode
    covered, peak = set(), 0.0
    for g, jobs in enumerate(groups):
        core = EngineCore(synth, 44100, safety=safety)
        if g < len(pairs):
            a, b = pairs[g]
            core.apply([("/sono/slot/0/load", (a,)), ("/sono/slot/1/load", (b,))], {0: sounds[a], 1: sounds[b]})
            core.apply([("/sono/morph", (0.5,))])
        else:
            core.apply([("/sono/free", (1,))])
        core.apply([("/sono/gain", (2.0,)), ("/sono/smooth", (0.0,)), ("/sono/attack", (0.001,)),
                    ("/sono/play", (1.0,))])
        for k, v in jobs:
            offsets = [0.0] * D
            offsets[k] = v
            core.apply([("/sono/latent", tuple(offsets))])    # a jump: the hardest case for the limiter
            for _ in range(blocks_per):
                peak = max(peak, float(np.abs(core.render_block()).max(initial=0.0)))
            covered.add((k, v))
    return peak, covered, len(pairs)


def test_no_pair_and_no_latent_offset_drives_the_output_over_the_ceiling(shipped):
    synth, sounds = shipped
    assert len(sounds) >= 7
    peak, covered, n_pairs = _sweep(synth, sounds, SafetyConfig())
    D = synth.latent_dim
    assert n_pairs == len(sounds) * (len(sounds) - 1) // 2
    assert {(k, v) for k in range(D) for v in (4.0, -4.0)} <= covered
    assert peak <= 1.0                   # never above 0 dBFS
    assert peak <= CEILING               # and never above the limiter's -0.3 dBFS


def test_free_mode_is_brought_to_the_level_of_the_sounds(shipped):
    synth, _ = shipped
    levels = {}
    for track in (False, True):
        core = EngineCore(synth, 44100, safety=SafetyConfig(limiter=False, track=track))
        core.apply([("/sono/free", (1,)), ("/sono/gain", (1.0,)), ("/sono/play", (1.0,))])
        y = np.concatenate([core.render_block() for _ in range(200)])[35000:]
        levels[track] = 10 * np.log10(np.mean(y.astype(np.float64) ** 2))
    assert abs(levels[True] - FREE_LEVEL_DB) < 2.0
    assert abs(levels[True] - FREE_LEVEL_DB) < abs(levels[False] - FREE_LEVEL_DB)


def test_the_stage_allocates_no_block_buffer():
    """Per block the stage makes no temporary the size of a block (it works in place, in compiled loops
    over state allocated once): tracemalloc's peak over 500 stereo blocks stays far below one block."""
    import gc
    import tracemalloc

    stage = OutputStage(48000)
    x = np.zeros((557, 2), np.float32)
    rng = np.random.default_rng(2)
    src = (2 * rng.standard_normal((557, 2))).astype(np.float32)
    for _ in range(20):                     # first calls: the stage's one-off state
        x[:] = src
        stage.process(x, 0.01)
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            x[:] = src
            stage.process(x, 0.01)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert np.abs(x).max() <= CEILING
    assert now - base <= 512 and peak - base < x.nbytes // 4


def test_status_reports_the_tracking_gain(shipped):
    from sonolatent.engine.runtime import Engine

    synth, _ = shipped
    e = Engine(synth, samples_dir=SAMPLES, mode="freewheel", duration=0.4)
    e.preload({0: "piano_c4", 1: "strings_c4"}, [("/sono/morph", (0.5,)), ("/sono/latent/0", (-3.0,)),
                                                  ("/sono/gain", (0.8,)), ("/sono/play", (1.0,))])
    e.start()
    assert e.wait(60)
    e.close()
    st = e.status()
    assert st["loudness_gain_db"] < -6.0          # the loud latent is being turned down
    assert st["limiter_reduction_db"] == round(e.core.output.reduction_db, 2)
