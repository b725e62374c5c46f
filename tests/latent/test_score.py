import numpy as np
import pytest
import soundfile as sf

from sonolatent.errors import ConfigError
from sonolatent.latent import parse_score

GOOD = """\
# a test score
duration = 4.0
interp = "slerp"

[[source]]
name = "a"
file = "a.wav"

[[source]]
name = "b"
file = "sub/b.flac"

[[key]]
time = 0.0
weights = {a = 1, b = 0}

[[key]]
time = 2.0
weights = [1, 3]
latent = {0 = 1.5, 2 = -1}
gain = -6

[[key]]
time = 2.0
weights = {b = 2}
"""


@pytest.fixture
def folder(tmp_path):
    sr = 44100
    t = np.arange(sr // 2) / sr
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "b.flac", (0.3 * np.sin(2 * np.pi * 550 * t)).astype(np.float32), sr)
    return tmp_path


def write(folder, text, name="s.toml"):
    p = folder / name
    p.write_text(text)
    return p


def test_good_score_parses_and_interpolates(folder):
    s = parse_score(write(folder, GOOD))
    assert [x.name for x in s.sources] == ["a", "b"]
    assert s.sources[1].file == folder / "sub" / "b.flac"
    assert s.duration == 4.0 and s.interp == "slerp" and s.align == "stretch"
    assert [k.time for k in s.keys] == [0.0, 2.0, 2.0]
    assert s.keys[1].weights == (0.25, 0.75)
    assert [k.line for k in s.keys] == [13, 17, 23]
    w = s.weights_at(np.array([0.0, 1.0, 1.999, 2.0, 3.0]))
    np.testing.assert_allclose(w[:, 0], [1, 0])
    np.testing.assert_allclose(w[:, 1], [0.625, 0.375])
    np.testing.assert_allclose(w[:, 2], [1 - 0.75 * 1.999 / 2, 0.75 * 1.999 / 2])
    np.testing.assert_allclose(w[:, 3], [0, 1])   # two keys at 2.0: a jump
    np.testing.assert_allclose(w[:, 4], [0, 1])   # held after the last key
    off = s.offsets_at(np.array([0.0, 1.0, 1.999, 2.5]), 4)
    np.testing.assert_allclose(off[0], [0, 0.75, 1.5 * 1.999 / 2, 0])
    np.testing.assert_allclose(off[2], [0, -0.5, -1.999 / 2, 0])
    np.testing.assert_allclose(s.gain_at(np.array([0.0, 1.0])), [0, -3])
    with pytest.raises(ConfigError, match=r"line 20: \[\[key\]\] 2 latent: coordinate 2 is outside 0..1"):
        s.check_latent_dim(2)


BAD = [
    # (replace this, with this, error pattern)
    ("weights = {a = 1, b = 0}", "weights = {a = 1, c = 0}", r"line 15: \[\[key\]\] 1 weights: unknown source 'c' \(sources: a, b\)"),
    ("weights = [1, 3]", "wieghts = [1, 3]", r"line 19: \[\[key\]\] 2: unknown field 'wieghts'"),
    ('file = "sub/b.flac"', 'file = "sub/nope.wav"', r"line 11: \[\[source\]\] 'b': no such file 'sub/nope.wav'"),
    ('file = "sub/b.flac"', 'file = "sub"', r"line 11: \[\[source\]\] 'b': 'sub' is a folder"),
    ('name = "b"', 'name = "a"', r"line 10: \[\[source\]\] 'a': the name is used twice"),
    ('name = "b"\n', '', r"line 9: \[\[source\]\] 2: missing 'name'"),
    ('interp = "slerp"', 'interp = "cubic"', r"line 3: interp must be one of lerp, slerp"),
    ('interp = "slerp"', 'interp = slerp', r":3: TOML syntax error"),
    ("duration = 4.0", "duration = -4.0", r"line 2: duration must be a positive number"),
    ("duration = 4.0", "durration = 4.0", r"line 2: unknown setting 'durration'"),
    ("[[key]]\ntime = 0.0", "[[keys]]\ntime = 0.0", r"line 13: unknown setting 'keys'"),
    ("time = 0.0", "time = 3.0", r"line 18: \[\[key\]\] 2: time 2 comes before the previous key's 3"),
    ("time = 0.0", "time = 5.0", r"line 14: \[\[key\]\] 1: time 5 is after the end of the score"),
    ("weights = [1, 3]", "weights = [1, 3, 4]", r"line 19: \[\[key\]\] 2 weights: 3 values for 2 sources"),
    ("weights = [1, 3]", "weights = [0, 0]", r"line 19: \[\[key\]\] 2 weights: all weights are 0"),
    ("weights = {b = 2}", "weights = {b = -2}", r"line 25: \[\[key\]\] 3 weights: b must be a number >= 0"),
    ("weights = {b = 2}", "", r"line 23: \[\[key\]\] 3: missing 'weights'"),
    ("latent = {0 = 1.5, 2 = -1}", "latent = {x = 1.5}", r"line 20: \[\[key\]\] 2 latent: 'x' is not a PCA coordinate"),
    ("gain = -6", "gain = \"loud\"", r"line 21: \[\[key\]\] 2: gain must be a number of dB"),
]


@pytest.mark.parametrize("old,new,msg", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_scores_name_file_line_and_key(folder, old, new, msg):
    assert old in GOOD
    p = write(folder, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        parse_score(p)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{p}:")
    assert __import__("re").search(msg, text), text


def test_no_sources_no_keys_missing_file(folder):
    with pytest.raises(ConfigError, match=r"no \[\[source\]\] tables"):
        parse_score(write(folder, "duration = 1.0\n"))
    only_sources = GOOD.split("[[key]]")[0]
    with pytest.raises(ConfigError, match=r"no \[\[key\]\] tables"):
        parse_score(write(folder, only_sources))
    with pytest.raises(ConfigError, match="no such score file"):
        parse_score(folder / "missing.toml")
