"""A tiny model bundle with a live encoder (a VAE with linear paths, one latent frame per mel frame)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sonolatent.audio.mel import MelConfig
from sonolatent.models import MelVAE, VAEConfig, Vocoder, VocoderConfig, save_checkpoint
from sonolatent.models.encoder import CausalEncoder, EncoderConfig

LIVE_VAE = VAEConfig(channels=32, dec_layers=2, enc_blocks=1, latent_dim=8, downsample=1, linear_path=True)
LIVE_ENCODER = EncoderConfig(latent_dim=8, channels=16, layers=2)
LIVE_VOCODER = VocoderConfig(dim=32, n_layers=2)


def make_live_bundle(folder: Path, seed: int = 0) -> Path:
    """Random tiny VAE (linear paths fitted to random frames), vocoder and a causal encoder whose
    checkpoint names the VAE as its teacher; saved as a real bundle (vae/, vocoder/, encoder/)."""
    torch.manual_seed(seed)
    mel = MelConfig()
    vae = MelVAE(mel, LIVE_VAE)
    vae.set_linear_path(torch.randn(400, mel.n_mels) * torch.linspace(2, 0.2, mel.n_mels))
    vae.set_pca(torch.randn(500, LIVE_VAE.latent_dim) * torch.linspace(2, 0.1, LIVE_VAE.latent_dim))
    save_checkpoint(folder / "vae", vae, {"data": "random init (tests)"})
    save_checkpoint(folder / "vocoder", Vocoder(mel, LIVE_VOCODER), {"data": "random init (tests)"})
    enc = CausalEncoder(mel, LIVE_ENCODER)
    enc.start_from(vae)
    with torch.no_grad():
        enc.out.weight.normal_(0, 0.05)   # the conv path on too, so streaming tests exercise its histories
    sha = json.loads((folder / "vae" / "config.json").read_text())["provenance"]["sha256"]
    save_checkpoint(folder / "encoder", enc, {"data": "random init (tests)", "teacher_sha256": sha})
    return folder


def live_core(bundle, rate: int = 44100, live: bool = True, safety=None):
    """An engine core playing ``bundle`` (its synth and, with ``live``, its live encoder handed in);
    ``safety``: its output stage's settings (default: the daemon's)."""
    from sonolatent.engine.core import EngineCore
    from sonolatent.models.encoder import LiveEncoder
    from sonolatent.models.synth import StreamingSynth

    return EngineCore(StreamingSynth(bundle), rate, live_input=LiveEncoder(bundle) if live else None, safety=safety)


def sample_cache(bundle, root):
    from sonolatent.engine.slots import SampleCache
    from sonolatent.models.synth import StreamingSynth

    return SampleCache(StreamingSynth(bundle), root)
