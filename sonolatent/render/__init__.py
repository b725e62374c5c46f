"""Offline rendering through the one decode path (``StreamingSynth`` via ``render_frames``):
morphs between two sounds, morph scores, and pictures of the latent space."""

from .common import Source, finish, load_source, render_latents
from .morph import MorphResult, morph_latents, render_morph
from .score import ScoreResult, render_score

__all__ = ["Source", "finish", "load_source", "render_latents", "MorphResult", "morph_latents",
           "render_morph", "ScoreResult", "render_score"]
