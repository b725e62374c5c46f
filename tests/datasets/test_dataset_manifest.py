import json

import numpy as np
import pytest
import soundfile as sf

from sonolatent.datasets import load_manifest, load_summary
from sonolatent.datasets.manifest import DatasetWriter, choose_valid
from sonolatent.errors import ConfigError, SonolatentError


def _clip(seconds=0.2, amp=0.3):
    t = np.arange(int(seconds * 44100)) / 44100
    return (amp * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def test_round_trip(tmp_path):
    w = DatasetWriter(tmp_path / "ds")
    w.add("a", _clip(), {"label": "x", "group": "g1", "split": "train", "pitch": 60})
    w.add("a", _clip(0.3), {"label": "x", "group": "g1", "split": "train", "pitch": 62})  # same name: made unique
    w.add("b", _clip(), {"label": "y", "group": "g2", "split": "valid", "pitch": 64})
    summary = w.finish(valid_groups=["g2"], settings={"seed": 0})
    entries = load_manifest(tmp_path / "ds")
    assert entries == w.entries
    assert [e["path"] for e in entries] == ["audio/a.wav", "audio/a_2.wav", "audio/b.wav"]
    assert [e["pitch"] for e in load_manifest(tmp_path / "ds", split="train")] == [60, 62]
    assert [e["label"] for e in load_manifest(tmp_path / "ds", split="valid")] == ["y"]
    for e in entries:
        x, sr = sf.read(str(tmp_path / "ds" / e["path"]))
        assert sr == 44100 and x.ndim == 1
        assert abs(np.abs(x).max() - 10 ** (-1 / 20)) < 1e-3  # -1 dBFS
        assert e["duration"] == pytest.approx(len(x) / 44100)
    assert load_summary(tmp_path / "ds") == summary
    assert summary["counts"] == {"train": 2, "valid": 1}
    assert summary["valid_groups"] == ["g2"]
    assert not list((tmp_path / "ds").glob("**/*.part"))


def test_garbled_manifest_names_file_and_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"path": "audio/a.wav", "label": "x", "group": "g", "split": "train",
                    "duration": 1.0, "sample_rate": 44100}) + "\n{not json\n"
    )
    with pytest.raises(ConfigError) as e:
        load_manifest(tmp_path)
    msg = str(e.value)
    assert "manifest.jsonl:2:" in msg and "\n" not in msg


@pytest.mark.parametrize("line, words", [
    ('[1, 2]', "JSON object"),
    ('{"path": "a.wav"}', "missing key"),
    ('{"path": "a.wav", "label": "x", "group": "g", "split": "test", "duration": 1, "sample_rate": 44100}', "split"),
    ('{"path": "../a.wav", "label": "x", "group": "g", "split": "train", "duration": 1, "sample_rate": 44100}', "relative"),
])
def test_bad_manifest_lines(tmp_path, line, words):
    (tmp_path / "manifest.jsonl").write_text(line + "\n")
    with pytest.raises(ConfigError, match=words) as e:
        load_manifest(tmp_path)
    assert "manifest.jsonl:1:" in str(e.value)


def test_missing_manifest_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="no manifest"):
        load_manifest(tmp_path)
    with pytest.raises(ConfigError, match="no such dataset folder"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown split"):
        load_manifest(tmp_path, split="test")


def test_unfinished_build_leaves_no_manifest(tmp_path):
    w = DatasetWriter(tmp_path / "ds")
    w.add("a", _clip(), {"label": "x", "group": "g", "split": "train"})
    assert (tmp_path / "ds" / "audio" / "a.wav").is_file()
    with pytest.raises(ConfigError):
        load_manifest(tmp_path / "ds")


def test_existing_dataset_needs_force(tmp_path):
    w = DatasetWriter(tmp_path / "ds")
    w.add("old", _clip(), {"label": "x", "group": "g", "split": "train"})
    w.finish(valid_groups=[], settings={})
    with pytest.raises(SonolatentError, match="--force"):
        DatasetWriter(tmp_path / "ds")
    w2 = DatasetWriter(tmp_path / "ds", force=True)
    assert not (tmp_path / "ds" / "manifest.jsonl").exists()  # removed before any new audio is written
    w2.add("new", _clip(), {"label": "x", "group": "g", "split": "train"})
    w2.finish(valid_groups=[], settings={})
    assert [e["path"] for e in load_manifest(tmp_path / "ds")] == ["audio/new.wav"]
    assert sorted(p.name for p in (tmp_path / "ds" / "audio").iterdir()) == ["new.wav"]  # stale audio removed


def test_out_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SonolatentError, match="--out"):
        DatasetWriter(tmp_path / "file")
    with pytest.raises(SonolatentError, match="cannot create"):
        DatasetWriter(tmp_path / "file" / "sub")


def test_choose_valid():
    keys = [f"g{i}" for i in range(20)]
    v = choose_valid(keys, fraction=0.1, seed=3)
    assert len(v) == 2 and v <= set(keys)
    assert choose_valid(reversed(keys), fraction=0.1, seed=3) == v  # order of input does not matter
    assert len(choose_valid(["a", "b"], fraction=0.01, seed=0)) == 1  # at least one...
    assert len(choose_valid(["a", "b"], fraction=0.9, seed=0)) == 1  # ...never all
    assert choose_valid(["a"], fraction=0.5, seed=0) == set()
    assert choose_valid(keys, fraction=0.0, seed=0) == set()
    with pytest.raises(SonolatentError, match="valid-fraction"):
        choose_valid(keys, fraction=1.0, seed=0)
