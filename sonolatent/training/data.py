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
    """Mono clips at the model rate from one split of a dataset folder.

    Crops pick a clip uniformly, so each folder weighs as many clips as it has; ``mix`` (one
    share per folder) instead picks the folder first by its share, then a clip within it, so a
    small folder (a few drum kits beside thousands of notes) is not drowned out.
    """

    def __init__(self, folders: list[str | Path], split: str, sample_rate: int, progress: bool = True,
                 mix: list[float] | None = None):
        self.clips: list[np.ndarray] = []
        self.labels: list[str] = []
        entries = []
        if mix is not None and (len(mix) != len(folders) or min(mix) < 0 or sum(mix) <= 0):
            raise SonolatentError(f"--mix: {len(folders)} non-negative shares wanted, one per --data folder, "
                                  f"not {','.join(f'{w:g}' for w in mix)}")
        for folder in folders:
            folder = Path(folder)
            entries += [(folder, e) for e in load_manifest(folder, split=split)]
        owner = {str(Path(f)): k for k, f in enumerate(folders)}
        folder_of = []
        for folder, e in tqdm(entries, desc=f"loading {split}", unit="clip", disable=not progress, leave=False):
            audio, _ = read_audio(folder / e["path"], sample_rate, allow_silent=True, min_seconds=MIN_CLIP_SECONDS)
            self.clips.append(audio)
            self.labels.append(str(e.get("label", "")))
            folder_of.append(owner[str(folder)])
        if not self.clips:
            raise SonolatentError(f"{', '.join(map(str, folders))}: no {split} clips in the dataset")
        self.seconds = sum(len(c) for c in self.clips) / sample_rate
        self._groups: list[np.ndarray] | None = None
        if mix is not None:
            idx = np.asarray(folder_of)
            groups = [np.flatnonzero(idx == k) for k in range(len(folders))]
            shares = np.array([w if len(g) else 0.0 for w, g in zip(mix, groups)], float)
            if shares.sum() <= 0:
                raise SonolatentError(f"--mix: every folder with a share has no {split} clips")
            self._groups, self._shares = groups, shares / shares.sum()

    def __len__(self) -> int:
        return len(self.clips)

    def pick(self, rng: np.random.Generator) -> int:
        """The index of a random clip, by ``mix`` when one was given."""
        if self._groups is None:
            return int(rng.integers(len(self.clips)))
        group = self._groups[int(rng.choice(len(self._groups), p=self._shares))]
        return int(group[rng.integers(len(group))])

    def crop(self, rng: np.random.Generator, length: int, onset_prob: float = 0.3) -> np.ndarray:
        clip = self.clips[self.pick(rng)]
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
