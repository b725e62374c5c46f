"""Short real training runs on real soundfont renders: train, resume, load."""

import json
import subprocess
import sys

import pytest
import torch

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
    png = (run / "valid.png").read_bytes()  # a picture of the last validation
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_train_vae_with_finer_latent_frames(dataset, tmp_path):
    """``--downsample 2``: a latent frame every 2 mel frames (43 per second)."""
    out = tmp_path / "ck" / "vae"
    assert main(["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(tmp_path / "run"),
                 "--no-progress", "--downsample", "2", "--max-steps", "2"] + TINY_VAE) == 0
    model, _ = load_checkpoint(out, "vae")
    assert model.config.downsample == 2 and round(model.latent_rate, 1) == 43.1
    import torch
    assert model.encode(torch.zeros(1, 100, 20) - 5).shape == (1, 8, 10)


def test_train_vae_with_a_linear_path_fits_it_first_and_not_again_on_resume(dataset, tmp_path, capsys):
    """``--linear-path``: the per-frame linear paths start as a PCA of the training frames (fitted at
    the first step, said once); a resumed run keeps the trained ones. ``--mag-weight`` adds the
    magnitude term."""
    out, run = tmp_path / "ck" / "vae", tmp_path / "run"
    base = ["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
            "--downsample", "1", "--linear-path", "--mag-weight", "0.1", "--valid-every", "2"] + TINY_VAE
    assert main(base + ["--max-steps", "2"]) == 0
    assert capsys.readouterr().out.count("linear path fitted to a PCA") == 1
    rec = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"train"' in line][0]
    assert rec["train"]["mag"] > 0 and rec["valid"]["mag"] > 0   # the magnitude term, trained and measured
    model, _ = load_checkpoint(out, "vae")
    assert model.config.linear_path and model.linear_path_fitted
    assert model.dec_lin.weight.dtype == torch.float32
    assert main(base + ["--resume", "--max-steps", "3"]) == 0
    assert "linear path fitted" not in capsys.readouterr().out
    again, _ = load_checkpoint(out, "vae")
    assert not torch.equal(again.enc_lin.weight, model.enc_lin.weight)   # trained on, not fitted again
    assert main(["train", "vae", "--data", str(dataset), "--out", str(tmp_path / "x"), "--run-dir",
                 str(tmp_path / "r2"), "--no-progress", "--linear-path", "--max-steps", "1"] + TINY_VAE) == 2
    assert "linear_path needs downsample 1" in capsys.readouterr().err


def test_train_vocoder_with_adversarial_stage_and_resume(dataset, tmp_path):
    out, run = tmp_path / "ck" / "vocoder", tmp_path / "run"
    base = ["train", "vocoder", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
            "--valid-every", "100", "--save-every", "100"]
    assert main(base + TINY_VOC + ["--max-steps", "3"]) == 0
    # the adversarial stage is optional and can be switched on when resuming
    assert main(base + ["--resume", "--adversarial", "--max-steps", "5"]) == 0
    voc, meta = load_checkpoint(out, "vocoder")
    assert meta["provenance"]["steps"] == 5 and meta["provenance"]["train"]["adversarial"]
    assert (run / "valid.png").stat().st_size > 5000
    import torch
    from sonolatent.models.vocoder import Vocoder
    m = Vocoder(voc.mel_config, voc.config)
    d = __import__("sonolatent.training.losses", fromlist=["x"]).MultiResolutionDiscriminator()
    info = load_state(run / "state", {"model": m, "disc": d}, {})
    assert info["step"] == 5
    # the run keeps float32 weights; the exported checkpoint has the live path's matrices rounded to bfloat16
    assert torch.equal(m.embed.weight.to(torch.bfloat16).float(), voc.embed.weight)
    assert not torch.equal(m.embed.weight, voc.embed.weight)
    assert torch.equal(m.norm_in.weight, voc.norm_in.weight) and torch.equal(m.head.bias, voc.head.bias)


