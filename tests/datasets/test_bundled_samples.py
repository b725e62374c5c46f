from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLES = Path(__file__).resolve().parents[2] / "patches" / "samples"
NAMES = ["piano_c4.wav", "strings_c4.wav", "flute_c5.wav", "brass_c4.wav", "organ_c3.wav", "marimba_c5.wav", "kick.wav"]


def test_bundled_samples_are_small_dry_mono_notes():
    total = 0
    for name in NAMES:
        path = SAMPLES / name
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16"), name
        x, _ = sf.read(str(path))
        assert abs(np.abs(x).max() - 10 ** (-1 / 20)) < 1e-3, name
        assert 0.2 < len(x) / 44100 <= 2.5, name
        assert abs(x[-1]) < 1e-3, name  # faded out, no click
        total += path.stat().st_size
    assert total < 1.5e6
    licence = (SAMPLES / "LICENSE.md").read_text()
    assert "FluidR3" in licence and "Frank Wen" in licence and "MIT" in licence
