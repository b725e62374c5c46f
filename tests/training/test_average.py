"""scripts/average_checkpoints.py: the mean of a run's exports, written as a strict checkpoint."""

import subprocess
import sys
from pathlib import Path

import torch

from sonolatent.models.checkpoint import load_checkpoint

from ..conftest import make_tiny_bundle

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "average_checkpoints.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_the_mean_of_two_vocoder_exports(tmp_path):
    run = tmp_path / "run"
    for i, seed in enumerate((1, 2)):
        b = make_tiny_bundle(tmp_path / f"b{seed}", seed=seed)
        (run / "exports").mkdir(parents=True, exist_ok=True)
        (b / "vocoder").rename(run / "exports" / f"step-{1000 * (i + 1):07d}")
    r = _run(tmp_path / "avg", "--run", run)
    assert r.returncode == 0, r.stderr
    (a, _), (b, _) = (load_checkpoint(run / "exports" / f"step-{n:07d}") for n in (1000, 2000))
    avg, meta = load_checkpoint(tmp_path / "avg")
    for k, v in avg.state_dict().items():
        want = (a.state_dict()[k].float() + b.state_dict()[k].float()) / 2
        assert torch.allclose(v.float(), want, atol=1e-2 * (want.abs().max().item() + 1e-3)), k
    assert len(meta["provenance"]["averaged"]["exports"]) == 2
    r = _run(tmp_path / "avg2", "--run", run, "--from-step", "2000")   # only the later export
    assert r.returncode == 0
    only, _ = load_checkpoint(tmp_path / "avg2")
    assert all(torch.equal(only.state_dict()[k], b.state_dict()[k]) for k in only.state_dict())


def test_mixed_kinds_or_nothing_is_one_line(tmp_path):
    b = make_tiny_bundle(tmp_path / "b")
    r = _run(tmp_path / "avg", b / "vae", b / "vocoder")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "another kind" in r.stderr
    r = _run(tmp_path / "avg", "--run", tmp_path / "nothing")
    assert r.returncode == 2 and "no exports" in r.stderr
    r = _run(tmp_path / "avg", b / "vae")
    assert r.returncode == 2 and "--data" in r.stderr
