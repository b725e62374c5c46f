"""Voices: notes on their own playheads and envelopes, allocation, stealing without clicks, sustain,
replies, patches and bounce. Deterministic: EngineCore driven block by block, the engine in freewheel."""

import socket
import time

import numpy as np
import pytest

from sonolatent.control.server import encode, parse_packet
from sonolatent.control.surface import ControlSurface
from sonolatent.engine import voices as voices_mod
from sonolatent.engine.bounce import bounce, read_log
from sonolatent.engine.core import EngineCore
from sonolatent.engine.runtime import Engine
from sonolatent.engine.safety import OutputStage, SafetyConfig
from sonolatent.engine.slots import SampleCache
from sonolatent.models.synth import StreamingSynth

SETUP = [("/sono/slot/0/load", ("sine",)), ("/sono/attack", (0.002,)), ("/sono/release", (0.05,)),
         ("/sono/smooth", (0.0,)), ("/sono/gain", (0.5,))]


@pytest.fixture(scope="module")
def sine(bundle, samples_dir):
    return SampleCache(StreamingSynth(bundle), samples_dir).load("sine")


def run(bundle, sine, events, blocks, voices=8, channels=1, safety=None):
    """Render ``blocks`` blocks applying ``events`` ({block: [changes]}); returns (core, samples)."""
    c = EngineCore(StreamingSynth(bundle), voices=voices, channels=channels, safety=safety)
    c.apply(SETUP, {0: sine})
    parts = []
    for b in range(blocks):
        if b in events:
            c.apply(events[b])
        parts.append(c.render_block())
    return c, np.concatenate(parts)


def test_a_chord_is_the_sum_of_its_notes(bundle, sine):
    """Voices are independent: two notes together sound as the two rendered apart, added (before the
    output stage, whose tracking gain and limiter depend on the sum's loudness by design)."""
    on = lambda p: ("/sono/note/on", (float(p), 1.0))
    raw = SafetyConfig(limiter=False, track=False)
    _, both = run(bundle, sine, {2: [on(60), on(67)]}, 30, safety=raw)
    _, a = run(bundle, sine, {2: [on(60)]}, 30, safety=raw)
    _, b = run(bundle, sine, {2: [on(67)]}, 30, safety=raw)
    assert np.abs(a).max() > 1e-3 and np.abs(b).max() > 1e-3 and not np.allclose(a, b, atol=1e-4)
    assert np.abs(both - (a + b)).max() <= 1e-6


def test_a_note_plays_its_distance_from_the_root_like_the_mono_voice_transposed(bundle, sine):
    c, note = run(bundle, sine, {1: [("/sono/note/root", (48.0,)), ("/sono/note/on", (55.0, 0.7))]}, 20)
    _, mono = run(bundle, sine, {1: [("/sono/transpose", (7.0,)), ("/sono/play", (0.7,))]}, 20)
    assert np.abs(mono).max() > 1e-3
    assert np.array_equal(note, mono)
    assert c.bank.voices[1].note == 55.0 and c.values["/sono/voices/active"] == (1,)


def test_note_off_releases_and_sustain_holds_until_the_pedal_comes_up(bundle, sine):
    c = EngineCore(StreamingSynth(bundle), voices=4)
    c.apply(SETUP, {0: sine})
    c.apply([("/sono/note/on", (60.0, 1.0)), ("/sono/note/on", (64.0, 1.0))])
    for _ in range(5):
        c.render_block()
    assert c.values["/sono/voices/active"] == (2,)
    c.apply([("/sono/sustain", (1,)), ("/sono/note/off", (60.0,))])
    for _ in range(20):   # 0.23 s: far past the 50 ms release
        c.render_block()
    assert c.values["/sono/voices/active"] == (2,)                  # held by the pedal
    c.apply([("/sono/sustain", (0,))])
    for _ in range(10):
        c.render_block()
    assert c.values["/sono/voices/active"] == (1,)                  # 60 released with the pedal; 64 still held
    assert [v.note for v in c.bank.voices if v.sounding] == [64.0]
    c.apply([("/sono/note/on", (64.0, 0.0))])                       # velocity 0 is a note off
    tail = np.concatenate([c.render_block() for _ in range(10)])
    assert not c.sounding and np.all(tail[-512:] == 0.0)
    assert len(c.bank._free) == c.bank.capacity                     # every stream handed back


