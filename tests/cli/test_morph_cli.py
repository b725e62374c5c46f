"""The morph, render, map and traverse commands, end to end on real files and a tiny model."""

import numpy as np
import pytest
import soundfile as sf

from sonolatent.cli.main import main

SR = 44100


def tone(freq, seconds, amp=0.4, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * np.minimum(1, 30 * t)).astype(np.float32)


@pytest.fixture
def work(tmp_path, tiny_bundle_dir):
    sf.write(tmp_path / "a.wav", tone(330, 0.6), SR, subtype="PCM_16")
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(int(0.4 * 48000)) * np.exp(-np.arange(int(0.4 * 48000)) / 4000) * 0.4
    sf.write(tmp_path / "b.flac", noise.astype(np.float32), 48000)
    sf.write(tmp_path / "silent.wav", np.zeros(SR // 4, np.float32), SR)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF....not really a wav file" * 20)
    return tmp_path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def ck(tiny_bundle_dir):
    return ["--checkpoint", tiny_bundle_dir]


def assert_png(p):
    import matplotlib.image

    assert p.is_file() and p.stat().st_size > 10_000
    assert float(matplotlib.image.imread(p)[..., :3].std()) > 0.05


def test_morph_writes_normalised_wav_and_plot(work, capsys, tiny_bundle_dir):
    out, png = work / "m.wav", work / "m.png"
    rc, so, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", out, "--duration", 1.0,
                     "--curve", "ease", "--interp", "slerp", "--plot", png, *ck(tiny_bundle_dir))
    assert rc == 0, se
    assert "wrote" in so and se == ""
    y, sr = sf.read(out, dtype="float32")
    info = sf.info(out)
    assert sr == SR and info.subtype == "PCM_16"
    assert len(y) == round(SR / 512) * 512
    assert abs(20 * np.log10(np.abs(y).max()) + 1.0) < 0.05  # -1 dBFS peak
    assert_png(png)


def test_morph_at_zero_equals_a_and_options(work, capsys, tiny_bundle_dir):
    from sonolatent.models import load_bundle, latents_to_frames
    from sonolatent.models.synth import encode_audio, render_frames
    from sonolatent.audio.io import peak_normalize, read_audio
    import torch

    out = work / "at0.wav"
    rc, _, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", out, "--at", 0, "--align", "first",
                    "--format", "float", "--loudness", "off", *ck(tiny_bundle_dir))   # the decode as it comes
    assert rc == 0, se
    y, _ = sf.read(out, dtype="float32")
    bundle = load_bundle(tiny_bundle_dir)
    audio, _ = read_audio(work / "a.wav", SR)
    z = encode_audio(bundle, audio)
    ref = peak_normalize(render_frames(bundle, latents_to_frames(z[None], len(audio) // 512 + 1, 4)[0]), -1.0)
    assert y.shape == ref.shape
    assert float(np.abs(y - ref).max()) < 1e-5

    # other rate and depth, keyframes, loop alignment
    out2 = work / "k.wav"
    rc, _, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", out2, "--keyframes", "0:0,0.5:0.8,1:1",
                    "--align", "loop", "--duration", 0.9, "--sr", 22050, "--format", "24", *ck(tiny_bundle_dir))
    assert rc == 0, se
    info = sf.info(out2)
    assert info.samplerate == 22050 and info.subtype == "PCM_24"
    assert abs(info.frames - round(0.9 * SR / 512) * 512 / 2) <= 2


def test_offline_limiter_switch(work, capsys, tiny_bundle_dir):
    """Normalised to 0 dBFS, the limiter (on by default) still keeps every sample under -0.3 dBFS."""
    peaks = {}
    for switch in ("on", "off"):
        out = work / f"lim-{switch}.wav"
        rc, _, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", out, "--at", 0.5, "--peak", 0,
                        "--format", "float", "--limiter", switch, *ck(tiny_bundle_dir))
        assert rc == 0, se
        peaks[switch] = float(np.abs(sf.read(out, dtype="float32")[0]).max())
    assert peaks["off"] == pytest.approx(1.0, abs=1e-6)
    assert peaks["on"] <= np.float32(10 ** (-0.3 / 20)) and peaks["on"] > 0.9
    with pytest.raises(SystemExit) as e:
        run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", work / "x.wav", "--limiter", "maybe",
            *ck(tiny_bundle_dir))
    assert e.value.code == 2 and not (work / "x.wav").exists()


