"""A picture at each validation: target and model mels side by side (``RUN/valid.png``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def save_validation_picture(path: Path, pairs: list[tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """``pairs``: (target log-mel, model log-mel), each ``(n_mels, frames)``. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(pairs)
    fig, axes = plt.subplots(n, 2, figsize=(9, 1.9 * n + 0.6), squeeze=False)
    lo = min(float(np.percentile(t, 1)) for t, _ in pairs)
    hi = max(float(t.max()) for t, _ in pairs)
    for i, (target, model) in enumerate(pairs):
        for j, (m, name) in enumerate(((target, "validation clip"), (model, "model"))):
            ax = axes[i, j]
            ax.imshow(m, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    try:
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
