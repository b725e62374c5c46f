"""Checkpoints: a folder with ``config.json`` and ``model.safetensors``.

``config.json`` holds the format name and version, the model kind, every
config (mel, model), and provenance (data, steps, git commit, creation time,
sha256 of the weights file). Loading is strict and never unpickles anything:
weights come from safetensors, settings from JSON. Every problem raises
:class:`CheckpointError` with one line naming the folder and the problem.

A *model bundle* is a folder with one sub-folder per model (``vae/``,
``vocoder/``); :func:`load_bundle` loads both and refuses a mel mismatch. A
bundle may instead name where its models live in ``bundle.json``
(``{"vae": "../default/vae", "vocoder": "vocoder"}``, paths relative to the
folder), so that bundles differing in one model share the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..audio.mel import MelConfig
from ..errors import CheckpointError, ConfigError
from ..outputs import usual_mode
from .encoder import CausalEncoder, EncoderConfig
from .heap import keep_freed_memory
from .streaming import bfloat16_numbers
from .vae import MelVAE, VAEConfig
from .vocoder import Vocoder, VocoderConfig

FORMAT_NAME = "sonolatent-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Every top-level key of ``config.json`` (strict: anything else is refused).
CONFIG_KEYS = ("format", "format_version", "kind", "mel", "model", "provenance")

MODEL_KINDS = {
    "vae": (MelVAE, VAEConfig),
    "vocoder": (Vocoder, VocoderConfig),
    "encoder": (CausalEncoder, EncoderConfig),   # the live input's causal encoder (optional in a bundle)
}

#: The shipped default bundle, next to the package in a source checkout.
BUNDLE_FILE = "bundle.json"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except Exception:
        return None


def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, provenance: dict | None = None) -> Path:
    """Write ``model`` (a MelVAE or Vocoder) to ``folder`` atomically. The weight matrices its live
    single-frame path reads are written rounded to bfloat16 numbers (stored as float32), so that the
    loaded model streams at half the bytes per frame with the numbers it renders offline with
    (:func:`~.streaming.bfloat16_numbers`); the model itself, perhaps mid-training, is left as it is."""
    folder = Path(folder)
    kind = model.kind
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"cannot save a model of kind {kind!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=str(folder.parent)))
    usual_mode(tmp, folder=True)   # mkdtemp makes it 0700: the checkpoint gets the mode the user's umask gives
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        matrices = {id(t) for t in model.frame_matrices()}
        for name, p in model.named_parameters():
            if id(p) in matrices:
                tensors[name] = bfloat16_numbers(tensors[name])
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME, "kind": kind})
        usual_mode(tmp / WEIGHTS_FILE)   # safetensors writes 0600
        prov = dict(provenance or {})
        prov.setdefault("git_commit", git_commit())
        prov.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        prov["sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        prov["parameters"] = int(sum(p.numel() for p in model.parameters()))
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "mel": model.mel_config.to_dict(),
            "model": model.config.to_dict(),
            "provenance": prov,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | os.PathLike) -> dict:
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder}: missing {CONFIG_FILE}")
    try:
        meta = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_path}: not a sonolatent checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    ver = meta.get("format_version")
    if ver != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: unknown format version {ver!r} (this sonolatent reads version {FORMAT_VERSION})")
    unknown = sorted(set(meta) - set(CONFIG_KEYS))
    if unknown:
        raise CheckpointError(f"{cfg_path}: unknown top-level key(s) {', '.join(map(repr, unknown))} "
                              f"(a version {FORMAT_VERSION} checkpoint has {', '.join(CONFIG_KEYS)})")
    return meta


def load_checkpoint(folder: str | os.PathLike, kind: str | None = None, *, verify: bool = True):
    """Load one model from ``folder``; returns ``(model, meta)``. Strict in every respect."""
    folder = Path(folder)
    meta = read_config(folder)
    k = meta.get("kind")
    if not isinstance(k, str) or k not in MODEL_KINDS:
        raise CheckpointError(f"{folder}: unknown model kind {k!r}")
    if kind is not None and k != kind:
        raise CheckpointError(f"{folder}: holds a {k} model, a {kind} was expected")
    wpath = folder / WEIGHTS_FILE
    if not wpath.is_file():
        raise CheckpointError(f"{folder}: missing {WEIGHTS_FILE}")
    if verify:
        prov = meta.get("provenance")
        want = prov.get("sha256") if isinstance(prov, dict) else None
        if not want:
            raise CheckpointError(f"{folder}: config.json records no sha256 for the weights")
        got = sha256_file(wpath)
        if got != want:
            raise CheckpointError(f"{wpath}: sha256 mismatch (weights changed or corrupted)")
    model_cls, cfg_cls = MODEL_KINDS[k]
    try:
        mel = MelConfig.from_dict(meta.get("mel"))
        cfg = cfg_cls.from_dict(meta.get("model"))
        model = model_cls(mel, cfg)
    except ConfigError as e:
        raise CheckpointError(f"{folder}: bad config ({e})") from None
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:  # a combination no check foresaw
        raise CheckpointError(f"{folder}: bad config ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{wpath}: unreadable weights ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}")
        raise CheckpointError(f"{wpath}: weights do not match the config ({'; '.join(parts)})")
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(
                f"{wpath}: {name} has shape {tuple(tensors[name].shape)}, the config needs {tuple(t.shape)}"
            )
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, meta


@dataclass
class ModelBundle:
    """A VAE and a vocoder that share one mel definition."""

    vae: MelVAE
    vocoder: Vocoder
    folder: Path | None = None
    meta: dict | None = None
    encoder: CausalEncoder | None = None   # the live input's encoder, distilled from this VAE (optional)

    def __post_init__(self):
        self.vae.mel_config.check_compatible(self.vocoder.mel_config, "the VAE and the vocoder")
        if self.encoder is not None:
            self.vae.mel_config.check_compatible(self.encoder.mel_config, "the VAE and the live encoder")
            if self.encoder.latent_dim != self.vae.latent_dim:
                raise ConfigError(f"the live encoder makes {self.encoder.latent_dim} latent dimensions, "
                                  f"the VAE {self.vae.latent_dim}")

    @property
    def mel_config(self) -> MelConfig:
        return self.vae.mel_config

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def delay(self) -> int:
        """Samples from a latent frame to the first output sample it fully determines."""
        return self.vae.delay + self.vocoder.delay


def bundle_parts(folder: str | os.PathLike) -> tuple[Path, Path]:
    """The VAE's and the vocoder's folders of the bundle ``folder``: its ``vae/`` and ``vocoder/``, or
    where its ``bundle.json`` says they are."""
    folder = Path(folder)
    return bundle_folders(folder)[:2]


def bundle_folders(folder: str | os.PathLike) -> tuple[Path, Path, Path]:
    """:func:`bundle_parts` and the live encoder's folder (``encoder/`` or where ``bundle.json`` says; it
    may not exist: a bundle without one plays no live input)."""
    folder = Path(folder)
    parts = {"vae": folder / "vae", "vocoder": folder / "vocoder", "encoder": folder / "encoder"}
    f = folder / BUNDLE_FILE
    if f.is_file():
        try:
            named = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{f}: not readable JSON ({e})") from None
        if not isinstance(named, dict) or set(named) - set(parts) or not all(
                isinstance(v, str) and v for v in named.values()):
            raise CheckpointError(f'{f}: expected {{"vae": "DIR", "vocoder": "DIR", "encoder": "DIR"}} '
                                  f'(paths relative to the bundle; encoder optional)')
        parts.update({k: folder / v for k, v in named.items()})
    return parts["vae"], parts["vocoder"], parts["encoder"]


def load_bundle(folder: str | os.PathLike | None = None, *, vae: str | None = None,
                vocoder: str | None = None) -> ModelBundle:
    """Load the bundle ``folder``'s VAE and vocoder (default: the shipped bundle; see :func:`bundle_parts`).
    Also sets this process's allocator to keep freed memory for the models' large tensors
    (:func:`.heap.keep_freed_memory`)."""
    folder = Path(folder) if folder is not None else DEFAULT_CHECKPOINT
    keep_freed_memory()
    if (vae is None or vocoder is None) and not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    vae_dir, voc_dir, enc_dir = bundle_folders(folder) if vae is None or vocoder is None else (None, None, None)
    if vae:   # another VAE than the bundle's: the bundle's live encoder does not speak its latents
        enc_dir = None
    vae_dir = Path(vae) if vae else vae_dir
    voc_dir = Path(vocoder) if vocoder else voc_dir
    vae_model, vae_meta = load_checkpoint(vae_dir, "vae")
    voc_model, voc_meta = load_checkpoint(voc_dir, "vocoder")
    enc_model, meta = None, {"vae": vae_meta, "vocoder": voc_meta}
    if enc_dir is not None and enc_dir.is_dir():
        enc_model, meta["encoder"] = load_checkpoint(enc_dir, "encoder")
        teacher = (meta["encoder"].get("provenance") or {}).get("teacher_sha256")
        if teacher != (vae_meta.get("provenance") or {}).get("sha256"):
            raise CheckpointError(f"{enc_dir}: this live encoder was distilled from another VAE than {vae_dir}")
    try:
        return ModelBundle(vae_model, voc_model, folder, meta, enc_model)
    except ConfigError as e:
        raise CheckpointError(f"{folder}: {e}") from None
