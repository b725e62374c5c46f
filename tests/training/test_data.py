"""ClipBank: the mix of crops across dataset folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sonolatent.errors import SonolatentError
from sonolatent.training.data import ClipBank

from ..conftest import tone


def _folder(root, name, n, freq):
    (root / name / "audio").mkdir(parents=True)
    lines = []
    for k in range(n):
        rel = f"audio/{name}{k}.wav"
        sf.write(root / name / rel, tone(freq, 0.3), 44100, subtype="PCM_16")
        lines.append(json.dumps({"path": rel, "label": name, "group": name, "split": "train",
                                  "duration": 0.3, "sample_rate": 44100}))
    (root / name / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / name


def _share_of_first(bank, n=4000):
    rng = np.random.default_rng(0)
    first = {k for k, label in enumerate(bank.labels) if label == "big"}
    return np.mean([bank.pick(rng) in first for _ in range(n)])


def test_mix_sets_each_folders_share_of_crops(tmp_path):
    big, small = _folder(tmp_path, "big", 12, 220.0), _folder(tmp_path, "small", 2, 880.0)
    by_count = ClipBank([big, small], "train", 44100, progress=False)
    assert _share_of_first(by_count) == pytest.approx(12 / 14, abs=0.03)
    even = ClipBank([big, small], "train", 44100, progress=False, mix=[1, 1])
    assert _share_of_first(even) == pytest.approx(0.5, abs=0.03)
    skewed = ClipBank([big, small], "train", 44100, progress=False, mix=[0.2, 0.8])
    assert _share_of_first(skewed) == pytest.approx(0.2, abs=0.03)


def test_a_mix_that_does_not_fit_the_folders_is_one_line(tmp_path):
    big = _folder(tmp_path, "big", 2, 220.0)
    for bad in ([1, 1], [-1], [0]):
        with pytest.raises(SonolatentError, match="--mix"):
            ClipBank([big], "train", 44100, progress=False, mix=bad)