def test_morph_steps(work, capsys, tiny_bundle_dir):
    out = work / "st.wav"
    rc, so, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", out, "--steps", 3,
                     "--plot", work / "st.png", *ck(tiny_bundle_dir))
    assert rc == 0, se
    paths = [work / f"st-{k:02d}.wav" for k in range(3)]
    assert all(p.is_file() for p in paths) and not out.exists()
    ys = [sf.read(p, dtype="float32")[0] for p in paths]
    assert len({len(y) for y in ys}) == 1
    assert not np.allclose(ys[0], ys[2])
    # step 0 is the fixed blend 0, step 1 the fixed blend 0.5
    for k, at in ((0, 0.0), (1, 0.5)):
        rc, _, se = run(capsys, "morph", work / "a.wav", work / "b.flac", "-o", work / f"at{k}.wav", "--at", at,
                        *ck(tiny_bundle_dir))
        assert rc == 0, se
        np.testing.assert_allclose(sf.read(work / f"at{k}.wav", dtype="float32")[0], ys[k], atol=1e-4)
    assert_png(work / "st.png")


SCORE = """\
duration = 1.0
interp = "slerp"

[[source]]
name = "tone"
file = "a.wav"

[[source]]
name = "burst"
file = "b.flac"

[[key]]
time = 0.0
weights = {tone = 1, burst = 0}

[[key]]
time = 0.8
weights = {tone = 0.2, burst = 0.8}
latent = {0 = 1.5}
gain = -3
"""


def test_render_score(work, capsys, tiny_bundle_dir):
    (work / "scores").mkdir()
    score = work / "scores" / "s.toml"
    score.write_text(SCORE.replace('"a.wav"', '"../a.wav"').replace('"b.flac"', '"../b.flac"'))
    out, png = work / "s.wav", work / "s.png"
    rc, so, se = run(capsys, "render", score, "-o", out, "--plot", png, *ck(tiny_bundle_dir))
    assert rc == 0, se
    y, sr = sf.read(out, dtype="float32")
    assert sr == SR and len(y) == round(SR / 512) * 512
    assert_png(png)


def test_map_and_traverse(work, capsys, tiny_bundle_dir):
    lib = work / "lib"
    for sub, freqs in (("strings", (220, 330)), ("winds", (440, 660, 880))):
        (lib / sub).mkdir(parents=True)
        for f in freqs:
            sf.write(lib / sub / f"n{f}.wav", tone(f, 0.3), SR)
    sf.write(lib / "top.flac", tone(550, 0.3), SR)
    (lib / "notes.txt").write_text("not a sound")
    for extra, name in (([], "map.png"), (["--tsne"], "tsne.png")):
        rc, so, se = run(capsys, "map", lib, "-o", work / name, *extra, *ck(tiny_bundle_dir))
        assert rc == 0, se
        assert "6 sounds, 3 folders" in so
        assert_png(work / name)
    rc, so, se = run(capsys, "traverse", work / "a.wav", "--dim", 1, "-o", work / "tr.png", "--steps", 4,
                     "--range", 2, *ck(tiny_bundle_dir))
    assert rc == 0, se
    assert_png(work / "tr.png")


A, B = "a.wav", "b.flac"
MORPH_BAD = [
    ([A, "missing.wav"], "missing.wav: no such file"),
    ([A, "garbage.wav"], "garbage.wav: not a readable sound file"),
    (["silent.wav", B], "silent.wav: the audio is silent"),
    ([A, B, "--duration", "-2"], "--duration: must be a positive number"),
    ([A, B, "--duration", "0"], "--duration: must be a positive number"),
    ([A, B, "--at", "1.5"], "--at: the blend must be in 0..1"),
    ([A, B, "--at", "-0.1"], "--at: the blend must be in 0..1"),
    ([A, B, "--curve", "wobble"], "--curve: unknown curve 'wobble'"),
    ([A, B, "--keyframes", "0:0,0.5"], "--keyframes: '0.5' is not time:value"),
    ([A, B, "--keyframes", "0:0,x:1"], "--keyframes: 'x:1' is not time:value"),
    ([A, B, "--keyframes", "0.6:0,0.5:1"], "--keyframes: times must increase"),
    ([A, B, "--keyframes", "0:0,1:2"], "--keyframes: value 2"),
    ([A, B, "--at", "0.5", "--curve", "ease"], "--curve and --at cannot be combined"),
    ([A, B, "--steps", "1"], "--steps: must be 2.."),
    ([A, B, "--align", "first", "--duration", "2"], "--duration cannot be combined with --align first"),
    ([A, B, "--align", "sideways"], "--align: unknown alignment 'sideways'"),
    ([A, B, "--interp", "cubic"], "--interp: unknown interpolation 'cubic'"),
    ([A, B, "--sr", "100"], "--sr: 100 Hz is outside"),
    ([A, B, "--format", "8"], "--format: unknown format '8'"),
    ([A, B, "--peak", "3"], "--peak: 3 dBFS is outside"),
    ([A, B, "--plot", "p.jpg"], "--plot p.jpg: the file name must end in .png"),
    ([A, B, "--checkpoint", "no-such-bundle"], "no-such-bundle: checkpoint folder not found"),
]


