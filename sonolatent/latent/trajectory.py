"""Latent trajectories in time: sampling at fractional positions and aligning sources.

A *trajectory* is an encoded sound, ``(D, L)`` latents at the latent rate
(``vae.latent_rate``, one latent frame per ``downsample`` mel frames). The
decoder wants one latent per *mel frame*, so a render of ``n`` mel frames
reads each source at ``n`` fractional latent positions (:func:`frame_positions`)
and :func:`sample` interpolates linearly between neighbouring latent frames.

Read at its own timing, a source of ``T`` mel frames gives latent position
``(j + 0.5) / ds - 0.5`` for mel frame ``j`` -- the same as
:func:`sonolatent.models.latents_to_frames`, so rendering a source at its own
timing is exactly rendering its latents.

Alignment modes (``ALIGN_MODES``) for two or more sources of different lengths:

- ``stretch``: every source is stretched (or squeezed) to the output length;
- ``first``: the output takes the first source's length; the others are stretched to it;
- ``loop``: every source plays at its own speed and starts again when it runs out.

Pure numpy, no torch.
"""

from __future__ import annotations

import numpy as np

ALIGN_MODES = ("stretch", "first", "loop")


def sample(traj, pos) -> np.ndarray:
    """Linear interpolation of ``traj (D, L)`` at fractional frame positions ``pos (n,)`` -> ``(D, n)``.

    Positions are clamped to ``0 .. L-1``.
    """
    z = np.asarray(traj, np.float32)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"a trajectory is (D, L) with L >= 1, got shape {z.shape}")
    L = z.shape[1]
    p = np.clip(np.asarray(pos, np.float64), 0.0, L - 1)
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, L - 1)
    w = (p - i0).astype(np.float32)
    return z[:, i0] * (1.0 - w) + z[:, i1] * w


def frame_positions(n_out: int, n_src: int, downsample: int, mode: str = "stretch") -> np.ndarray:
    """Latent positions ``(n_out,)`` at which to read a source of ``n_src`` mel frames.

    ``stretch`` maps the source's ``n_src`` mel frames onto ``n_out`` (its own
    timing when ``n_out == n_src``); ``loop`` reads it at its own timing,
    wrapping around every ``n_src`` frames. ``first`` is a ``stretch`` for every
    source (only the output length differs, see :func:`output_frames`).
    """
    if n_out < 0 or n_src < 1 or downsample < 1:
        raise ValueError(f"bad lengths: n_out={n_out}, n_src={n_src}, downsample={downsample}")
    j = np.arange(n_out, dtype=np.float64)
    if mode in ("stretch", "first"):
        m = (j + 0.5) * (n_src / max(n_out, 1)) - 0.5
    elif mode == "loop":
        m = np.mod(j, n_src)
    else:
        raise ValueError(f"unknown alignment {mode!r} (choose from {', '.join(ALIGN_MODES)})")
    return (m + 0.5) / downsample - 0.5


def output_frames(src_frames, mode: str = "stretch", n_out: int | None = None) -> int:
    """The output length in mel frames: ``n_out`` if given, else by mode.

    ``first``: the first source's length (``n_out`` must not be given);
    ``stretch`` and ``loop``: the longest source's length.
    """
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment {mode!r} (choose from {', '.join(ALIGN_MODES)})")
    if mode == "first":
        if n_out is not None:
            raise ValueError("alignment 'first' takes its length from the first source")
        return int(src_frames[0])
    return int(n_out) if n_out is not None else int(max(src_frames))


def align(trajs, src_frames, n_out: int, downsample: int, mode: str = "stretch") -> list[np.ndarray]:
    """Read every trajectory ``(D, L_k)`` (of ``src_frames[k]`` mel frames) at ``n_out`` mel frames.

    Returns one mel-rate trajectory ``(D, n_out)`` per source, ready to blend.
    """
    return [sample(z, frame_positions(n_out, int(n), downsample, mode)) for z, n in zip(trajs, src_frames)]


def to_mel_rate(traj, n_frames: int, downsample: int) -> np.ndarray:
    """A trajectory ``(D, L)`` at its own timing as ``n_frames`` mel-rate latents ``(D, n_frames)``.

    The numpy twin of :func:`sonolatent.models.latents_to_frames`.
    """
    return sample(traj, frame_positions(n_frames, n_frames, downsample))
