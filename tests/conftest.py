"""Shared fixtures: tiny models saved as real checkpoints, real WAV files."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sonolatent.audio.mel import MelConfig
from sonolatent.models import MelVAE, VAEConfig, Vocoder, VocoderConfig, save_checkpoint

# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored in every
# child: the Ctrl-C tests' subprocesses would never see it. A handler here is reset to the
# default in each child, where Python then raises KeyboardInterrupt as it does in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_VAE = VAEConfig(channels=32, dec_layers=2, enc_blocks=1, latent_dim=8)
TINY_VOCODER = VocoderConfig(dim=32, n_layers=2)


def make_tiny_bundle(folder: Path, seed: int = 0) -> Path:
    """Random-init tiny VAE + vocoder saved as a real checkpoint bundle (vae/, vocoder/)."""
    torch.manual_seed(seed)
    mel = MelConfig()
    vae = MelVAE(mel, TINY_VAE)
    vae.set_pca(torch.randn(500, TINY_VAE.latent_dim) * torch.linspace(2, 0.1, TINY_VAE.latent_dim))
    save_checkpoint(folder / "vae", vae, {"data": "random init (tests)"})
    save_checkpoint(folder / "vocoder", Vocoder(mel, TINY_VOCODER), {"data": "random init (tests)"})
    return folder


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


def tone(freq=440.0, seconds=1.0, sr=44100, amp=0.5, decay=3.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * np.exp(-decay * t)).astype(np.float32)


@pytest.fixture
def wav_file(tmp_path) -> Path:
    p = tmp_path / "tone.wav"
    sf.write(p, tone(), 44100, subtype="PCM_16")
    return p
