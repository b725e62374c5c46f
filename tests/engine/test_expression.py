"""Per-note expression (MPE): /sono/note/bend, /sono/note/pressure and /sono/note/timbre move one voice, are
smoothed like every control, reset with each note and replay bit for bit. EngineCore block by block (a tiny
model), the engine in freewheel."""

import time

import numpy as np
import pytest

from sonolatent.engine.bounce import bounce, read_log
from sonolatent.engine.core import EngineCore
from sonolatent.engine.runtime import Engine
from sonolatent.engine.safety import SafetyConfig
from sonolatent.engine.voices import EXPRESSION_RESET
from sonolatent.models.synth import StreamingSynth
from sonolatent.params.values import coerce

from .test_voices import SETUP, run, sine  # noqa: F401  (sine: the fixture)

RAW = SafetyConfig(limiter=False, track=False)   # voices add up exactly without the output stage


def on(p, v=1.0):
    return ("/sono/note/on", (float(p), v))


def test_a_bend_with_its_note_on_is_the_note_at_the_bent_pitch_and_moves_only_that_voice(bundle, sine):
    """Smoothed as usual (30 ms), yet a bend sent with its note-on is there from the note's first sample."""
    smooth = ("/sono/smooth", (0.03,))
    play = lambda *changes: run(bundle, sine, {0: [smooth], 2: list(changes)}, 24, safety=RAW)[1]
    bent = play(on(60), ("/sono/note/bend", (60.0, 2.0)), on(67))
    d, g, c = play(on(62)), play(on(67)), play(on(60))
    assert np.abs(d - c).max() > 1e-3
    assert np.abs(bent - (d + g)).max() <= 1e-6           # 60 bent +2 plays as 62 from its first sample; 67 as ever
    # a bend of a pitch nobody plays does nothing
    assert np.array_equal(play(on(60), ("/sono/note/bend", (61.0, 5.0))), c)


def test_a_later_bend_glides_with_the_smoothing_and_the_next_note_starts_unbent(bundle, sine):
    c = EngineCore(StreamingSynth(bundle), voices=4)
    c.apply(SETUP + [("/sono/smooth", (0.03,))], {0: sine})
    c.apply([on(60), on(64)])
    for _ in range(4):
        c.render_block()
    v60 = next(v for v in c.bank.voices if v.note == 60.0)
    v64 = next(v for v in c.bank.voices if v.note == 64.0)
    c.apply([("/sono/note/bend", (60.0, -3.0)), ("/sono/note/pressure", (60.0, 0.8)), ("/sono/note/timbre", (60.0, 0.1))])
    seen = []
    for _ in range(30):
        c.render_block()
        seen.append(c.bank.expression_of(v60)[0])
    a = c.smooth_coef
    assert seen[0] == pytest.approx(-3.0 * (1 - a)) and seen[1] == pytest.approx(-3.0 * (1 - a * a))   # one-pole
    assert seen[-1] == pytest.approx(-3.0, abs=1e-3)
    assert list(c.bank.expression_of(v64)) == list(EXPRESSION_RESET)   # the other voice: untouched
    # its latent moved along the configured coordinates: pressure * depth (coordinate 0), (2 timbre - 1) * depth (1)
    _, p, t = c.bank.expression_of(v60)
    want = p * 2.0 * c.pca_std[0] * c.pca_comp[0] + (2 * t - 1) * 1.5 * c.pca_std[1] * c.pca_comp[1]
    assert np.allclose(c.voice_offset(v60), want) and not c.voice_offset(v64).any()
    # a new depth or coordinate glides (no jump): the voice's glide takes the step
    before = c.voice_offset(v60)
    c.apply([("/sono/note/pressure/coord", (3,)), ("/sono/note/timbre/depth", (-2.0,))])
    assert np.allclose(v60.glide, before - c.voice_offset(v60)) and np.abs(v60.glide).max() > 0
    # released and played again on fresh streams: back at rest at once
    c.apply([("/sono/note/off", (60.0,))])
    for _ in range(20):
        c.render_block()
    assert not v60.sounding
    c.apply([on(60)])
    v = next(v for v in c.bank.voices if v.note == 60.0 and v.sounding)
    assert list(c.bank.expression_of(v)) == list(EXPRESSION_RESET)


