"""Models: the mel VAE, the vocoder, streaming layers, checkpoints and the shared decode path."""

from .vae import MelVAE, VAEConfig, latents_to_frames
from .vocoder import Vocoder, VocoderConfig
from .streaming import StreamState
from .checkpoint import ModelBundle, load_bundle, load_checkpoint, save_checkpoint, DEFAULT_CHECKPOINT

__all__ = ["MelVAE", "VAEConfig", "latents_to_frames", "Vocoder", "VocoderConfig", "StreamState",
           "ModelBundle", "load_bundle", "load_checkpoint", "save_checkpoint", "DEFAULT_CHECKPOINT"]