def test_all_notes_off_releases_notes_and_the_play_voice(bundle, sine):
    c = EngineCore(StreamingSynth(bundle), voices=4)
    c.apply(SETUP, {0: sine})
    c.apply([("/sono/note/on", (60.0, 1.0)), ("/sono/note/on", (72.0, 1.0)), ("/sono/play", (1.0,))])
    for _ in range(3):
        c.render_block()
    assert c.values["/sono/voices/active"] == (3,) and c.bank.voices[0].note is None
    c.apply([("/sono/allnotesoff", ())])
    for _ in range(10):
        c.render_block()
    assert not c.sounding and c.values["/sono/playing"] == (0,)


def test_allocation_reuses_the_pitch_then_free_voices_then_steals_the_oldest(bundle, sine):
    c = EngineCore(StreamingSynth(bundle), voices=3)
    c.apply(SETUP, {0: sine})
    c.apply([("/sono/note/on", (p, 1.0)) for p in (60.0, 62.0, 64.0)])
    assert c.note_voices == [(60.0, 1), (62.0, 2), (64.0, 0)]       # voice 0 (the play voice) last
    c.render_block()
    c.apply([("/sono/note/on", (62.0, 0.5))])                      # the same key again: the same voice
    assert c.note_voices == [(62.0, 2)] and not c.bank.ghosts
    c.apply([("/sono/note/on", (65.0, 1.0))])                      # all busy: 60 is the oldest
    assert c.note_voices == [(65.0, 1)] and len(c.bank.ghosts) == 1 and c.bank.ghosts[0].note == 60.0
    c.apply([("/sono/note/off", (64.0,))])
    c.render_block()
    c.apply([("/sono/note/on", (67.0, 1.0))])                      # a released voice goes before a held one
    assert c.note_voices == [(67.0, 0)]
    c.apply([("/sono/voices/steal", (1,))])
    for _ in range(3):
        c.render_block()
    c.bank.voices[2].env_target = 0.1                               # the quietest one now
    for _ in range(3):
        c.render_block()
    c.apply([("/sono/note/on", (69.0, 1.0))])
    assert c.note_voices == [(69.0, 2)]


def _steal_run(bundle, sine, voices):
    notes = {4 * k + 2: [("/sono/note/on", (float(48 + 3 * k), 1.0))] for k in range(6)}
    return run(bundle, sine, notes, 32, voices=voices)[1]


@pytest.fixture(scope="module")
def shipped():
    """The shipped model: it plays a sine as a smooth tone, where a cut would show (a random tiny model
    sounds like noise, whose own sample-to-sample steps are as large as any cut)."""
    from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle
    return load_bundle(DEFAULT_CHECKPOINT)


def test_stealing_past_n_voices_makes_no_click(shipped, samples_dir, monkeypatch):
    """Six overlapping notes on two voices: four steals. No sample-to-sample jump in the output is larger
    than the largest in the same notes played on enough voices (where nothing is cut)."""
    bundle, sine = shipped, SampleCache(StreamingSynth(shipped), samples_dir).load("sine")
    ref = _steal_run(bundle, sine, 8)
    stolen = _steal_run(bundle, sine, 2)
    assert np.abs(stolen - ref).max() > 1e-3                         # stealing did change the sound
    assert np.abs(np.diff(stolen)).max() <= np.abs(np.diff(ref)).max()
    monkeypatch.setattr(voices_mod, "STEAL_FADE_SECONDS", 1.0 / 44100)   # a hard cut instead: it clicks
    cut = _steal_run(bundle, sine, 2)
    assert np.abs(np.diff(cut)).max() > 1.5 * np.abs(np.diff(ref)).max()


