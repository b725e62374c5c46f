"""reconstruct and eval on real files with a real (tiny) checkpoint; the CLI's help and errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sonolatent.cli.main import COMMANDS, main

from ..conftest import tone


@pytest.fixture
def sounds(tmp_path):
    d = tmp_path / "sounds"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", tone(440, 0.6), 44100)
    sf.write(d / "sub" / "b.flac", tone(220, 0.5, sr=48000), 48000)
    return d


@pytest.mark.parametrize("extra", [[], ["--vocoder-only"], ["--sr", "22050", "--format", "24"]])
def test_reconstruct_writes_a_file_of_the_right_length(tiny_bundle_dir, sounds, tmp_path, extra):
    out = tmp_path / "out.wav"
    assert main(["reconstruct", str(sounds / "a.wav"), "-o", str(out), "--checkpoint", str(tiny_bundle_dir)] + extra) == 0
    y, sr = sf.read(out)
    want_sr = 22050 if "--sr" in extra else 44100
    assert sr == want_sr and abs(len(y) - 0.6 * want_sr) <= 2 and np.isfinite(y).all()


def test_reconstruct_draws_the_original_beside_the_output(tiny_bundle_dir, sounds, tmp_path):
    out, png = tmp_path / "out.wav", tmp_path / "out.png"
    assert main(["reconstruct", str(sounds / "sub" / "b.flac"), "-o", str(out), "--plot", str(png),
                 "--checkpoint", str(tiny_bundle_dir)]) == 0
    from PIL import Image
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 500
        assert len(np.unique(np.asarray(im.convert("L")))) > 50   # spectrograms, not a blank canvas
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["out.png", "out.wav"]   # no temporaries


def test_eval_prints_a_table_and_writes_json(tiny_bundle_dir, sounds, tmp_path, capsys):
    js = tmp_path / "e.json"
    assert main(["eval", str(sounds), "--checkpoint", str(tiny_bundle_dir), "--json", str(js), "--gl-iters", "4"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "griffinlim" in out and "a.wav" in out and "b.flac" in out
    doc = json.loads(js.read_text())
    assert doc["summary"]["files"] == 2
    for key in ("logmel", "stft", "speed_x_realtime"):
        assert set(doc["summary"][key]) == {"vocoder", "model", "griffinlim"}
        assert all(v > 0 for v in doc["summary"][key].values())


def test_eval_skips_a_file_it_cannot_read_and_says_so(tiny_bundle_dir, sounds, tmp_path, capsys):
    """One unreadable or too-short file in a folder is named and skipped; the rest is evaluated."""
    sf.write(sounds / "click.wav", tone(440, 0.03), 44100)
    (sounds / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    js = tmp_path / "e.json"
    assert main(["eval", str(sounds), "--checkpoint", str(tiny_bundle_dir), "--json", str(js), "--gl-iters", "2"]) == 0
    cap = capsys.readouterr()
    skipped = [line for line in cap.err.splitlines() if line.startswith("sonolatent: skipped")]
    assert len(skipped) == 2 and any("click.wav: too short (30.0 ms" in line for line in skipped), cap.err
    assert "mean of 2 (2 skipped)" in cap.out
    doc = json.loads(js.read_text())
    assert doc["summary"]["files"] == 2 and doc["summary"]["skipped"] == 2
    assert sorted(os.path.basename(s["file"]) for s in doc["skipped"]) == ["broken.wav", "click.wav"]
    assert all(s["reason"] and not s["reason"].startswith(s["file"]) for s in doc["skipped"])


def test_eval_of_a_folder_with_nothing_readable_is_one_line(tiny_bundle_dir, tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    sf.write(d / "click.wav", tone(440, 0.03), 44100)
    assert main(["eval", str(d), "--checkpoint", str(tiny_bundle_dir)]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 sound files could be evaluated" in err


def test_griffin_lim_beats_an_untrained_vocoder(tiny_bundle_dir, sounds):
    """Sanity of the metric: a random-weight vocoder must lose to the baseline."""
    from sonolatent.evaluation import evaluate_file
    from sonolatent.models import load_bundle
    r = evaluate_file(load_bundle(tiny_bundle_dir), sounds / "a.wav", 16)
    assert r.logmel["griffinlim"] < r.logmel["vocoder"]


@pytest.mark.parametrize("argv,words", [
    (["reconstruct", "missing.wav", "-o", "o.wav"], "no such file"),
    (["reconstruct", "{garbage}", "-o", "o.wav"], "not a readable sound file"),
    (["reconstruct", "{wav}", "-o", "o.wav", "--checkpoint", "{empty}"], "checkpoint folder not found"),
    (["reconstruct", "{wav}", "-o", "nodir/o.wav"], "does not exist"),
    (["eval", "{empty}"], "no sound files"),
    (["eval", "nowhere"], "not a folder"),
    (["reconstruct", "{wav}", "-o", "{afile}/o.wav"], "is a file, not a folder"),
    (["reconstruct", "{wav}", "-o", "{wav}"], "is also an input file"),
    (["reconstruct", "{wav}", "-o", "o.wav", "--plot", "o.jpg"], "--plot"),
    (["reconstruct", "{wav}", "-o", "o.wav", "--plot", "nodir/o.png"], "does not exist"),
    (["eval", "{sounds}", "--json", "{afile}/e.json"], "is a file, not a folder"),
    (["eval", "{sounds}", "--limit", "-1"], "--limit -1: must be at least 1"),
    (["eval", "{sounds}", "--threads", "0"], "--threads 0: must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, sounds, tiny_bundle_dir, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    garbage = tmp_path / "g.wav"
    garbage.write_bytes(b"RIFF\x00\x00garbage" * 20)
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "afile").write_text("x")
    subs = {"{garbage}": str(garbage), "{wav}": str(sounds / "a.wav"), "{empty}": str(tmp_path / "emptydir"),
            "{sounds}": str(sounds), "{afile}": str(tmp_path / "afile")}
    for key, value in subs.items():
        argv = [a.replace(key, value) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    if "--checkpoint" not in argv and argv[0] == "reconstruct" and "{empty}" not in argv:
        argv += ["--checkpoint", str(tiny_bundle_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing written, no temporary files


def test_help_reads_well_for_every_command():
    env = {**os.environ, "COLUMNS": "80"}
    r = subprocess.run([sys.executable, "-m", "sonolatent", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0
    for name, _, helptext in COMMANDS:
        assert name in r.stdout
    for name, _, _ in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "sonolatent", name, "--help"], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0, (name, r.stderr)
        assert "usage: sonolatent " + name in r.stdout and len(r.stdout) > 200, name
        # the description (between the usage and the arguments) is wrapped to the terminal
        description = r.stdout.split("\n\n", 1)[1].split("arguments:", 1)[0].split("options:", 1)[0]
        assert max(map(len, description.splitlines())) <= 78, (name, description)


@pytest.mark.parametrize("status,expect", [(130, 130), (143, 143), (2, 2)])
def test_recipe_stops_at_the_first_step_that_fails_or_is_interrupted(tmp_path, monkeypatch, capsys, status, expect):
    """A step stopped by Ctrl-C/SIGTERM (it saved its state) stops the recipe with that status, so the
    shell sees the interruption; a failed step is one line naming it. No later step runs."""
    import sonolatent.cli.main as cli_main
    calls = []

    def step(argv):
        calls.append(argv[:2])
        return status
    monkeypatch.setattr(cli_main, "main", step)
    rc = main(["recipe", "default", "--data-dir", str(tmp_path / "d"), "--runs-dir", str(tmp_path / "r"),
               "--out", str(tmp_path / "o")])
    assert rc == expect and calls == [["dataset", "sf2"]]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("--resume" in err if status > 128 else "failed" in err), err


def test_recipe_runs_its_documented_steps_in_order(tmp_path, monkeypatch):
    """The recipe's steps, each a sonolatent command: datasets, the VAE and then its morph-term stage,
    the vocoder (from the new VAE's decoded mels too) and then its adversarial stage."""
    import sonolatent.cli.main as cli_main
    calls = []
    monkeypatch.setattr(cli_main, "main", lambda argv: calls.append(argv) or 0)
    assert main(["recipe", "default", "--data-dir", str(tmp_path / "d"), "--runs-dir", str(tmp_path / "r"),
                 "--out", str(tmp_path / "o"), "--minutes", "100"]) == 0
    trains = [c for c in calls if c[0] == "train"]
    assert [c[:2] for c in calls if c[0] == "dataset"][0] == ["dataset", "sf2"]
    real = [c for c in calls if c[:2] == ["dataset", "real"]]
    assert len(real) == 1 and real[0][real[0].index("--heldout") + 1] == str(tmp_path / "d" / "real-heldout")
    assert all(str(tmp_path / "d" / "real") in t for t in [c for c in calls if c[0] == "train"])
    assert [c[1] for c in trains] == ["vae", "vae", "vocoder", "vocoder"]
    for t in trains:   # one share of the crops per dataset folder
        assert len(t[t.index("--mix") + 1].split(",")) == t.count("--data")
    budgets = [float(c[c.index("--max-minutes") + 1]) for c in trains]
    assert budgets == sorted(budgets[:2]) + sorted(budgets[2:]) and budgets[1] + budgets[3] == 100
    layout = [trains[0][trains[0].index(flag) + 1] for flag in ("--downsample", "--latent-dim", "--mag-weight")]
    assert layout == ["1", "48", "0.1"] and "--linear-path" in trains[0]
    assert "--interp-weight" in trains[1] and "--resume" in trains[1]
    assert trains[2][trains[2].index("--vae") + 1] == str(tmp_path / "o" / "vae")
    assert trains[2][trains[2].index("--layers") + 1] == "4"
    assert trains[2][trains[2].index("--prior-iters") + 1] == "3" and "--phase-carry" in trains[2]
    synthesis = [trains[2][trains[2].index(flag) + 1] for flag in ("--istft-n-fft", "--upsample")]
    assert synthesis == ["1024", "2"]                  # 512 samples (11.6 ms) of model delay
    assert trains[2][trains[2].index("--frozen-weight") + 1] == "1"
    assert "--adversarial" in trains[3] and "--resume" in trains[3]


@pytest.mark.parametrize("argv", [
    ["reconstruct", "{bad}", "-o", "o.wav"],
    ["morph", "{wav}", "{bad}", "-o", "o.wav"],
    ["traverse", "{bad}", "--dim", "0", "-o", "o.png"],
    ["render", "{score}", "-o", "o.wav"],
    ["eval", "{badfolder}"],
])
@pytest.mark.parametrize("bad", ["garbage", "short"])
def test_a_bad_input_is_named_before_the_model_loads(tmp_path, sounds, capsys, monkeypatch, argv, bad):
    """With a checkpoint that does not exist, the bad input file is still what the one line names: it is
    checked first, not seconds of model loading later."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "badfolder"
    d.mkdir()
    if bad == "garbage":
        (d / "b.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    else:
        sf.write(d / "b.wav", tone(440, 0.004), 44100)     # 4 ms: shorter than any command takes
    score = tmp_path / "s.toml"
    score.write_text(f'[[source]]\nname = "a"\nfile = "{sounds / "a.wav"}"\n[[source]]\nname = "b"\n'
                     f'file = "{d / "b.wav"}"\n[[key]]\ntime = 0.0\nweights = {{ a = 1.0 }}\n')
    subs = {"{bad}": str(d / "b.wav"), "{wav}": str(sounds / "a.wav"), "{score}": str(score),
            "{badfolder}": str(d)}
    argv = [subs.get(a, a) for a in argv] + ["--checkpoint", str(tmp_path / "no-such-checkpoint")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "b.wav" in "\n".join(err) and "checkpoint" not in err[-1], err
    assert ("not a readable sound file" if bad == "garbage" else "too short") in "\n".join(err)


def test_map_skips_a_bad_file_with_a_warning_and_counts_it(tiny_bundle_dir, sounds, tmp_path, capsys):
    sf.write(sounds / "c.wav", tone(660, 0.4), 44100)
    (sounds / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)        # the header says so
    sf.write(sounds / "sub" / "quiet.wav", np.zeros(22050, np.float32), 44100)   # only decoding says so
    out = tmp_path / "map.png"
    assert main(["map", str(sounds), "-o", str(out), "--checkpoint", str(tiny_bundle_dir)]) == 0
    cap = capsys.readouterr()
    warned = [x for x in cap.err.splitlines() if x.startswith("sonolatent: warning: skipped")]
    assert len(warned) == 2 and "broken.wav" in warned[0] + warned[1] and "quiet.wav" in warned[0] + warned[1]
    assert "(3 sounds, 2 folders; skipped 2 unusable files)" in cap.out, cap.out
    assert out.stat().st_size > 1000


def test_the_full_model_makes_its_mel_in_chunks_with_the_same_result(tiny_bundle_dir, monkeypatch):
    """reconstruct's mel is made a few thousand frames at a time (a long file's STFT never exists whole):
    the same numbers as the one-piece mel, and the same output through the full model."""
    import torch

    from sonolatent.audio.mel import MelSpectrogram
    from sonolatent.evaluation import full_model
    from sonolatent.models import load_bundle

    bundle = load_bundle(tiny_bundle_dir)
    x = np.random.default_rng(3).standard_normal(44100 * 3).astype(np.float32) * 0.2
    ms = MelSpectrogram(bundle.mel_config)
    whole = ms(torch.from_numpy(x)[None])[0]
    pieces = ms.chunked(torch.from_numpy(x), 37)
    assert pieces.shape == whole.shape and torch.allclose(pieces, whole, atol=1e-4)
    calls = []
    stft = torch.stft
    monkeypatch.setattr(torch, "stft", lambda *a, **k: calls.append(a[0].shape[-1]) or stft(*a, **k))
    y = full_model(bundle, x, chunk_frames=64)
    c = bundle.mel_config
    assert len(calls) == -(-whole.shape[1] // 64) and max(calls) == 63 * c.hop_length + c.n_fft   # in pieces
    monkeypatch.undo()
    with torch.no_grad():
        from sonolatent.models.synth import render_frames
        from sonolatent.models.vae import latents_to_frames
        z = bundle.vae.encode(whole[None])
        ref = render_frames(bundle, latents_to_frames(z, whole.shape[1], bundle.vae.config.downsample)[0].numpy())
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-4


@pytest.mark.parametrize("extra", [[], ["--vocoder-only"], ["--sr", "22050"]])
def test_reconstruct_streams_and_writes_what_the_whole_file_path_gives(tiny_bundle_dir, tmp_path, monkeypatch, extra):
    """reconstruct reads, encodes (the encoder in chunks, its norms' statistics gathered in passes),
    decodes and writes block by block: the samples of the whole-file path (mel of all of it, one encode,
    render_frames or the vocoder on all of it, resampled whole), on a clip many chunks and read-blocks
    long, cut where nothing divides evenly."""
    import torch

    import sonolatent.audio.io as io
    import sonolatent.cli.reconstruct as rc
    from sonolatent.audio.mel import MelSpectrogram
    from sonolatent.models import load_bundle
    from sonolatent.models.synth import render_frames
    from sonolatent.models.vae import latents_to_frames

    monkeypatch.setattr(rc, "CHUNK_FRAMES", 37)
    monkeypatch.setattr(io, "READ_BLOCK", 5003)
    x = (np.random.default_rng(5).standard_normal(44100 * 2 + 123) * 0.2).astype(np.float32)
    x *= np.linspace(0.1, 1.5, len(x), dtype=np.float32)
    src, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x, 44100, subtype="FLOAT")
    assert main(["reconstruct", str(src), "-o", str(out), "--format", "float",
                 "--checkpoint", str(tiny_bundle_dir)] + extra) == 0
    y, sr = sf.read(out, dtype="float32")
    bundle = load_bundle(tiny_bundle_dir)
    with torch.no_grad():
        mel = MelSpectrogram(bundle.mel_config)(torch.from_numpy(x)[None])
        if "--vocoder-only" in extra:
            ref = bundle.vocoder(mel)[0].numpy()
        else:
            z = bundle.vae.encode(mel)
            ref = render_frames(bundle, latents_to_frames(z, mel.shape[-1], bundle.vae.config.downsample)[0].numpy())
    ref = ref[:len(x)]
    if "--sr" in extra:
        from sonolatent.audio.io import resample
        ref = resample(ref, 44100, 22050)
    assert sr == (22050 if "--sr" in extra else 44100) and y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-6, np.abs(y - ref).max()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]   # no temporaries left
