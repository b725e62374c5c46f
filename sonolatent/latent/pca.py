"""PCA coordinates of the latent space, in numpy.

The VAE stores a PCA of its training latents (``pca_mean (D)``,
``pca_components (D, D)``, rows = directions, most variance first,
``pca_std (D)``). :class:`PCABasis` holds a numpy copy so that latent code
(morphs, scores, the live engine's offsets) never needs torch:
``PCABasis.from_vae(vae)`` once, then :meth:`~PCABasis.offset` etc. The
conversions match ``MelVAE.to_pca`` / ``MelVAE.from_pca``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class PCABasis:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (D, D), rows are directions
    std: np.ndarray         # (D,), standard deviation along each direction

    @classmethod
    def from_vae(cls, vae) -> "PCABasis":
        """Copy the PCA buffers out of a ``MelVAE`` (duck-typed: anything with the three buffers)."""
        def arr(x):
            return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float64)
        return cls(arr(vae.pca_mean), arr(vae.pca_components), arr(vae.pca_std))

    @classmethod
    def identity(cls, dim: int) -> "PCABasis":
        return cls(np.zeros(dim), np.eye(dim), np.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to_pca(self, z) -> np.ndarray:
        """Raw latents ``(D,)`` or ``(D, n)`` -> PCA coordinates of the same shape."""
        z = np.asarray(z, np.float64)
        c = self.mean if z.ndim == 1 else self.mean[:, None]
        return (self.components @ (z - c)).astype(np.float32)

    def from_pca(self, c) -> np.ndarray:
        c = np.asarray(c, np.float64)
        m = self.mean if c.ndim == 1 else self.mean[:, None]
        return (self.components.T @ c + m).astype(np.float32)

    def direction(self, k: int) -> np.ndarray:
        """The raw-latent step for +1 standard deviation along PCA coordinate ``k``, ``(D,)``."""
        self.check_dim(k)
        return (self.components[k] * self.std[k]).astype(np.float64)

    def check_dim(self, k: int, what: str = "PCA coordinate") -> None:
        if not isinstance(k, (int, np.integer)) or not 0 <= int(k) < self.dim:
            raise ValueError(f"{what} {k!r} is outside 0..{self.dim - 1}")

    def offset_vector(self, offsets: Mapping[int, float]) -> np.ndarray:
        """Raw-latent offset ``(D,)`` for ``{coordinate: standard deviations}``."""
        v = np.zeros(self.dim)
        for k, s in offsets.items():
            v += float(s) * self.direction(int(k))
        return v

    def offset(self, z, offsets) -> np.ndarray:
        """Shift latents ``(D,)`` / ``(D, n)`` along PCA coordinates.

        ``offsets`` is a mapping ``{k: sd}`` (constant) or an array ``(D, n)``
        / ``(D,)`` of offsets in standard deviations per coordinate (and per
        frame): ``z + components.T @ (offsets * std)``.
        """
        z = np.asarray(z, np.float64)
        if isinstance(offsets, Mapping):
            v = self.offset_vector(offsets)
            return (z + (v if z.ndim == 1 else v[:, None])).astype(np.float32)
        o = np.asarray(offsets, np.float64)
        s = self.std if o.ndim == 1 else self.std[:, None]
        return (z + self.components.T @ (o * s)).astype(np.float32)