def test_vocoder_learns_from_a_vae_decoder_too(dataset, tmp_path, capsys):
    """``--vae``: a share of the crops is vocoded from the VAE's decoded mel; validation reports that path."""
    from sonolatent.audio.mel import MelConfig
    from sonolatent.models import MelVAE, VAEConfig, save_checkpoint
    save_checkpoint(tmp_path / "vae", MelVAE(MelConfig(), VAEConfig(channels=16, dec_layers=1, enc_blocks=0)))
    out, run = tmp_path / "voc", tmp_path / "run"
    base = ["train", "vocoder", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
            "--valid-every", "2", "--save-every", "100"] + TINY_VOC
    assert main(base + ["--vae", str(tmp_path / "vae"), "--vae-share", "1", "--max-steps", "2"]) == 0
    _, meta = load_checkpoint(out, "vocoder")
    assert meta["provenance"]["train"]["vae"] == str(tmp_path / "vae")
    valid = [json.loads(x)["valid"] for x in (run / "log.jsonl").read_text().splitlines() if "valid" in x]
    assert {"mel_l1", "vae_mel_l1", "vae_stft"} <= set(valid[-1])
    assert valid[-1]["vae_mel_l1"] != valid[-1]["mel_l1"]
    assert main(base[:-len(TINY_VOC)] + ["--resume", "--max-steps", "3"]) == 0   # the VAE comes back on resume
    valid = [json.loads(x)["valid"] for x in (run / "log.jsonl").read_text().splitlines() if "valid" in x]
    assert "vae_mel_l1" in valid[-1]
    capsys.readouterr()
    assert main(base + ["--run-dir", str(tmp_path / "r2"), "--vae", str(tmp_path / "vae"), "--vae-share", "2",
                        "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "vae_share must be 0..1" in err and len(err.splitlines()) == 1, err


def test_vae_morph_term_and_vocoder_mel_prior_train(dataset, tmp_path):
    """``--interp-weight``: the VAE trains and validates the morph term (here with ``--eq-prob``: every crop
    equalised); the vocoder's mel prior
    (on by default, ``--no-mel-prior`` turns it off) is saved with it and loads back."""
    run = tmp_path / "rv"
    assert main(["train", "vae", "--data", str(dataset), "--out", str(tmp_path / "vae"), "--run-dir", str(run),
                 "--no-progress", "--valid-every", "2", "--interp-weight", "0.5", "--max-steps", "2", "--eq-prob", "1", "--eq-db", "9"] + TINY_VAE) == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    last = [r for r in log if "valid" in r][-1]
    assert last["train"]["interp"] > 0 and last["valid"]["interp"] > 0
    _, meta = load_checkpoint(tmp_path / "vae", "vae")
    assert meta["provenance"]["train"]["interp_weight"] == 0.5
    assert (meta["provenance"]["train"]["eq_prob"], meta["provenance"]["train"]["eq_db"]) == (1.0, 9.0)
    assert main(["train", "vocoder", "--data", str(dataset), "--out", str(tmp_path / "voc"), "--run-dir",
                 str(tmp_path / "rc"), "--no-progress", "--no-mel-prior", "--max-steps", "1"] + TINY_VOC) == 0
    voc, _ = load_checkpoint(tmp_path / "voc", "vocoder")
    assert not voc.config.mel_prior and not hasattr(voc, "envelope")


def test_time_budget_stops_and_saves(dataset, tmp_path):
    out = tmp_path / "v"
    assert main(["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(tmp_path / "r"),
                 "--no-progress", "--max-minutes", "0.05"] + TINY_VAE) == 0
    load_checkpoint(out, "vae")


def test_bad_data_folder_is_one_line(tmp_path, capsys):
    assert main(["train", "vae", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a dataset folder" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra,words", [
    (["--max-steps", "0"], "--max-steps 0: must be at least 1"),
    (["--max-minutes", "-1"], "--max-minutes -1: must be positive"),
    (["--batch-size", "0"], "batch_size must be positive"),
    (["--channels", "-3"], "channels must be positive"),
    (["--out", "{afile}/vae"], "is a file, not a folder"),
    (["--init", "{tmp}/nothing"], "checkpoint folder not found"),
    (["--resume"], "run.json: unreadable"),
    (["--mix", "1,1"], "--mix 1,1: 1 non-negative shares wanted"),
    (["--mix", "x"], "--mix x: comma-separated numbers wanted"),
])
def test_bad_options_are_one_line_and_create_nothing(dataset, tmp_path, capsys, extra, words):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text('{"mel": ')
    extra = [a.replace("{afile}", str(tmp_path / "afile")).replace("{tmp}", str(tmp_path)) for a in extra]
    run = tmp_path / ("broken" if "--resume" in extra else "run")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "vae", "--data", str(dataset), "--out", str(tmp_path / "ck" / "vae"), "--run-dir", str(run),
                 "--no-progress", "--max-steps", "1"] + TINY_VAE + extra) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_init_grows_an_older_model_and_refuses_a_different_one(dataset, tmp_path, capsys):
    """``--init`` from a VAE without the decoder norm: the shared weights carry over, the norms
    start fresh (and say so); a checkpoint of another shape is a one-line error."""
    import torch
    from sonolatent.audio.mel import MelConfig
    from sonolatent.models import MelVAE, VAEConfig, save_checkpoint
    old = MelVAE(MelConfig(), VAEConfig(channels=32, dec_layers=2, enc_blocks=1, latent_dim=8, dec_norm=False))
    save_checkpoint(tmp_path / "old", old)
    out = tmp_path / "grown"
    base = ["train", "vae", "--data", str(dataset), "--out", str(out), "--no-progress", "--lr", "1e-9"]
    assert main(base + ["--run-dir", str(tmp_path / "r1"), "--init", str(tmp_path / "old"), "--max-steps", "1"]
                + TINY_VAE) == 0
    assert "6 tensors are new in this model and start fresh" in capsys.readouterr().out
    grown, meta = load_checkpoint(out, "vae")
    assert meta["model"]["dec_norm"] is True
    assert torch.allclose(grown.encoder[0].weight, old.encoder[0].weight, atol=1e-6)   # carried over
    _, old_meta = load_checkpoint(tmp_path / "old", "vae")
    init = {"from": str(tmp_path / "old"), "steps": old_meta["provenance"].get("steps"),
            "sha256": old_meta["provenance"]["sha256"]}
    assert meta["provenance"]["init"] == init                  # where the weights came from, kept on resume
    assert main(base + ["--run-dir", str(tmp_path / "r1"), "--resume", "--max-steps", "2"] + TINY_VAE) == 0
    assert load_checkpoint(out, "vae")[1]["provenance"]["init"] == init
    wide = MelVAE(MelConfig(), VAEConfig(channels=48, dec_layers=2, enc_blocks=1, latent_dim=8))
    save_checkpoint(tmp_path / "wide", wide)
    assert main(base + ["--run-dir", str(tmp_path / "r2"), "--init", str(tmp_path / "wide"), "--max-steps", "1"]
                + TINY_VAE) == 2
    err = capsys.readouterr().err.strip()
    assert "its weights do not fit this model" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r2").exists()


def test_a_corrupted_training_state_is_one_line(tmp_path):
    from sonolatent.errors import CheckpointError
    from sonolatent.training.state import save_state
    import torch
    m = torch.nn.Linear(2, 2)
    save_state(tmp_path / "state", {"model": m}, {"opt": torch.optim.SGD(m.parameters(), lr=0.1)}, {"step": 3})
    assert load_state(tmp_path / "state", {"model": m}, {})["step"] == 3
    w = tmp_path / "state" / "state.safetensors"
    w.write_bytes(w.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="state.safetensors: unreadable training state"):
        load_state(tmp_path / "state", {"model": m}, {})
    (tmp_path / "state" / "state.json").write_text("[]")
    save_state(tmp_path / "state", {"model": m}, {}, {"step": 4})   # a fresh save repairs it
    assert load_state(tmp_path / "state", {"model": m}, {})["step"] == 4
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["state.json", "state.safetensors"]


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
    """Stopping a run (SIGTERM, as Ctrl-C) finishes the step, saves the state and a loadable checkpoint,
    and exits 128 + the signal, so that a script (or the recipe) running it stops there too."""
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
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-1500:]
    assert "stopped on request" in stdout and "Traceback" not in stderr
    info = json.loads((run / "state" / "state.json").read_text())["info"]
    assert info["step"] > 0
    _, meta = load_checkpoint(out, "vae")
    assert meta["provenance"]["steps"] == info["step"]


