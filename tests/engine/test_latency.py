"""Key to sound: a note that arrives while a frame is being committed starts at the first sample not yet
handed on, not at the next frame; the take bounces to the same samples. Deterministic: EngineCore driven
frame by frame and chunk by chunk, the live engine's producer stepped by hand (no threads, no clock)."""

import numpy as np
import pytest
import soundfile as sf

from sonolatent.engine.bounce import bounce, read_log
from sonolatent.engine.core import EngineCore
from sonolatent.engine.runtime import Engine
from sonolatent.engine.safety import SafetyConfig
from sonolatent.engine.slots import SampleCache
from sonolatent.models.synth import StreamingSynth

SETUP = [("/sono/slot/0/load", ("sine",)), ("/sono/attack", (0.002,)), ("/sono/release", (0.05,)),
         ("/sono/smooth", (0.0,)), ("/sono/gain", (0.5,))]
RAW = SafetyConfig(limiter=False, track=False)   # output sample k is model sample k of the timeline


@pytest.fixture(scope="module")
def sine(bundle, samples_dir):
    return SampleCache(StreamingSynth(bundle), samples_dir).load("sine")


def core(bundle, sine, voices=4, channels=1):
    c = EngineCore(StreamingSynth(bundle), voices=voices, channels=channels, safety=RAW)
    c.apply(SETUP, {0: sine})
    return c


def play(c, frames, late=None, boundary=None):
    """Render ``frames`` frames; ``late`` {frame: (chunks committed first, changes)} applies late,
    ``boundary`` {frame: changes} before the frame. Returns the output."""
    late, boundary = late or {}, boundary or {}
    parts = []
    for k in range(frames):
        if k in boundary:
            c.apply(boundary[k])
        c.render_frame()
        first, changes = late.get(k, (None, None))
        n = 0
        while c.uncommitted:
            if n == first:
                c.apply_late(changes)
            parts.append(c.commit())
            n += 1
    return np.concatenate(parts)


@pytest.mark.parametrize("chunks", [0, 2, 5])
def test_a_late_note_starts_at_the_sample_it_arrived_at_not_at_the_next_frame(bundle, sine, chunks):
    c = core(bundle, sine)
    c.apply([("/sono/attack", (0.1,))])
    K, hop, delay = 4, c.hop, c.delay
    assert K * hop > delay and c.chunk * chunks < hop
    y = play(c, 8, late={K: (chunks, [("/sono/note/on", (60.0, 1.0))])})
    at = chunks * c.chunk
    # its attack began at sample `at` of frame K: after frame 7 it has run (8 - K) frames less `at` samples
    (voice,) = [v for v in c.bank.voices if v.sounding]
    assert voice.env == pytest.approx(((8 - K) * hop - at) / (0.1 * c.model_rate), rel=1e-9)
    first = K * hop + at - delay                 # frame K's sample `at`, as an output index
    # silence before it, sound from it (a fresh stream's very first sample is 0: the synthesis window's edge)
    assert not y[:first].any() and y[first:first + 2].any()
    assert first < (K + 1) * hop - delay or chunks == 0   # before the frame boundary it used to wait for
    # the same note applied at the next frame boundary starts there
    y_next = play(core(bundle, sine), 8, boundary={0: [("/sono/attack", (0.1,))], K + 1: [("/sono/note/on", (60.0, 1.0))]})
    b = (K + 1) * hop - delay
    assert not y_next[:b].any() and y_next[b:b + 2].any()
    # and a late note at sample 0 of frame K is the note applied before frame K, sample for sample
    if chunks == 0:
        y_before = play(core(bundle, sine), 8, boundary={0: [("/sono/attack", (0.1,))],
                                                         K: [("/sono/note/on", (60.0, 1.0))]})
        assert np.array_equal(y, y_before)


def test_a_late_release_and_a_legato_restart_reshape_the_frame_from_their_sample_on(bundle, sine):
    on, off = ("/sono/note/on", (60.0, 1.0)), ("/sono/note/off", (60.0,))
    K, at_chunks = 6, 3
    held = play(core(bundle, sine), 12, boundary={1: [on]})
    released = play(core(bundle, sine), 12, boundary={1: [on]}, late={K: (at_chunks, [off])})
    c = core(bundle, sine)
    split = K * c.hop + at_chunks * c.chunk - c.delay
    assert np.array_equal(held[:split], released[:split])      # nothing handed on before it changes
    assert not np.array_equal(held[split:split + c.chunk], released[split:split + c.chunk])
    assert np.abs(released[split:split + c.chunk]).max() <= np.abs(held[split:split + c.chunk]).max()
    # a legato restart (the same pitch while it is releasing) moves the envelope back up from the same sample
    again = play(core(bundle, sine), 14, boundary={1: [on]}, late={K: (at_chunks, [off]), K + 2: (1, [on])})
    split2 = (K + 2) * c.hop + c.chunk - c.delay
    assert np.array_equal(again[:split2], released[:split2])
    tail = slice(split2, split2 + 4 * c.chunk)
    assert np.abs(again[tail]).max() > np.abs(released[tail]).max()


