import numpy as np
import pytest
import soundfile as sf

from sonolatent.datasets import load_manifest
from sonolatent.datasets.sf2 import (
    DRUM_KEYS, SILENCE_PEAK, Renderer, SF2Config, build_from_soundfont, parse_float_list, parse_int_list,
    parse_pitches, trim_tail,
)
from sonolatent.errors import ConfigError, SonolatentError


def _cfg(soundfont, **kw):
    base = dict(soundfont=str(soundfont), programs=(0, 40, 73), drums=(), pitches=(48, 60, 127),
                velocities=(100,), durations=(0.5,), release=1.0, valid_programs=(40,))
    base.update(kw)
    return SF2Config(**base)


def test_render_programs_and_drums(soundfont, tmp_path):
    summary = build_from_soundfont(_cfg(soundfont, drums=(0,), valid_drums=None), tmp_path / "ds")
    entries = load_manifest(tmp_path / "ds")
    melodic = [e for e in entries if e["bank"] == 0]
    drums = [e for e in entries if e["bank"] == 128]
    keys = {(e["program"], e["pitch"]) for e in melodic}
    # piano and violin have no samples at key 127 in FluidR3: those renders are dropped
    assert (0, 127) not in keys and (40, 127) not in keys
    assert {(0, 48), (0, 60), (40, 48), (40, 60), (73, 60)} <= keys
    assert summary["dropped_silent"] >= 2
    assert summary["rendered"] == len(entries) == summary["files"]
    assert 30 < len(drums) <= len(DRUM_KEYS)
    assert {e["pitch"] for e in drums} <= set(DRUM_KEYS)
    labels = {e["label"] for e in entries}
    assert "gm/000 Yamaha Grand Piano" in labels and "drums/000 Standard" in labels
    for e in entries:
        x, sr = sf.read(str(tmp_path / "ds" / e["path"]))
        assert sr == 44100 and x.ndim == 1
        assert abs(np.abs(x).max() - 10 ** (-1 / 20)) < 1e-3
        assert np.abs(x[-1]) < 1e-3  # faded out
        assert e["duration"] <= e["note_seconds"] + 1.0 + 0.1  # hold + release allowance (+ block rounding)
        assert e["split"] == ("valid" if e["group"] == "gm/040" else "train")
    assert summary["valid_groups"] == ["gm/040"]
    assert summary["settings"]["programs"] == [0, 40, 73]


def test_dropped_render_is_really_silent_and_kept_one_is_not(soundfont):
    with Renderer(soundfont) as r:
        assert np.abs(r.note(0, 0, 127, 100, 0.5, 0.5)).max() < SILENCE_PEAK
        r.note(0, 0, 72, 100, 0.5, 0.5)  # the synth's very first voice differs by ~-50 dB at the onset
        loud = r.note(0, 0, 60, 100, 0.5, 0.5)
        assert np.abs(loud).max() > 100 * SILENCE_PEAK
        # nothing of a previous note (another program, longer, louder) leaks into the next one
        r.note(0, 40, 48, 120, 1.5, 1.0)
        again = r.note(0, 0, 60, 100, 0.5, 0.5)
        assert len(again) == len(loud)
        assert np.array_equal(loud, again)


def test_split_never_shares_a_group(soundfont, tmp_path):
    cfg = _cfg(soundfont, programs=tuple(range(8)), pitches=(60,), valid_programs=None,
               valid_fraction=0.3, drums=(0, 25), velocities=(90,))
    summary = build_from_soundfont(cfg, tmp_path / "ds")
    entries = load_manifest(tmp_path / "ds")
    splits = {}
    for e in entries:
        splits.setdefault(e["group"], set()).add(e["split"])
    assert all(len(s) == 1 for s in splits.values())
    valid = {g for g, s in splits.items() if s == {"valid"}}
    assert valid == set(summary["valid_groups"])
    assert len([g for g in valid if g.startswith("gm/")]) == 2  # round(0.3 * 8)
    assert len([g for g in valid if g.startswith("drums/")]) == 1
    assert summary["counts"]["train"] > 0 and summary["counts"]["valid"] > 0
    # the same seed picks the same groups
    summary2 = build_from_soundfont(cfg, tmp_path / "ds2")
    assert summary2["valid_groups"] == summary["valid_groups"]