def test_vocoder_layout_options_train_and_load_back(dataset, tmp_path, capsys):
    """A layout other than the default (one 2048-point inverse STFT per mel frame, as the long-window
    bundle's vocoder; the sharpened prior)
    and loss weights come from the command line; a layout the model refuses is one line, nothing made."""
    assert main(["train", "vocoder", "--data", str(dataset), "--out", str(tmp_path / "voc"), "--run-dir",
                 str(tmp_path / "r"), "--no-progress", "--max-steps", "1", "--istft-n-fft", "2048",
                 "--upsample", "1", "--prior-iters", "2", "--stft-weight", "2", "--mel-weight", "0.5"]
                + TINY_VOC) == 0
    voc, meta = load_checkpoint(tmp_path / "voc", "vocoder")
    c = voc.config
    assert (c.n_layers, c.istft_n_fft, c.upsample, c.prior_iters) == (2, 2048, 1, 2) and voc.delay == 1024
    assert meta["provenance"]["train"]["stft_weight"] == 2 and meta["provenance"]["train"]["mel_weight"] == 0.5
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "vocoder", "--data", str(dataset), "--out", str(tmp_path / "v2"), "--run-dir",
                 str(tmp_path / "r2"), "--no-progress", "--max-steps", "1", "--prior-iters", "3", "--no-mel-prior"] + TINY_VOC) == 2
    err = capsys.readouterr().err.strip()
    assert "prior_iters needs mel_prior" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_carried_phase_grows_onto_a_vocoder_trained_without_it(dataset, tmp_path, capsys):
    """``--init`` from a vocoder without the carried phase: its weights load, the gate starts fresh (half open),
    and the export records the new layout."""
    base = ["train", "vocoder", "--data", str(dataset), "--no-progress", "--max-steps", "1"] + TINY_VOC
    assert main(base + ["--out", str(tmp_path / "a"), "--run-dir", str(tmp_path / "ra")]) == 0
    old, _ = load_checkpoint(tmp_path / "a", "vocoder")
    assert not old.config.phase_carry
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "b"), "--run-dir", str(tmp_path / "rb"), "--init",
                        str(tmp_path / "a"), "--phase-carry"]) == 0
    assert "2 tensors are new in this model" in capsys.readouterr().out
    new, meta = load_checkpoint(tmp_path / "b", "vocoder")
    assert new.config.phase_carry and meta["provenance"]["init"]["from"] == str(tmp_path / "a")
    assert abs(float(new.carry.bias.detach().mean()) - new.GATE_START) < 0.01   # one step from the open start
    assert (new.embed.weight - old.embed.weight).abs().max() < 0.05   # AdamW moves each weight by about lr


