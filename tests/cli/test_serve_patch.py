"""``serve --patch``: the README's first command on a machine without a sound card, patch errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


def no_device_env() -> tuple[dict, bool]:
    """An environment whose JACK server does not exist; True when PortAudio then has no output device."""
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"sl-none-{uuid.uuid4().hex[:8]}")
    probe = subprocess.run([sys.executable, "-c", "import sounddevice as sd; sd.query_devices(kind='output')"],
                           env=env, capture_output=True, timeout=60)
    return env, probe.returncode != 0


def _frames(path) -> int:
    try:
        return sf.info(str(path)).frames
    except Exception:        # its first header not on the disk yet
        return 0


def test_readme_first_command_without_a_sound_card_plays_the_demo_and_records_a_take(tmp_path):
    """``sonolatent serve --patch patches/demo.toml`` with the shipped model, stopped with Ctrl-C."""
    env, headless = no_device_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "sonolatent", "serve", "--patch", str(REPO / "patches" / "demo.toml"),
                             "--port", "0", "--oscquery-port", "-1"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True).start()
    try:
        end = time.monotonic() + 120
        while not any("OSC on udp" in x for x in out) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert any("OSC on udp" in x for x in out), out
        # 3 s of the demo: on the test rig, until the take (its header rewritten every second) holds them,
        # however slowly a busy machine renders; with a sound card, 3 s of wall time
        end = time.monotonic() + (90 if headless else 3.0)
        while time.monotonic() < end and proc.poll() is None:
            held = [_frames(t) for t in tmp_path.rglob("sonolatent-take-*.wav")]
            if headless and held and held[0] >= 3 * 44100:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)           # Ctrl-C: fade out, finish the recording, exit 0
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    err = proc.stderr.read()
    time.sleep(0.1)
    text = "".join(out)
    assert "patch demo: Piano and strings" in text and "(playing)" in text
    assert "sonolatent: error" not in err and "warning" not in err, err
    takes = list((tmp_path / "data" / "sonolatent" / "takes").glob("sonolatent-take-*.wav"))
    if headless:                                   # the test rig: no sound card
        assert len(takes) == 1 and f"recording to {takes[0]}" in err and "no audio output device" in err
        assert f"recorded {takes[0]}" in text and not list(tmp_path.glob("*.wav"))
        y, sr = sf.read(takes[0], dtype="float32")
        assert sr == 44100 and len(y) > 2 * sr
        # the demo plays by itself (0.5 s attack): sound from the first second on, faded out at the end
        assert np.sqrt(np.mean(y[sr:] ** 2)) > 1e-3 and np.abs(y[-100:]).max() < 1e-3
    else:                                          # a machine with a sound card plays through it, records nothing
        assert "audio:" in text and takes == []


def test_a_missing_sample_names_the_patch_line(tiny_bundle_dir, tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[patch]\nname = "p"\n\n[slots]\n0 = "piano_c4"\n1 = "no_such_sound"\n')
    r = subprocess.run([sys.executable, "-m", "sonolatent", "serve", "--checkpoint", str(tiny_bundle_dir),
                        "--no-audio", "--port", "0", "--patch", str(p)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith(f"sonolatent: error: {p}:6: [slots] key '1': "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == [p]
