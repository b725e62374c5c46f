"""Short real training runs on real soundfont renders: train, resume, load."""

import json
import subprocess
import sys

import pytest

from sonolatent.cli.main import main
from sonolatent.models import load_bundle, load_checkpoint
from sonolatent.training.state import load_state


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "gm"
    rc = main(["dataset", "sf2", "--out", str(out), "--programs", "0,40,73", "--pitches", "60",
               "--velocities", "100", "--durations", "0.5", "--valid-programs", "73", "--quiet"])
    assert rc == 0
    return out


TINY_VAE = ["--channels", "32", "--dec-layers", "2", "--enc-blocks", "1", "--latent-dim", "8",
            "--batch-size", "2", "--frames", "32"]
TINY_VOC = ["--dim", "32", "--layers", "2", "--batch-size", "2", "--segment", "8192"]


def test_train_vae_resume_and_load(dataset, tmp_path):
    out, run = tmp_path / "ck" / "vae", tmp_path / "run"
    base = ["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
            "--valid-every", "5", "--save-every", "5", "--seed", "3"]
    assert main(base + TINY_VAE + ["--max-steps", "6"]) == 0
    model, meta = load_checkpoint(out, "vae")
    assert meta["provenance"]["steps"] == 6 and meta["provenance"]["data"] == [str(dataset)]
    assert float(model.pca_std[0]) >= float(model.pca_std[-1]) > 0  # PCA fitted and ordered
    assert main(base + ["--resume", "--max-steps", "9"]) == 0
    _, meta = load_checkpoint(out, "vae")
    assert meta["provenance"]["steps"] == 9
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["start"] for r in log if "start" in r] == [0, 6]
    assert log[-1]["final"] and log[-1]["step"] == 9 and "mel_l1" in log[-1]["valid"]


def test_train_vocoder_with_adversarial_stage_and_resume(dataset, tmp_path):
    out, run = tmp_path / "ck" / "vocoder", tmp_path / "run"
    base = ["train", "vocoder", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
            "--valid-every", "100", "--save-every", "100"]
    assert main(base + TINY_VOC + ["--max-steps", "3"]) == 0
    # the adversarial stage is optional and can be switched on when resuming
    assert main(base + ["--resume", "--adversarial", "--max-steps", "5"]) == 0
    voc, meta = load_checkpoint(out, "vocoder")
    assert meta["provenance"]["steps"] == 5 and meta["provenance"]["train"]["adversarial"]
    import torch
    from sonolatent.models.vocoder import Vocoder
    m = Vocoder(voc.mel_config, voc.config)
    d = __import__("sonolatent.training.losses", fromlist=["x"]).MultiResolutionDiscriminator()
    info = load_state(run / "state", {"model": m, "disc": d}, {})
    assert info["step"] == 5
    assert torch.equal(m.embed.weight, voc.embed.weight)


def test_time_budget_stops_and_saves(dataset, tmp_path):
    out = tmp_path / "v"
    assert main(["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(tmp_path / "r"),
                 "--no-progress", "--max-minutes", "0.05"] + TINY_VAE) == 0
    load_checkpoint(out, "vae")


def test_bad_data_folder_is_one_line(tmp_path, capsys):
    assert main(["train", "vae", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a dataset folder" in err and len(err.splitlines()) == 1


def test_ddp_two_ranks_end_identical(dataset, tmp_path):
    """torchrun, 2 processes, gloo on CPU: both ranks end with identical weights."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sonolatent", "train", "vae", "--data", str(dataset), "--out", str(tmp_path / "ck"),
           "--run-dir", str(run), "--no-progress", "--max-steps", "4", "--threads", "1",
           "--valid-every", "100", "--save-every", "100"] + TINY_VAE
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    from safetensors.torch import load_file
    a, b = load_file(str(run / "rank0.safetensors")), load_file(str(run / "rank1.safetensors"))
    assert a.keys() == b.keys()
    import torch
    trained = [k for k in a if not k.startswith("pca_")]  # PCA is fitted by rank 0 at export
    assert len(trained) > 10
    for k in trained:
        assert torch.equal(a[k], b[k]), k
    _, meta = load_checkpoint(tmp_path / "ck", "vae")
    assert meta["provenance"]["world_size"] == 2 and meta["provenance"]["steps"] == 4


def test_sigterm_saves_state_and_exports(dataset, tmp_path):
    """Stopping a run (SIGTERM, as Ctrl-C) finishes the step, saves the state and a loadable checkpoint."""
    import signal
    import time
    out, run = tmp_path / "ck", tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sonolatent", "train", "vae", "--data", str(dataset),
                             "--out", str(out), "--run-dir", str(run), "--no-progress", "--threads", "1",
                             "--valid-every", "1000000", "--save-every", "1000000"] + TINY_VAE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "log.jsonl").exists() and time.monotonic() < deadline:  # the loop has started
        time.sleep(0.2)
    time.sleep(2.0)  # let it train a little
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-1500:]
    assert "stopped on request" in stdout and "Traceback" not in stderr
    info = json.loads((run / "state" / "state.json").read_text())["info"]
    assert info["step"] > 0
    _, meta = load_checkpoint(out, "vae")
    assert meta["provenance"]["steps"] == info["step"]
