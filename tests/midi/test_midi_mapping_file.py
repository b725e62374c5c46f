"""Mapping files: strict validation with file, line and key; saving atomically; the shipped examples."""

import os
from pathlib import Path

import pytest

from sonolatent.errors import ConfigError
from sonolatent.midi import Mapper, Mapping, dumps_mapping, load_mapping, read_mapping_text, save_mapping
from sonolatent.midi.mapping import find_line

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "patches" / "midi").glob("*.toml"))

GOOD = """# my mapping
[osc]
host = "127.0.0.1"
port = 9000

[notes]
root = 60

[[cc]]
cc = 1
address = "/sono/morph"

[[cc]]
cc = 21
address = "/sono/latent/0"
min = -3
max = 3
curve = "exp"
"""


def error_of(tmp_path, text, name="map.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_mapping(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(p))
    return msg


def line_of(msg: str) -> int:
    return int(msg.split(":")[1])


@pytest.mark.parametrize("bad, line, where, problem", [
    # unknown key inside the second [[cc]]
    (GOOD.replace('min = -3', 'mni = -3'), 16, "[[cc]] #2 key 'mni'", "unknown key"),
    # wrong type
    (GOOD.replace('curve = "exp"', 'curve = 3'), 18, "[[cc]] #2 key 'curve'", "must be a string"),
    # not one of the choices
    (GOOD.replace('curve = "exp"', 'curve = "cubic"'), 18, "[[cc]] #2 key 'curve'", "linear, exp, log"),
    # out of range
    (GOOD.replace("cc = 21", "cc = 200"), 14, "[[cc]] #2 key 'cc'", "0..127"),
    (GOOD.replace("port = 9000", "port = 70000"), 4, "[osc] key 'port'", "1..65535"),
    (GOOD.replace("root = 60", "root = -1"), 7, "[notes] key 'root'", "0..127"),
    # a bool is not a number
    (GOOD.replace("max = 3", "max = true"), 17, "[[cc]] #2 key 'max'", "must be a number"),
    # missing required key: the table's header line
    (GOOD.replace('address = "/sono/morph"\n', ""), 9, "[[cc]] #1", "missing required key 'address'"),
    # bad address
    (GOOD.replace('"/sono/morph"', '"sono morph"'), 11, "[[cc]] #1 key 'address'", "not a valid OSC address"),
    # unknown table
    (GOOD + "\n[velocity]\ncurve = \"exp\"\n", 20, "key 'velocity'", "unknown key"),
    # 14-bit with an MSB above 31
    (GOOD.replace("cc = 21", "cc = 40\nlsb = 33"), 15, "[[cc]] #2 key 'lsb'", "MSB controller 0..31"),
    # channel 0 (channels are 1..16)
    (GOOD.replace("root = 60", "root = 60\nchannel = 0"), 8, "[notes] key 'channel'", "1..16"),
    # min == max
    (GOOD.replace("max = 3", "max = -3"), 17, "[[cc]] #2 key 'max'", "nothing would move"),
])
def test_semantic_errors_name_file_line_and_key(tmp_path, bad, line, where, problem):
    msg = error_of(tmp_path, bad)
    assert line_of(msg) == line, msg
    assert where in msg and problem in msg, msg


def test_pitchbend_and_program_errors(tmp_path):
    msg = error_of(tmp_path, "[pitchbend]\naddress = \"/sono/transpose\"\nrange = 2\nmin = 0\nmax = 1\n")
    assert line_of(msg) == 3 and "either range or min/max" in msg
    msg = error_of(tmp_path, "[pitchbend]\nrange = 200\n")
    assert line_of(msg) == 2 and "0..96" in msg
    msg = error_of(tmp_path, "[program]\npatches = [\"a\", 3]\n")
    assert line_of(msg) == 2 and "program 1: name must be a string" in msg
    msg = error_of(tmp_path, "[program]\n[program.patches]\n200 = \"x\"\n")
    assert "0..127" in msg
    msg = error_of(tmp_path, "[program]\naddress = \"/sono/patch/load\"\n")
    assert line_of(msg) == 1 and "missing required key 'patches'" in msg
    msg = error_of(tmp_path, "[[aftertouch]]\naddress = \"/a\"\nnote = 60\n")
    assert line_of(msg) == 3 and "poly" in msg


def test_toml_syntax_errors_are_one_line_with_the_line(tmp_path):
    msg = error_of(tmp_path, "[osc]\nport = 9000\nhost = \n")
    assert line_of(msg) == 3 and "TOML syntax error" in msg
    msg = error_of(tmp_path, "[[cc]]\ncc = 1\naddress = \"/sono/morph\n")
    assert line_of(msg) == 3 and "TOML syntax error" in msg
    msg = error_of(tmp_path, "[osc]\n[osc]\n")
    assert line_of(msg) == 2


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_mapping(tmp_path)
    p = tmp_path / "latin1.toml"
    p.write_bytes(b"[osc]\nhost = \"caf\xe9\"\n")
    with pytest.raises(ConfigError, match=r"latin1.toml:2: not UTF-8"):
        load_mapping(p)


def test_wrong_shapes_of_tables(tmp_path):
    msg = error_of(tmp_path, "cc = 3\n")
    assert line_of(msg) == 1 and "array of tables" in msg
    msg = error_of(tmp_path, "osc = 3\n")
    assert line_of(msg) == 1 and "must be a table" in msg


def test_find_line_counts_array_tables_and_skips_comments():
    text = "# [[cc]] in a comment\n[[cc]]\ncc = 1\n\n[[cc]]\n  \"cc\" = 2\ncurve='x'\n"
    assert find_line(text, ("cc", 1, "cc")) == 6
    assert find_line(text, ("cc", 1, "curve")) == 7
    assert find_line(text, ("cc", 0)) == 2
    assert find_line(text, ("cc", 5, "cc")) is None


def test_save_round_trips_and_keeps_the_top_comments(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text(GOOD + '\n[program]\npatches = ["a", "b \\"quoted\\"", "ü"]\n\n[pitchbend]\nmin = 0\nmax = 1\n'
                        'address = "/sono/position"\n[[nrpn]]\nparam = 300\naddress = "/sono/rate"\n'
                        '[[aftertouch]]\ntype = "poly"\nnote = 3\naddress = "/sono/gain"\n')
    os.chmod(p, 0o640)
    m = load_mapping(p)
    save_mapping(m, p)
    again = load_mapping(p)
    assert again == m
    text = p.read_text()
    assert text.startswith("# my mapping\n")
    assert (p.stat().st_mode & 0o777) == 0o640
    assert [f.name for f in tmp_path.iterdir()] == ["m.toml"]  # no temp file left behind
    assert read_mapping_text(dumps_mapping(again)) == m
    assert Mapping.from_dict(m.to_dict()) == m


def test_a_new_file_gets_the_usual_mode(tmp_path):
    p = tmp_path / "fresh.toml"
    save_mapping(Mapping(), p)
    mask = os.umask(0o022)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == 0o666 & ~mask
    assert load_mapping(p) == Mapping()


def test_save_into_a_missing_folder_is_one_error_line(tmp_path):
    with pytest.raises(ConfigError, match=r"m\.toml: cannot save mapping \(No such file or directory\)$"):
        save_mapping(Mapping(), tmp_path / "no" / "such" / "m.toml")


def test_save_is_flushed_to_disk_and_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "m.toml"
    p.write_text(GOOD)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    save_mapping(load_mapping(p), p)
    assert len(synced) == 1

    def full(fd):
        raise OSError(28, "No space left on device")

    before = p.read_text()
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ConfigError, match=r"m\.toml: cannot save mapping \(No space left on device\)$"):
        save_mapping(Mapping(), p)
    assert p.read_text() == before and [f.name for f in tmp_path.iterdir()] == ["m.toml"]


def test_from_dict_is_strict():
    with pytest.raises(ConfigError, match=r"\[\[cc\]\] #1 key 'cc'"):
        Mapping.from_dict({"cc": [{"cc": "1", "address": "/x"}]})


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_examples_load_and_map(path):
    m = load_mapping(path)
    assert m.osc.port == 9000 and m.osc.host == "127.0.0.1"
    assert m.cc, "every example maps some controllers"
    mapper = Mapper(m)
    import mido
    for entry in m.cc:
        out = mapper.handle(mido.Message("control_change", control=entry.cc, value=127))
        assert (entry.address, (entry.max,)) in out


def test_the_three_examples_are_there_and_say_what_they_promise():
    names = {p.name for p in EXAMPLES}
    assert {"modwheel_morph.toml", "xy_pad.toml", "drone_knobs.toml"} <= names
    mod = load_mapping(REPO / "patches/midi/modwheel_morph.toml")
    assert any(c.cc == 1 and c.address == "/sono/morph" for c in mod.cc)
    assert mod.notes is not None and mod.notes.mode == "play" and mod.notes.transpose
    xy = load_mapping(REPO / "patches/midi/xy_pad.toml")
    assert {(c.cc, c.address) for c in xy.cc} >= {(16, "/sono/xy/x"), (17, "/sono/xy/y")}
    drone = load_mapping(REPO / "patches/midi/drone_knobs.toml")
    latent = {c.cc: (c.address, c.min, c.max) for c in drone.cc if "latent" in c.address}
    assert latent == {21 + k: (f"/sono/latent/{k}", -3.0, 3.0) for k in range(8)}