@pytest.mark.parametrize("args,msg", MORPH_BAD, ids=[m[:40] for _, m in MORPH_BAD])
def test_morph_bad_input(work, capsys, tiny_bundle_dir, monkeypatch, args, msg):
    monkeypatch.chdir(work)
    argv = ["morph", *args, "-o", "OUT.wav"]
    if "--checkpoint" not in args:
        argv += ck(tiny_bundle_dir)
    rc, so, se = run(capsys, *argv)
    assert rc == 2
    lines = se.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sonolatent: error: "), se
    assert msg in lines[0], lines[0]
    assert not (work / "OUT.wav").exists()
    assert not list(work.glob("OUT*")) and not list(work.glob(".OUT*"))
    assert not (work / "p.jpg").exists()


def test_morph_bad_output_paths(work, capsys, tiny_bundle_dir, monkeypatch):
    monkeypatch.chdir(work)
    cases = [
        (["-o", "nodir/OUT.wav"], "-o nodir/OUT.wav: the folder nodir does not exist"),
        (["-o", "OUT.mp3"], "-o OUT.mp3: the file name must end in .wav"),
        (["-o", A], "-o a.wav: is also an input file"),
        (["-o", "b.wav", "--steps", "2"], None),  # b-00.wav, b-01.wav: fine
    ]
    before = (work / A).read_bytes()
    for extra, msg in cases:
        rc, _, se = run(capsys, "morph", A, B, *extra, *ck(tiny_bundle_dir))
        if msg is None:
            assert rc == 0, se
            continue
        assert rc == 2 and msg in se and len(se.strip().splitlines()) == 1, se
    assert (work / A).read_bytes() == before
    assert not (work / "nodir").exists() and not (work / "OUT.mp3").exists()


def test_unwritable_outputs_fail_before_any_work(work, capsys, tiny_bundle_dir, monkeypatch):
    """/proc takes no new files, whatever the modes say (root passes an os.access check there)."""
    import sonolatent.models.checkpoint

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(sonolatent.models.checkpoint, "load_bundle", no_model)
    monkeypatch.chdir(work)
    (work / "lib").mkdir()
    sf.write(work / "lib" / "x.wav", tone(300, 0.2), SR)
    cases = [
        (["morph", A, B, "-o", "/proc/m.wav"], "-o /proc/m.wav: the folder /proc is not writable"),
        (["morph", A, B, "-o", "OUT.wav", "--plot", "/proc/x.png"], "--plot /proc/x.png: the folder /proc is not writable"),
        (["map", "lib", "-o", "/proc/x.png"], "-o /proc/x.png: the folder /proc is not writable"),
        (["traverse", A, "--dim", 0, "-o", "/proc/x.png"], "-o /proc/x.png: the folder /proc is not writable"),
    ]
    for argv, msg in cases:
        rc, so, se = run(capsys, *argv, *ck(tiny_bundle_dir))
        assert rc == 2, se
        assert se.strip().splitlines() == [f"sonolatent: error: {msg} (No such file or directory)"] \
            or (len(se.strip().splitlines()) == 1 and msg in se), se
        assert so == "" and not list(work.glob("OUT*")) and not list(work.glob(".OUT*"))


@pytest.mark.parametrize("command", ["morph", "steps", "render"])
def test_a_failed_picture_or_wav_leaves_no_output_behind(work, capsys, tiny_bundle_dir, monkeypatch, command):
    import sonolatent.audio.io
    import sonolatent.render.plots
    from sonolatent.errors import SonolatentError

    monkeypatch.chdir(work)
    (work / "s.toml").write_text(SCORE)
    argv = {"morph": ["morph", A, B], "steps": ["morph", A, B, "--steps", 3], "render": ["render", "s.toml"]}[command]
    argv = [*argv, "-o", "OUT.wav", "--plot", "OUT.png", *ck(tiny_bundle_dir)]

    def broken_plot(*a, **k):
        raise SonolatentError("OUT.png: cannot write the picture (disk full)")

    with monkeypatch.context() as m:            # the picture fails: no WAV is written
        m.setattr(sonolatent.render.plots, "plot_morph", broken_plot)
        rc, so, se = run(capsys, *argv)
    assert rc == 2 and se.strip().splitlines() == ["sonolatent: error: OUT.png: cannot write the picture (disk full)"]
    assert not list(work.glob("OUT*")) and not list(work.glob(".OUT*"))

    real = sonolatent.audio.io.write_audio
    calls = []

    def write_audio(path, *a, **k):             # the last WAV fails: the picture and earlier WAVs go too
        calls.append(path)
        if len(calls) == (3 if command == "steps" else 1):
            raise SonolatentError(f"{path}: cannot write (disk full)")
        return real(path, *a, **k)

    monkeypatch.setattr(sonolatent.audio.io, "write_audio", write_audio)
    rc, so, se = run(capsys, *argv)
    assert rc == 2 and len(se.strip().splitlines()) == 1 and "cannot write (disk full)" in se, se
    assert len(calls) == (3 if command == "steps" else 1)
    assert not list(work.glob("OUT*")) and not list(work.glob(".OUT*"))


