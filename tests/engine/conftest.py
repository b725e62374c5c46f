"""Engine fixtures: the shared tiny bundle loaded once, and a folder of real WAV samples."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sonolatent.models import load_bundle


def make_samples(folder, sr=44100):
    """Four 0.6 s sounds and one in a sub-folder (at 48 kHz, to exercise resampling)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.6 * sr)) / sr
    sounds = {
        "sine": 0.5 * np.sin(2 * np.pi * 220 * t),
        "saw": 0.3 * ((t * 330) % 1.0 - 0.5),
        "noise": 0.2 * np.random.default_rng(1).standard_normal(len(t)) * np.exp(-3 * t),
        "chirp": 0.4 * np.sin(2 * np.pi * (100 + 800 * t) * t),
    }
    for name, x in sounds.items():
        sf.write(folder / f"{name}.wav", x.astype(np.float32), sr)
    (folder / "sub").mkdir(exist_ok=True)
    sf.write(folder / "sub" / "short.wav", sounds["sine"][: sr // 5].astype(np.float32), 48000)
    return folder


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """The daemon renders with one torch thread (as `serve` and `bounce` do); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def bundle(tiny_bundle_dir):
    return load_bundle(tiny_bundle_dir)


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("samples"))


class Replies:
    """A replier that keeps the late errors the engine sends (what a control surface would answer)."""

    def __init__(self):
        self.errors = []

    def reply(self, sender, address, values, types=None):
        pass

    def reply_error(self, sender, address, reason):
        self.errors.append((sender, address, reason))