def test_voices_survive_patch_save_and_load(bundle, samples_dir, tmp_path):
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", patches_dir=tmp_path, duration=1.5, voices=4)
    e.preload({0: "sine"}, [("/sono/note/root", (57.0,)), ("/sono/voices/steal", (1,)),
                            ("/sono/note/on", (60.0, 1.0)), ("/sono/note/on", (64.0, 1.0))])
    e._save_patch("chordy")
    text = (tmp_path / "chordy.toml").read_text()
    assert '"/sono/note/root" = 57.0' in text and '"/sono/voices/steal" = 1' in text
    e.core.apply([("/sono/note/root", (60.0,)), ("/sono/voices/steal", (0,))])
    e._load_patch("chordy", None)
    ch, snd, _ = e._installs.popleft()
    e.core.apply(ch, snd)
    assert e.core.values["/sono/note/root"] == (57.0,) and e.core.bank.steal == 1
    assert [v.note for v in e.core.bank.voices if v.sounding] == [60.0, 64.0]   # the chord plays on
    e.close(abort=True)


def test_a_polyphonic_bounce_equals_the_live_take(bundle, samples_dir, tmp_path):
    rec, log = tmp_path / "poly.wav", tmp_path / "poly.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", record=rec, log_osc=log, duration=1.5,
               device_rate=48000, voices=3)
    e.preload({0: "sine"}, SETUP[1:] + [("/sono/note/on", (60.0, 1.0))])
    t = time.time()
    e.submit([("/sono/note/on", (64.0, 0.8)), ("/sono/note/on", (67.0, 0.6))], t + 0.2, None)
    e.submit([("/sono/sustain", (1,)), ("/sono/note/off", (60.0,)), ("/sono/note/on", (71.0, 1.0))], t + 0.5, None)
    e.submit([("/sono/sustain", (0,)), ("/sono/transpose", (2.0,))], t + 0.9, None)
    e.start()
    assert e.wait(60)
    e.close()
    import soundfile as sf
    live, sr = sf.read(rec, dtype="float32")
    header, events, _ = read_log(log)
    assert header["voices"] == 3 and sum(len(ev["changes"]) for ev in events) >= 12
    replay = bounce(log, StreamingSynth(bundle))
    assert sr == 48000 and len(live) > 48000 and np.abs(live).max() > 1e-3
    assert replay.shape == live.shape and np.array_equal(replay, live)


def test_note_on_over_osc_answers_the_voice_it_took(bundle, samples_dir):
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", duration=3.0, voices=4)
    e.preload({0: "sine"})
    surface = ControlSurface(e, "127.0.0.1", 0, oscquery_port=-1, rate=0).start()
    e.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    try:
        got = []
        for pitch in (60.0, 64.0):
            sock.sendto(encode("/sono/note/on", (pitch, 0.9)), surface.osc.address)
            m = parse_packet(sock.recv(2048))[0][0]
            got.append((m.address, tuple(m.params)))
        assert got == [("/sono/note/voice", (60.0, 1)), ("/sono/note/voice", (64.0, 2))]
        assert e.value("/sono/voices") == (4,)
    finally:
        sock.close()
        e.request_quit()
        e.wait(10)
        surface.stop()
        e.close()


# -- stereo ---------------------------------------------------------------------------------------------


def stereo_run(bundle, sine, events, blocks, channels=2):
    return run(bundle, sine, events, blocks, voices=4, channels=channels)


def test_stereo_at_width_0_and_centre_pan_is_the_mono_sound_in_both_channels_bit_for_bit(bundle, sine):
    chord = {1: [("/sono/note/on", (60.0, 1.0)), ("/sono/note/on", (67.0, 0.5))], 12: [("/sono/note/off", (60.0,))]}
    _, mono = stereo_run(bundle, sine, chord, 24, channels=1)
    _, st = stereo_run(bundle, sine, chord, 24)
    assert st.shape == (len(mono), 2) and np.abs(mono).max() > 1e-3
    assert np.array_equal(st[:, 0], mono) and np.array_equal(st[:, 1], mono)


def test_pan_spread_and_width(bundle, sine):
    # spread: a note above the root pans right, one below pans left
    c, st = stereo_run(bundle, sine, {0: [("/sono/spread", (1.0,))], 1: [("/sono/note/on", (72.0, 1.0))]}, 12)
    assert c.bank.voices[1].pan == pytest.approx(0.5)
    left, right = np.abs(st[:, 0]).max(), np.abs(st[:, 1]).max()
    assert left == pytest.approx(0.5 * right, rel=1e-5)
    # width: left and right decode different latents; back at 0 they merge into one sound again
    events = {1: [("/sono/note/on", (60.0, 1.0))], 8: [("/sono/width", (0.6,))], 20: [("/sono/width", (0.0,))]}
    c, st = stereo_run(bundle, sine, events, 40)
    start = int(c.output_index_of_block(8)) + 512
    stop = int(c.output_index_of_block(20))
    assert np.abs(st[start:stop, 0] - st[start:stop, 1]).max() > 1e-3
    assert np.array_equal(st[-2000:, 0], st[-2000:, 1])
    assert len(c.bank.voices[1].streams) == 1