RENDER_BAD = [
    ('weights = {tone = 1, burst = 0}', 'weights = {tone = 1, brust = 0}',
     "s.toml: line 14: [[key]] 1 weights: unknown source 'brust' (sources: tone, burst)"),
    ('latent = {0 = 1.5}', 'latnet = {0 = 1.5}', "s.toml: line 19: [[key]] 2: unknown field 'latnet'"),
    ('file = "b.flac"', 'file = "nope.flac"', "s.toml: line 10: [[source]] 'burst': no such file 'nope.flac'"),
    ('file = "b.flac"', 'file = "silent.wav"', "s.toml: line 10: [[source]] 'burst': "),
    ('file = "b.flac"', 'file = "garbage.wav"', "not a readable sound file"),
    ('time = 0.8', 'time = 1.8', "s.toml: line 17: [[key]] 2: time 1.8 is after the end of the score"),
    ('latent = {0 = 1.5}', 'latent = {99 = 1.5}', "s.toml: line 19: [[key]] 2 latent: coordinate 99 is outside"),
    ('interp = "slerp"', 'interp = "slerp', "s.toml:2: TOML syntax error"),
]


@pytest.mark.parametrize("old,new,msg", RENDER_BAD, ids=[r[2][:40] for r in RENDER_BAD])
def test_render_bad_score(work, capsys, tiny_bundle_dir, old, new, msg):
    assert old in SCORE
    score = work / "s.toml"
    score.write_text(SCORE.replace(old, new))
    rc, so, se = run(capsys, "render", score, "-o", work / "OUT.wav", *ck(tiny_bundle_dir))
    assert rc == 2
    lines = se.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sonolatent: error: {work}/"), se
    assert msg in lines[0], lines[0]
    assert not (work / "OUT.wav").exists() and not list(work.glob(".OUT*"))


def test_render_missing_score_and_map_traverse_errors(work, capsys, tiny_bundle_dir):
    bad = [
        (["render", work / "none.toml", "-o", work / "OUT.wav"], "none.toml: no such score file"),
        (["map", work / "nodir", "-o", work / "OUT.png"], "nodir: no such folder"),
        (["map", work / "a.wav", "-o", work / "OUT.png"], "a.wav: not a folder"),
        (["traverse", work / "a.wav", "--dim", 99, "-o", work / "OUT.png"], "--dim: 99 is outside"),
        (["traverse", work / "a.wav", "--dim", 0, "--steps", 1, "-o", work / "OUT.png"], "--steps: must be 2.."),
        (["traverse", work / "a.wav", "--dim", 0, "--range", -1, "-o", work / "OUT.png"], "--range: must be in"),
        (["traverse", work / "silent.wav", "--dim", 0, "-o", work / "OUT.png"], "silent.wav: the audio is silent"),
    ]
    (work / "empty").mkdir()
    bad.append((["map", work / "empty", "-o", work / "OUT.png"], "empty: no sound files found"))
    (work / "two").mkdir()
    for n in ("x", "y"):
        sf.write(work / "two" / f"{n}.wav", tone(300, 0.2), SR)
    bad.append((["map", work / "two", "-o", work / "OUT.png", "--tsne"], "--tsne needs at least 3 sounds"))
    # a folder with one bad file among good ones is not an error: map skips and counts it
    # (tests/cli/test_model_cli.py::test_map_skips_a_bad_file_with_a_warning_and_counts_it)
    for argv, msg in bad:
        rc, _, se = run(capsys, *argv, *ck(tiny_bundle_dir))
        assert rc == 2, (argv, se)
        assert len(se.strip().splitlines()) == 1 and msg in se, se
        assert not (work / "OUT.wav").exists() and not (work / "OUT.png").exists()
        assert not list(work.glob(".OUT*"))


def test_entry_point_exit_status_and_one_line(work, tiny_bundle_dir):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sonolatent", "morph", str(work / "a.wav"), str(work / "b.flac"),
                        "-o", str(work / "OUT.wav"), "--at", "2", "--checkpoint", str(tiny_bundle_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["sonolatent: error: --at: the blend must be in 0..1, got 2"]
    assert not (work / "OUT.wav").exists()