def test_nothing_rendered_leaves_nothing(soundfont, tmp_path):
    with pytest.raises(SonolatentError, match="nothing rendered"):
        build_from_soundfont(_cfg(soundfont, programs=(0,), pitches=(127,), valid_programs=None), tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()


def test_bad_inputs(soundfont, tmp_path):
    with pytest.raises(SonolatentError, match="no such file"):
        build_from_soundfont(_cfg(tmp_path / "none.sf2"), tmp_path / "ds")
    (tmp_path / "garbage.sf2").write_bytes(b"RIFF not really a soundfont" * 10)
    with pytest.raises(SonolatentError, match="cannot load"):
        build_from_soundfont(_cfg(tmp_path / "garbage.sf2"), tmp_path / "ds")
    with pytest.raises(SonolatentError, match="--drums: 60 not in"):
        build_from_soundfont(_cfg(soundfont, drums=(60,)), tmp_path / "ds")
    with pytest.raises(SonolatentError, match="--valid-programs: 5 not among"):
        build_from_soundfont(_cfg(soundfont, valid_programs=(5,)), tmp_path / "ds")
    with pytest.raises(SonolatentError, match="none left to train"):
        build_from_soundfont(_cfg(soundfont, valid_programs=(0, 40, 73)), tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_interrupted_build_leaves_nothing(soundfont, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Renderer.note

    def flaky(self, *a):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(Renderer, "note", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_from_soundfont(_cfg(soundfont), tmp_path / "ds")
    # the two notes rendered before the interruption are removed with the folders the build made
    assert not (tmp_path / "ds").exists()
    with pytest.raises(ConfigError, match="no such dataset folder"):
        load_manifest(tmp_path / "ds")


def test_trim_tail():
    sr = 44100
    t = np.arange(3 * sr) / sr
    x = (np.exp(-t * 10) * np.sin(2 * np.pi * 200 * t)).astype(np.float32)  # -60 dB after ~0.69 s
    y = trim_tail(x)
    assert 0.6 * sr < len(y) < 0.72 * sr
    assert y[-1] == 0.0
    assert np.array_equal(y[: sr // 2], x[: sr // 2])


def test_parsers():
    assert parse_pitches("24:96:3") == tuple(range(24, 97, 3))
    assert parse_pitches("48:50") == (48, 49, 50)
    assert parse_pitches("60,64,70-72") == (60, 64, 70, 71, 72)
    assert parse_int_list("0-2,5,1", option="--programs") == (0, 1, 2, 5)
    assert parse_float_list("1.5,0.5", option="--durations", lo=0, hi=30) == (0.5, 1.5)
    for bad in ("96:24", "a:b", "1:2:3:4", "0:128"):
        with pytest.raises(SonolatentError, match="--pitches"):
            parse_pitches(bad)
    for bad in ("5-1", "x", "200", ""):
        with pytest.raises(SonolatentError, match="--programs"):
            parse_int_list(bad, option="--programs")
    with pytest.raises(SonolatentError, match="--durations"):
        parse_float_list("0", option="--durations", lo=0, hi=30)


def test_a_short_hit_is_padded_to_what_training_accepts(soundfont, tmp_path):
    """The TR-808's claves (kit 25, key 75) trim to 38 ms; training refuses clips under 50 ms, so the
    render keeps its hit and gets silence after it."""
    from sonolatent.datasets.manifest import MIN_CLIP_SECONDS
    from sonolatent.training.data import ClipBank

    build_from_soundfont(_cfg(soundfont, programs=(), drums=(25,), pitches=(60,), velocities=(50,),
                              durations=(0.4,), valid_programs=None, valid_drums=None), tmp_path / "ds")
    entries = load_manifest(tmp_path / "ds")
    claves = [e for e in entries if e["pitch"] == 75]
    assert claves and all(e["duration"] >= MIN_CLIP_SECONDS for e in entries)
    x, _ = sf.read(str(tmp_path / "ds" / claves[0]["path"]))
    assert np.abs(x[: len(x) // 2]).max() > 0.5 and np.abs(x[-100:]).max() < 1e-3
    assert len(ClipBank([tmp_path / "ds"], "train", 44100, progress=False)) == len(entries)