def test_a_legato_restart_glides_back_and_a_stolen_voice_keeps_its_bend_while_it_fades(bundle, sine):
    c = EngineCore(StreamingSynth(bundle), voices=1)
    c.apply(SETUP + [("/sono/smooth", (0.03,))], {0: sine})
    c.apply([on(60), ("/sono/note/bend", (60.0, 5.0))])          # in the note-on's batch: at once
    v = c.bank.voices[0]
    assert c.bank.expression_of(v)[0] == 5.0
    c.render_block()
    c.apply([on(60, 0.5)])                                       # the same pitch again: legato, glides to rest
    assert c.bank.expression.target[0, 0] == 0.0 and c.bank.expression_of(v)[0] == 5.0
    c.render_block()
    assert 0.0 < c.bank.expression_of(v)[0] < 5.0
    c.apply([("/sono/note/bend", (60.0, 7.0)), on(62)])          # one voice: 62 steals it
    g = c.bank.ghosts[0]
    assert g.note == 60.0
    assert 0.0 < g.expression[0] < 7.0                           # what it sounded, frozen while it fades
    assert list(c.bank.expression_of(v)) == list(EXPRESSION_RESET)


def test_expression_values_are_checked_where_they_enter(bundle):
    ns = EngineCore(StreamingSynth(bundle), voices=2).namespace
    assert coerce(ns["/sono/note/bend"], [60, 200]) == (60.0, 96.0)
    assert coerce(ns["/sono/note/pressure"], [60.0, -1.0]) == (60.0, 0.0)
    assert coerce(ns["/sono/note/timbre/coord"], [999]) == (ns["/sono/note/timbre/coord"].max[0],)
    with pytest.raises(Exception, match="finite"):
        coerce(ns["/sono/note/timbre"], [60.0, float("nan")])


def test_an_mpe_bounce_equals_the_live_take(bundle, samples_dir, tmp_path):
    import soundfile as sf

    rec, log = tmp_path / "mpe.wav", tmp_path / "mpe.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", record=rec, log_osc=log,
               duration=1.2, device_rate=48000, voices=3)
    e.preload({0: "sine"}, SETUP[1:] + [("/sono/smooth", (0.02,)), on(60), on(64)])
    t = time.time()
    e.submit([on(67), ("/sono/note/bend", (67.0, 1.5)), ("/sono/note/pressure", (67.0, 0.3))], t + 0.1, None)
    for k in range(12):   # an MPE stream: a bend and pressure curve on one note, timbre on another
        e.submit([("/sono/note/bend", (60.0, -0.25 * k)), ("/sono/note/pressure", (60.0, k / 12))], t + 0.2 + 0.03 * k, None)
        e.submit([("/sono/note/timbre", (64.0, 1.0 - k / 12))], t + 0.21 + 0.03 * k, None)
    e.submit([("/sono/note/off", (60.0,)), ("/sono/note/pressure/depth", (-1.0,))], t + 0.8, None)
    e.start()
    assert e.wait(60)
    e.close()
    live, sr = sf.read(rec, dtype="float32")
    header, events, _ = read_log(log)
    logged = [a for ev in events for a, _ in ev["changes"]]
    assert logged.count("/sono/note/bend") == 13 and logged.count("/sono/note/timbre") == 12
    replay = bounce(log, StreamingSynth(bundle))
    assert np.abs(live).max() > 1e-3 and replay.shape == live.shape and np.array_equal(replay, live)
    # and the expression is heard: the take without it differs
    import json
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    for ev in lines:
        if "changes" in ev:
            ev["changes"] = [ch for ch in ev["changes"] if not ch[0].startswith(("/sono/note/bend", "/sono/note/pressure", "/sono/note/timbre"))]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(ev) + "\n" for ev in lines))
    assert np.abs(bounce(plain, StreamingSynth(bundle)) - live).max() > 1e-3
