"""Training data: every clip of a dataset folder held in memory, random crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio.io import read_audio
from ..datasets.manifest import MIN_CLIP_SECONDS, load_manifest
from ..errors import SonolatentError


class ClipBank:
    """Mono clips at the model rate from one split of a dataset folder."""

    def __init__(self, folders: list[str | Path], split: str, sample_rate: int, progress: bool = True):
        self.clips: list[np.ndarray] = []
        self.labels: list[str] = []
        entries = []
        for folder in folders:
            folder = Path(folder)
            entries += [(folder, e) for e in load_manifest(folder, split=split)]
        for folder, e in tqdm(entries, desc=f"loading {split}", unit="clip", disable=not progress, leave=False):
            audio, _ = read_audio(folder / e["path"], sample_rate, allow_silent=True, min_seconds=MIN_CLIP_SECONDS)
            self.clips.append(audio)
            self.labels.append(str(e.get("label", "")))
        if not self.clips:
            raise SonolatentError(f"{', '.join(map(str, folders))}: no {split} clips in the dataset")
        self.seconds = sum(len(c) for c in self.clips) / sample_rate

    def __len__(self) -> int:
        return len(self.clips)

    def crop(self, rng: np.random.Generator, length: int, onset_prob: float = 0.3) -> np.ndarray:
        clip = self.clips[rng.integers(len(self.clips))]
        out = np.zeros(length, np.float32)
        if len(clip) <= length:
            out[: len(clip)] = clip
            return out
        start = 0 if rng.random() < onset_prob else int(rng.integers(0, len(clip) - length))
        out[:] = clip[start: start + length]
        return out

    def batch(self, rng: np.random.Generator, n: int, length: int, gain_db: tuple[float, float]) -> torch.Tensor:
        x = np.stack([self.crop(rng, length) for _ in range(n)])
        g = 10 ** (rng.uniform(gain_db[0], gain_db[1], size=(n, 1)) / 20)
        return torch.from_numpy((x * g).astype(np.float32))

    def fixed_batch(self, n: int, length: int, seed: int = 1234) -> torch.Tensor:
        """A deterministic batch (for validation)."""
        return self.batch(np.random.default_rng(seed), n, length, (-6.0, -6.0))
