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
    # the garbage file and the silent one are skipped, counted, and warned about once each; notes.txt is
    # counted as a file in a format not read
    assert summary["skipped_unreadable"] == 2 and summary["skipped_unsupported"] == 1
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert any("x.wav" in w for w in warnings) and any("silent.wav" in w for w in warnings)
    assert any("skipped 1 file" in w and ".txt: 1" in w for w in warnings)
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


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_build_never_deletes_or_overwrites_files_it_did_not_write(tmp_path, write_tone):
    """A user's take in OUT/audio (and one named as the build would name a clip) survives: a foreign
    folder is refused without --force; with it, and on a rebuild, only the manifest's own files change."""
    src = tmp_path / "samples"
    write_tone(src / "loose.wav", seconds=0.3)
    write_tone(src / "two.wav", seconds=0.3, freq=300)
    out = tmp_path / "P"
    write_tone(out / "audio" / "vocals_take3.wav", seconds=0.2, freq=500)
    write_tone(out / "audio" / "loose_wav.wav", seconds=0.2, freq=600)     # the name the build gives loose.wav
    (out / "notes.txt").write_text("mine")
    mine = _tree(out)
    with pytest.raises(SonolatentError, match=r"--out .*P: not empty and not a dataset folder .*--force"):
        build_from_folder(src, out, progress=False)
    assert _tree(out) == mine
    build_from_folder(src, out, force=True, progress=False, valid_fraction=0.0)
    after = _tree(out)
    assert all(after[k] == v for k, v in mine.items())                      # every file of the user's, unchanged
    paths = [e["path"] for e in load_manifest(out)]
    assert len(paths) == 2 and "audio/loose_wav.wav" not in paths          # the clip took another name
    # a rebuild from fewer sources removes the clip the old manifest listed, and nothing else
    (src / "two.wav").unlink()
    build_from_folder(src, out, force=True, progress=False)
    again = _tree(out)
    assert all(again[k] == v for k, v in mine.items())
    assert [e["path"] for e in load_manifest(out)] == [paths[0]] and paths[1] not in again


def test_a_source_inside_the_output_audio_folder_is_refused(tmp_path, write_tone):
    lib = tmp_path / "LIB"
    write_tone(lib / "audio" / "song.wav", seconds=0.3)
    before = _tree(lib)
    for s, o in ((lib / "audio", lib), (lib / "audio" / "sub", lib)):
        (lib / "audio" / "sub").mkdir(exist_ok=True)
        write_tone(lib / "audio" / "sub" / "x.wav", seconds=0.3)
        with pytest.raises(SonolatentError, match="overlap the source folder"):
            build_from_folder(s, o, force=True, progress=False)
    assert all(_tree(lib)[k] == v for k, v in before.items())


def test_what_is_skipped_is_said_and_counted(tmp_path, write_tone):
    """An .mp3 is counted and reported (not silently ignored), a one-sample clip is refused as too
    short (as reconstruct refuses it), and a WAV cut short is used with a warning."""
    src = tmp_path / "s"
    write_tone(src / "ok.wav", seconds=0.3)
    (src / "song.mp3").write_bytes(b"ID3" + bytes(200))
    (src / "more.mp3").write_bytes(b"ID3" + bytes(200))
    sf.write(str(src / "one.wav"), np.array([0.5], np.float32), 44100)
    full = write_tone(tmp_path / "full.wav", seconds=0.5, subtype="PCM_16").read_bytes()
    (src / "cut.wav").write_bytes(full[:len(full) // 2])
    warnings = []
    summary = build_from_folder(src, tmp_path / "ds", progress=False, warn=warnings.append)
    assert summary["skipped_unsupported"] == 2 and summary["skipped_unreadable"] == 1
    assert summary["truncated_used"] == 1 and summary["files"] == 2
    assert any("skipped 2 files" in w and ".mp3: 2" in w for w in warnings), warnings
    assert any("one.wav: too short" in w for w in warnings), warnings
    assert any("cut.wav: cut short" in w for w in warnings), warnings
    assert sorted(e["source"] for e in load_manifest(tmp_path / "ds")) == ["cut.wav", "ok.wav"]
