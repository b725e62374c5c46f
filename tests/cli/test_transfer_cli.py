"""`sonolatent transfer`: bad input fails in one line before the model loads; a good run writes the input's
length, lined up, equal to the engine core's transfer of the same input."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sonolatent.cli.main import main

from ..engine.conftest import make_samples
from ..livebundle import make_live_bundle, sample_cache


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    samples = make_samples(d / "samples")
    t = np.arange(30000) / 44100
    x = (0.4 * np.sin(2 * np.pi * 220 * t) * (t % 0.2 < 0.1)).astype(np.float32)
    sf.write(d / "in.wav", x, 44100, subtype="FLOAT")
    return d, samples, make_live_bundle(d / "bundle")


@pytest.mark.parametrize("argv,msg", [
    (["missing.wav", "--to", "saw"], "no such file"),
    (["{d}/in.wav", "--to", "saw", "--amount", "1.5"], "--amount 1.5: must be 0..1"),
    (["{d}/in.wav", "--to", "nothing-here"], "--to nothing-here: no such file"),
    (["{d}/in.wav", "--to", "saw", "--gate", "5"], "--gate 5.0: must be -120..0"),
    (["{d}/in.wav", "--to", "../escape"], "--to ../escape"),
])
def test_bad_input_is_one_line_before_the_model(setup, tmp_path, capsys, argv, msg):
    d, samples, _ = setup
    out = tmp_path / "out.wav"
    argv = [a.format(d=d) for a in argv]
    # a checkpoint that does not exist: had the model been loaded first, the error would name it
    code = main(["transfer", *argv, "-o", str(out), "--samples", str(samples), "--checkpoint", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and msg in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_transfer_writes_the_input_length_as_the_core_renders_it(setup, tmp_path):
    d, samples, bundle_dir = setup
    out = tmp_path / "out.wav"
    r = subprocess.run([sys.executable, "-m", "sonolatent", "transfer", str(d / "in.wav"), "--to", "saw",
                        "--samples", str(samples), "--checkpoint", str(bundle_dir), "--amount", "0.4",
                        "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    y, sr = sf.read(out, dtype="float32")
    x, _ = sf.read(d / "in.wav", dtype="float32")
    assert sr == 44100 and y.shape == x.shape and np.abs(y).max() > 0
    from sonolatent.models import load_bundle
    from sonolatent.render.transfer import transfer

    b = load_bundle(bundle_dir)
    want = transfer(b, x, sample_cache(b, samples).load_timbre("saw"), 0.4, chunk=256)
    assert np.array_equal(y, want)