def test_one_latent_dimension_trains_exports_and_loads(dataset, tmp_path):
    """``--latent-dim 1`` (allowed by the help): the export's PCA of one coordinate used to fail in eigh."""
    out = tmp_path / "ck" / "vae"
    small = [a if a != "8" else "1" for a in TINY_VAE]
    assert main(["train", "vae", "--data", str(dataset), "--out", str(out), "--run-dir", str(tmp_path / "run"),
                 "--no-progress", "--max-steps", "1"] + small) == 0
    model, _ = load_checkpoint(out, "vae")
    assert model.latent_dim == 1 and model.pca_std.shape == (1,) and float(model.pca_std[0]) > 0


def test_a_clip_too_short_for_the_models_is_refused_before_training(dataset, tmp_path, capsys):
    """A one-sample clip (a hand-made manifest; ``dataset folder`` refuses it) with ``--channels 1`` used to
    train and then fail in a norm layer at the export: now one line, before anything is created."""
    import shutil

    import numpy as np
    import soundfile as sf

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    sf.write(str(data / "audio" / "one.wav"), np.array([0.5], np.float32), 44100)
    with open(data / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"path": "audio/one.wav", "label": "x", "group": "x", "split": "train",
                            "duration": 1 / 44100, "sample_rate": 44100}) + "\n")
    capsys.readouterr()
    out, run = tmp_path / "ck" / "vae", tmp_path / "run"
    assert main(["train", "vae", "--data", str(data), "--out", str(out), "--run-dir", str(run), "--no-progress",
                 "--max-steps", "1", "--channels", "1", "--batch-size", "2", "--frames", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "one.wav: too short" in err, err
    assert not out.exists() and not run.exists()


def test_the_held_frame_term_trains_and_is_validated(dataset, tmp_path, capsys):
    out, run = tmp_path / "ck" / "vocoder", tmp_path / "run"
    assert main(["train", "vocoder", "--data", str(dataset), "--out", str(out), "--run-dir", str(run), "--no-progress",
                 "--valid-every", "2", "--save-every", "100", "--max-steps", "2", "--frozen-weight", "1"] + TINY_VOC) == 0
    assert "frozen" in capsys.readouterr().out
    _, meta = load_checkpoint(out, "vocoder")
    assert meta["provenance"]["train"]["frozen_weight"] == 1.0


def test_the_held_frame_error_is_the_log_mel_distance_of_a_held_frame():
    import torch

    from sonolatent.audio.mel import MelConfig
    from sonolatent.models import Vocoder, VocoderConfig
    from sonolatent.training.tasks import VocoderTask
    torch.manual_seed(0)
    voc = Vocoder(MelConfig(), VocoderConfig(dim=32, n_layers=2))
    task = VocoderTask.__new__(VocoderTask)   # only the mel front end is needed
    from sonolatent.audio.mel import MelSpectrogram
    task.melspec, task.model = MelSpectrogram(MelConfig()), voc
    mel = torch.randn(2, 100, 40) - 4.0
    held = mel[:, :, 20:21].expand(-1, -1, 40)
    with torch.no_grad():
        err = task.frozen_error(mel)
        got = task.melspec(voc(held))
    want = (got[..., 5:35] - held[..., 5:35]).abs().mean()
    assert float(err) == pytest.approx(float(want), rel=1e-5)
