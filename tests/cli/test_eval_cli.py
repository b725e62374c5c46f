"""``eval`` on a dataset folder: figures per source and per kind, and the ViSQOL score."""

import json

import numpy as np
import soundfile as sf

from sonolatent.cli.main import main
from sonolatent.datasets.manifest import DatasetWriter
from ..conftest import tone


def _dataset(root):
    w = DatasetWriter(root)
    rng = np.random.default_rng(0)
    for i in range(2):
        w.add(f"speech{i}", tone(300 + 50 * i, 0.5), {"label": "speech/a", "group": "a", "split": "valid",
                                                      "kind": "speech"})
    w.add("rain", (0.2 * rng.standard_normal(22050)).astype(np.float32),
          {"label": "ambience/b", "group": "b", "split": "valid", "kind": "ambience"})
    w.add("trained", tone(500, 0.5), {"label": "speech/a", "group": "a", "split": "train", "kind": "speech"})
    w.finish(valid_groups=["a", "b"], settings={"source": "test"})
    return root


def test_eval_of_a_dataset_folder_reports_per_source_and_kind(tiny_bundle_dir, tmp_path, capsys):
    root = _dataset(tmp_path / "ds")
    js = tmp_path / "e.json"
    assert main(["eval", str(root), "--split", "valid", "--checkpoint", str(tiny_bundle_dir), "--json", str(js),
                 "--gl-iters", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained" not in out                      # --split valid leaves the train file out
    doc = json.loads(js.read_text())
    assert doc["summary"]["files"] == 3
    assert set(doc["by"]["source"]) == {"a", "b"} and set(doc["by"]["kind"]) == {"speech", "ambience"}
    assert doc["by"]["source"]["a"]["files"] == 2 and doc["by"]["kind"]["ambience"]["files"] == 1
    per_file = {f["file"].rsplit("/", 1)[-1]: f for f in doc["files"]}
    a_mean = np.mean([per_file[f"speech{i}.wav"]["logmel"]["griffinlim"] for i in range(2)])
    assert abs(doc["by"]["source"]["a"]["logmel"]["griffinlim"] - a_mean) < 1e-3
    assert "ambience" in out and "speech" in out


def test_eval_limit_shares_files_among_sources(tiny_bundle_dir, tmp_path):
    root = _dataset(tmp_path / "ds")
    js = tmp_path / "e.json"
    assert main(["eval", str(root), "--split", "valid", "--limit", "2", "--checkpoint", str(tiny_bundle_dir),
                 "--json", str(js), "--gl-iters", "2"]) == 0
    assert set(json.loads(js.read_text())["by"]["source"]) == {"a", "b"}   # one of each, not two of a


def test_visqol_scores_a_faithful_copy_above_a_damaged_one():
    from sonolatent.evaluation import Visqol

    sr = 44100
    x = tone(330, 1.5, decay=0.5) + 0.3 * tone(990, 1.5, decay=1.0)
    rng = np.random.default_rng(1)
    damaged = x + 0.05 * rng.standard_normal(len(x)).astype(np.float32)
    v = Visqol()
    good, bad = v(x, x, sr), v(x, damaged, sr)
    assert 1.0 <= bad < good <= 5.0
    assert v(x[: sr // 2], x[: sr // 2], sr) is None    # too short to score
