import numpy as np
import pytest
import soundfile as sf

from sonolatent.datasets import load_manifest
from sonolatent.datasets.folder import build_from_folder
from sonolatent.errors import SonolatentError


@pytest.fixture
def src(tmp_path, write_tone):
    s = tmp_path / "mysounds"
    write_tone(s / "piano" / "a.wav", sr=48000, channels=2, seconds=0.5)
    write_tone(s / "piano" / "soft" / "b.flac", sr=22050, seconds=0.4, freq=220)
    write_tone(s / "drums" / "kick.wav", subtype="PCM_16", seconds=0.3, freq=60)
    write_tone(s / "drums" / "snare.flac", seconds=0.3, freq=900)
    write_tone(s / "drums" / "kick.aiff", seconds=0.2, freq=70)
    write_tone(s / "loose.wav", seconds=0.25)
    (s / "drums" / "x.wav").write_bytes(b"\x00garbage, not a RIFF file\xff" * 20)
    sf.write(str(s / "piano" / "silent.wav"), np.zeros(4410, np.float32), 44100)
    (s / "piano" / "notes.txt").write_text("not a sound")
    return s


def test_nested_folders(src, tmp_path):
    warnings = []
    summary = build_from_folder(src, tmp_path / "ds", valid_fraction=0.34, seed=0, warn=warnings.append)
    entries = load_manifest(tmp_path / "ds")
    by_source = {e["source"]: e for e in entries}
    assert set(by_source) == {"piano/a.wav", "piano/soft/b.flac", "drums/kick.wav", "drums/snare.flac",
                              "drums/kick.aiff", "loose.wav"}
    assert by_source["piano/soft/b.flac"]["label"] == "piano/soft"
    assert by_source["piano/soft/b.flac"]["group"] == "piano"
    assert by_source["drums/kick.wav"]["label"] == "drums"
    assert by_source["loose.wav"]["label"] == "mysounds" and by_source["loose.wav"]["group"] == "."
    # resampled to 44.1 kHz mono, length kept
    x, sr = sf.read(str(tmp_path / "ds" / by_source["piano/a.wav"]["path"]))
    assert sr == 44100 and x.ndim == 1 and abs(len(x) - 0.5 * 44100) <= 2
    assert abs(np.abs(x).max() - 10 ** (-1 / 20)) < 1e-3
    assert by_source["piano/soft/b.flac"]["duration"] == pytest.approx(0.4, abs=1e-3)
    # kick.wav and kick.aiff do not overwrite each other
    assert len({e["path"] for e in entries}) == len(entries)
    # the garbage file and the silent one are skipped, counted, and warned about once each
    assert summary["skipped_unreadable"] == 2
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("x.wav" in w for w in warnings) and any("silent.wav" in w for w in warnings)
    # split by group: one group of three in validation, never a group in both
    assert summary["split_by"] == "group" and len(summary["valid_groups"]) == 1
    for e in entries:
        assert e["split"] == ("valid" if e["group"] in summary["valid_groups"] else "train")
    assert summary["counts"]["train"] > 0 and summary["counts"]["valid"] > 0


def test_one_group_splits_by_file(tmp_path, write_tone):
    for i in range(5):
        write_tone(tmp_path / "src" / "only" / f"t{i}.wav", freq=200 + 50 * i, seconds=0.2)
    summary = build_from_folder(tmp_path / "src", tmp_path / "ds", valid_fraction=0.2, seed=1, progress=False)
    assert summary["split_by"] == "file" and summary["valid_groups"] == []
    assert summary["counts"] == {"train": 4, "valid": 1}
    again = build_from_folder(tmp_path / "src", tmp_path / "ds2", valid_fraction=0.2, seed=1)
    valid = [e["source"] for e in load_manifest(tmp_path / "ds", split="valid")]
    assert valid == [e["source"] for e in load_manifest(tmp_path / "ds2", split="valid")]
    assert again["counts"] == summary["counts"]


def test_max_seconds_chunks_or_trims(tmp_path, write_tone):
    write_tone(tmp_path / "src" / "long.wav", seconds=2.5)
    write_tone(tmp_path / "src" / "short.wav", seconds=0.5)
    build_from_folder(tmp_path / "src", tmp_path / "c", max_seconds=1.0)
    chunks = [e for e in load_manifest(tmp_path / "c") if e["source"] == "long.wav"]
    assert [e["offset"] for e in chunks] == [0.0, 1.0, 2.0]
    assert [round(e["duration"], 3) for e in chunks] == [1.0, 1.0, 0.5]
    build_from_folder(tmp_path / "src", tmp_path / "t", max_seconds=1.0, long_files="trim")
    entries = load_manifest(tmp_path / "t")
    assert sorted(round(e["duration"], 3) for e in entries) == [0.5, 1.0]


def test_bad_sources(tmp_path):
    with pytest.raises(SonolatentError, match="no such folder"):
        build_from_folder(tmp_path / "missing", tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(SonolatentError, match="no sound files"):
        build_from_folder(tmp_path / "empty", tmp_path / "ds")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"junk" * 10)
    with pytest.raises(SonolatentError, match="none of the 1 sound files"):
        build_from_folder(tmp_path / "bad", tmp_path / "ds", warn=lambda m: None)
    with pytest.raises(SonolatentError, match="inside the source"):
        build_from_folder(tmp_path / "bad", tmp_path / "bad" / "ds")
    assert not (tmp_path / "ds").exists()


def test_an_interrupted_build_leaves_nothing(src, tmp_path, monkeypatch):
    """Ctrl-C half-way through: the audio written so far and the folders the build made are removed."""
    from sonolatent.datasets.manifest import DatasetWriter
    add = DatasetWriter.add
    calls = []

    def add_then_interrupt(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return add(self, *a, **k)
    monkeypatch.setattr(DatasetWriter, "add", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_from_folder(src, tmp_path / "new" / "ds", warn=lambda m: None)
    assert not (tmp_path / "new").exists()