def test_a_stereo_bounce_equals_the_live_take(bundle, samples_dir, tmp_path):
    import soundfile as sf

    rec, log = tmp_path / "st.wav", tmp_path / "st.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", record=rec, log_osc=log, duration=1.2,
               device_rate=48000, voices=3, channels=2)
    e.preload({0: "sine"}, SETUP[1:] + [("/sono/spread", (0.8,)), ("/sono/note/on", (55.0, 1.0))])
    t = time.time()
    e.submit([("/sono/note/on", (64.0, 0.8)), ("/sono/width", (0.5,))], t + 0.2, None)
    e.submit([("/sono/pan", (-0.5,)), ("/sono/play", (0.7,)), ("/sono/width", (0.0,))], t + 0.6, None)
    e.start()
    assert e.wait(60)
    e.close()
    live, sr = sf.read(rec, dtype="float32")
    assert live.ndim == 2 and live.shape[1] == 2 and np.abs(live).max() > 1e-3
    assert not np.array_equal(live[:, 0], live[:, 1])
    replay = bounce(log, StreamingSynth(bundle))
    assert replay.shape == live.shape and np.array_equal(replay, live)


# -- the output stage's loudness reference ----------------------------------------------------------------


class _Heard(OutputStage):
    """The real output stage, keeping the reference it is handed with each block."""

    def __init__(self, rate, config=None):
        super().__init__(rate, config)
        self.refs = []

    def process(self, x, reference):
        self.refs.append(reference)
        return super().process(x, reference)


def _references(bundle, sine, events, blocks, channels=1):
    c = EngineCore(StreamingSynth(bundle), voices=4, channels=channels)
    c.output = _Heard(c.output_rate)
    c.apply(SETUP, {0: sine})
    for b in range(blocks):
        if b in events:
            c.apply(events[b])
        c.render_block()
    # the stage gets a reference with each commit chunk: their mean is the frame's
    return c, np.array(c.output.refs).reshape(blocks, -1).mean(axis=1)


def test_the_loudness_reference_sums_the_sounding_voices_by_velocity_and_pan(bundle, sine):
    on = lambda p, v=1.0: ("/sono/note/on", (float(p), v))
    c, one = _references(bundle, sine, {2: [on(60)]}, 16)
    _, two = _references(bundle, sine, {2: [on(60), on(67)]}, 16)
    _, soft = _references(bundle, sine, {2: [on(60, 0.5)]}, 16)
    lag = c._ref_lag
    assert not one[:2 + lag].any()              # nothing sounds, then the fresh stream's lead-in: no reference
    assert one[2 + lag:].min() > 0.0
    # the sine's own loudness at the playhead, delayed like the sound, times the envelope and the gain
    assert one[-1] == pytest.approx(sine.power.mean() * 0.25, rel=0.5)
    assert np.allclose(two, 2 * one, rtol=1e-12, atol=0)   # two notes at the same place: twice the power
    assert np.allclose(soft[2 + lag + 2:], 0.25 * one[2 + lag + 2:], rtol=1e-9)   # velocity 0.5: a quarter
    # stereo: at the centre each channel is the mono sum; a voice panned hard right counts half (one channel)
    _, centre = _references(bundle, sine, {2: [on(60)]}, 16, channels=2)
    assert np.array_equal(centre, one)
    _, hard = _references(bundle, sine, {0: [("/sono/pan", (1.0,))], 2: [("/sono/play", (1.0,))]}, 16, channels=2)
    assert np.allclose(hard, 0.5 * one, rtol=1e-12, atol=0)
    # a released voice fades out of the reference with its envelope
    c, rel = _references(bundle, sine, {2: [on(60)], 12: [("/sono/note/off", (60.0,))]}, 40)
    assert rel[13] < rel[11] and rel[-1] == 0.0 and c.values["/sono/voices/active"] == (0,)
