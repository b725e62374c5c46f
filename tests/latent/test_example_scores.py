"""The example scores shipped in patches/scores parse, name existing samples, and render."""

from pathlib import Path

import numpy as np

from sonolatent.latent import parse_score
from sonolatent.models import load_bundle
from sonolatent.render import render_score

SCORES = Path(__file__).resolve().parents[2] / "patches" / "scores"


def test_example_scores(tiny_bundle_dir):
    files = sorted(SCORES.glob("*.toml"))
    assert len(files) >= 2
    bundle = load_bundle(tiny_bundle_dir)
    for f in files:
        s = parse_score(f)
        assert len(s.sources) >= 2 and len(s.keys) >= 2
        assert all(src.file.is_file() and src.file.parent.name == "samples" for src in s.sources)
        w = s.weights_at(np.linspace(0, s.duration, 50))
        np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-9)
    shortest = min((parse_score(f) for f in files), key=lambda s: s.duration)
    r = render_score(bundle, shortest)
    assert len(r.audio) == round(r.duration * 44100 / 512) * 512
    assert 0.8 < float(np.abs(r.audio).max()) < 0.9
