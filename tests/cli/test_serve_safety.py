"""``serve --limiter off --loudness off`` reaches the engine, the log records it, and ``bounce`` replays
with it (or with the switches it is given)."""

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from sonolatent.engine.bounce import bounce
from sonolatent.engine.safety import CEILING_DB, SafetyConfig
from sonolatent.models import load_bundle
from sonolatent.models.synth import StreamingSynth


def test_serve_limiter_switch_is_logged_and_bounce_follows_it(tiny_bundle_dir, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    t = np.arange(22050) / 44100
    sf.write(samples / "loud.wav", (0.99 * np.sign(np.sin(2 * np.pi * 110 * t))).astype(np.float32), 44100)
    patch = tmp_path / "p.toml"
    patch.write_text('[slots]\n0 = "loud"\n[params]\n"/sono/gain" = 2.0\n"/sono/attack" = 0.001\n'
                     '[play]\nautoplay = true\n')
    rec, log = tmp_path / "off.wav", tmp_path / "off.jsonl"
    r = subprocess.run([sys.executable, "-m", "sonolatent", "serve", "--checkpoint", str(tiny_bundle_dir),
                        "--samples", str(samples), "--patch", str(patch), "--freewheel", "--duration", "0.5",
                        "--record", str(rec), "--log-osc", str(log), "--port", "0", "--oscquery-port", "-1",
                        "--limiter", "off", "--loudness", "off"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    header = json.loads(log.read_text().splitlines()[0])
    assert header["safety"] == {"limiter": False, "track": False, "ceiling_db": CEILING_DB}
    live, _ = sf.read(rec, dtype="float32")
    synth = StreamingSynth(load_bundle(tiny_bundle_dir))
    assert np.array_equal(bounce(log, synth, samples_dir=samples), live)     # as played: no stage
    safe = bounce(log, synth, samples_dir=samples, safety=SafetyConfig())     # bounce --limiter on
    assert np.abs(safe).max() <= np.float32(10 ** (CEILING_DB / 20))
    # with the stage: the limiter's lookahead held back, the level moved toward the loud sample's
    assert len(live) - len(safe) == round(0.002 * 44100)
    assert np.mean(safe.astype(np.float64) ** 2) > 2 * np.mean(live[:len(safe)].astype(np.float64) ** 2)
