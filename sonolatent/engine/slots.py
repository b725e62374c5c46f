"""Slots: sounds loaded by name from the sample folder and encoded to latent trajectories.

A name is a relative path inside the sample folder, with or without its
extension (``"piano"``, ``"drums/kick.wav"``). It is never a path to anywhere
else: :func:`resolve_sample` refuses absolute names and any name whose
resolved path (symlinks followed) leaves the folder. Encoding
(``synth.encode``) runs off the audio path, on the
engine's loader thread, by the synth handed to the engine; :class:`SampleCache` remembers results by file
identity so switching back and forth between sounds costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.io import SUPPORTED_EXTENSIONS, read_audio
from ..errors import SonolatentError
from ..params.namespace import NAME_RE
from .safety import frame_power

MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class SlotSound:
    """One encoded sound: latents ``(D, L)`` at the latent rate, its length in mel frames, and its
    loudness per mel frame (mean square; the output stage tracks the voice toward it)."""

    name: str
    latents: np.ndarray     # float64 (D, L)
    n_frames: int           # mel frames of the sound
    sha256: str             # of the file's bytes, so a bounce can check it reads the same sound
    downsample: int
    power: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)   # float64 (n_frames,)

    def column(self, position: float) -> np.ndarray:
        """Latent at normalised ``position`` (0..1), interpolated like ``latents_to_frames``."""
        L = self.latents.shape[1]
        j = position * max(self.n_frames - 1, 0)
        lp = min(max((j + 0.5) / self.downsample - 0.5, 0.0), L - 1.0)
        i0 = int(lp)
        i1 = min(i0 + 1, L - 1)
        w = lp - i0
        return self.latents[:, i0] * (1.0 - w) + self.latents[:, i1] * w


def resolve_sample(root: str | os.PathLike, name: str) -> Path:
    """The file under ``root`` that ``name`` names; :class:`SonolatentError` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise SonolatentError("sample name is empty")
    if len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise SonolatentError(f"sample name {name[:40]!r}: not a valid name")
    if name.startswith(("/", "\\", "~")) or Path(name).is_absolute():
        raise SonolatentError(f"sample name {name!r}: a name, not a path, is expected")
    base = Path(root).resolve()
    if not base.is_dir():
        raise SonolatentError(f"{root}: sample folder not found")
    candidates = [base / name]
    if Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
        candidates += [base / (name + ext) for ext in SUPPORTED_EXTENSIONS]
    for c in candidates:
        try:
            real = c.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not real.is_relative_to(base):
            raise SonolatentError(f"sample name {name!r}: resolves outside the sample folder")
        if real.is_file():
            return real
    raise SonolatentError(f"sample {name!r}: not found in {root}")


def list_samples(root: str | os.PathLike, limit: int = 1000) -> list[str]:
    """Names of the sounds directly in ``root`` that a slot load accepts (sorted; stems, extensions dropped)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    names: list[str] = []
    for e in entries:
        stem, ext = os.path.splitext(e.name)
        if ext.lower() in SUPPORTED_EXTENSIONS and NAME_RE.fullmatch(stem) and ".." not in stem and stem not in names:
            try:
                if e.is_file():
                    names.append(stem)
            except OSError:
                continue
            if len(names) >= limit:
                break
    return names


class SampleCache:
    """Encodes sounds with ``synth.encode``; caches by (path, size, mtime). Thread-safe."""

    def __init__(self, synth, root: str | os.PathLike, max_items: int = 64):
        self.synth = synth
        self.root = Path(root)
        self.max_items = max_items
        self._cache: dict[tuple, SlotSound] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> SlotSound:
        path = resolve_sample(self.root, name)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return SlotSound(name, hit.latents, hit.n_frames, hit.sha256, hit.downsample, hit.power)
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        audio, _ = read_audio(path, self.synth.sample_rate, allow_silent=True)
        z, n_frames = self.synth.encode(audio)
        power = frame_power(audio, self.synth.hop, int(n_frames))
        sound = SlotSound(name, z, int(n_frames), digest, self.synth.downsample, power)
        with self._lock:
            if len(self._cache) >= self.max_items:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = sound
        return sound

    def load_timbre(self, name: str) -> SlotSound:
        """The sound ``name`` as its timbre: one latent column, the mean of its frames weighted by their energy
        (``/sono/slot/K/timbre``; the live input moved toward it keeps its own timing)."""
        sound = self.load(name)
        audio, _ = read_audio(resolve_sample(self.root, name), self.synth.sample_rate, allow_silent=True)
        return timbre_of(sound, audio, self.synth.hop)


def timbre_of(sound: SlotSound, audio: np.ndarray, hop: int) -> SlotSound:
    """``sound`` reduced to one latent column: the energy-weighted mean of its mel frames' latents (each
    frame's energy: the mean square of the ``hop`` samples centred on it; a silent sound: the plain mean)."""
    n = sound.n_frames
    x = np.pad(np.asarray(audio, np.float64), (hop // 2, hop * (n + 1)))
    energy = np.array([np.mean(x[t * hop:(t + 1) * hop] ** 2) for t in range(n)])
    cols = np.stack([sound.column(t / max(n - 1, 1)) for t in range(n)], 1)
    w = energy / energy.sum() if energy.sum() > 0 else np.full(n, 1.0 / n)
    return SlotSound(sound.name, (cols @ w)[:, None], sound.n_frames, sound.sha256, sound.downsample)