def _step_engine(bundle, samples_dir, tmp_path, channels):
    """The live engine's producer stepped by hand: submits arrive between chunks as they would on a clock."""
    rec, log = tmp_path / f"late{channels}.wav", tmp_path / f"late{channels}.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", device_rate=48000, record=rec,
               log_osc=log, voices=3, channels=channels)
    e.preload({0: "sine"}, SETUP[1:] + [("/sono/spread", (1.0,)), ("/sono/width", (0.3,))])
    hop, chunk = e.core.hop, e.core.chunk
    plan = {   # commit step -> submits arriving just before it
        9: [("/sono/note/on", (60.0, 0.9))],                                   # frame 2, after 1 chunk
        22: [("/sono/note/on", (64.0, 0.8)), ("/sono/note/on", (67.0, 0.7))],  # a chord in one packet
        23: [("/sono/gain", (0.7,))],                                          # not a note: next frame
        37: [("/sono/note/on", (71.0, 1.0))],                                  # steals a voice mid-frame
        50: [("/sono/note/off", (64.0,))],
        61: [("/sono/note/on", (64.0, 0.5))],                                  # legato, while releasing
        90: [("/sono/allnotesoff", ())],
    }
    out = np.zeros((1024, channels), np.float32)
    for step in range(140):
        for changes in [plan.get(step)] if step in plan else []:
            e.submit(changes, None, ("127.0.0.1", 1))
            e._take_now()
        e._commit_chunk()
        e.ring.pop_into(out[:e.ring.fill()])
    e.request_quit()
    while not (e.core.finished and not e.core.uncommitted):
        e._commit_chunk()
        e.ring.pop_into(out[:e.ring.fill()])
    e.close()
    return e, rec, log, plan, hop, chunk


@pytest.mark.parametrize("channels", [1, 2])
def test_a_take_with_late_notes_bounces_to_the_same_samples(bundle, samples_dir, tmp_path, channels):
    e, rec, log, plan, hop, chunk = _step_engine(bundle, samples_dir, tmp_path, channels)
    per_frame = hop // chunk
    header, events, end = read_log(log)
    assert header["chunk"] == chunk and header["resampler"] == "lq"
    late = [(ev["block"], ev["at"], [a for a, _ in ev["changes"]]) for ev in events if "at" in ev]
    # each submit applied at once, into the frame being committed, from the first sample not yet handed on
    want = [((s - 1) // per_frame, (s % per_frame) * chunk, [a for a, _ in plan[s]]) for s in sorted(plan)
            if s % per_frame]
    assert late == want
    assert all(e.core.block > b for b, _, _ in late)
    live, sr = sf.read(rec, dtype="float32")
    replay = bounce(log, StreamingSynth(bundle))
    assert sr == 48000 and np.abs(live).max() > 1e-3
    assert replay.shape == live.shape and np.array_equal(replay, live)


def test_a_late_change_out_of_place_in_a_log_is_refused(bundle, tmp_path):
    from sonolatent.errors import ConfigError
    from sonolatent.engine.runtime import LOG_FORMAT, LOG_VERSION
    import json

    head = {"format": LOG_FORMAT, "version": LOG_VERSION, "model_rate": bundle.sample_rate,
            "hop": bundle.mel_config.hop_length, "output_rate": bundle.sample_rate}
    for bad, why in (({"block": 3, "at": 10_000, "changes": [["/sono/play", [1.0]]]}, "past the frame"),
                     ({"block": 3, "at": -1, "changes": []}, "bad late sample")):
        p = tmp_path / "bad.jsonl"
        p.write_text("\n".join(json.dumps(x) for x in (head, bad, {"end": 6})) + "\n")
        with pytest.raises(ConfigError, match=why):
            bounce(p, StreamingSynth(bundle))


def test_committing_in_chunks_changes_no_sample_that_does_not_depend_on_the_chunk(bundle, sine):
    """Gain, fade, lead-in and limiter work sample by sample: with loudness tracking off (its gain moves once
    per call of the output stage, by design) and no resampling, 64-sample chunks give the whole frames' samples."""
    events = {1: [("/sono/note/on", (60.0, 1.0)), ("/sono/gain", (1.5,))], 9: [("/sono/note/off", (60.0,))]}
    outs = []
    for chunk in (64, bundle.mel_config.hop_length):
        c = EngineCore(StreamingSynth(bundle), voices=2, chunk=chunk,
                       safety=SafetyConfig(limiter=True, track=False, ceiling_db=-30.0))   # the tiny model is quiet
        c.apply(SETUP + [("/sono/smooth", (0.02,))], {0: sine})
        parts = []
        for k in range(16):
            c.apply(events.get(k, []))
            if k == 12:
                c.apply([("/sono/quit", ())])
            parts.append(c.render_block())
        outs.append(np.concatenate(parts))
    ceiling = 10 ** (-30 / 20)
    assert 0.9 * ceiling < np.abs(outs[0]).max() <= ceiling * 1.0001   # loud enough that the limiter works
    assert np.array_equal(outs[0], outs[1])


def test_a_bounce_follows_the_resampler_the_take_was_played_with(bundle, samples_dir, tmp_path):
    rec, log = tmp_path / "hq.wav", tmp_path / "hq.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", device_rate=48000, record=rec,
               log_osc=log, duration=0.6, resampler="hq", clock=lambda: 1e6)
    e.preload({0: "sine"}, SETUP[1:] + [("/sono/play", (1.0,))])
    e.start()
    assert e.wait(60)
    e.close()
    assert read_log(log)[0]["resampler"] == "hq"
    live, _ = sf.read(rec, dtype="float32")
    assert np.abs(live).max() > 1e-3 and np.array_equal(bounce(log, StreamingSynth(bundle)), live)
