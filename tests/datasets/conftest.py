"""Shared helpers for the dataset tests: the system soundfont and real sound files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@pytest.fixture
def soundfont() -> Path:
    assert FLUID_R3.is_file(), "fluid-soundfont-gm is a test dependency (apt-get install fluid-soundfont-gm)"
    return FLUID_R3


@pytest.fixture
def write_tone():
    """``write_tone(path, seconds=, sr=, freq=, channels=, subtype=)``: a real sine-tone sound file."""
    return _write_tone


def _write_tone(path: Path, *, seconds: float = 0.5, sr: int = 44100, freq: float = 440.0,
               channels: int = 1, subtype: str | None = None, amp: float = 0.5) -> Path:
    """Write a real sine-tone sound file (format from the extension) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1)
    sf.write(str(path), x, sr, subtype=subtype)
    return path
