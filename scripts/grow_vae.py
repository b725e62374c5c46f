"""Grow a trained VAE into a larger layout, for `sonolatent train vae --init` to continue from.

    python scripts/grow_vae.py SRC OUT [--downsample N] [--latent-dim D]

- ``--downsample N`` (fewer mel frames per latent frame): the decoder is copied as is (it already
  runs at the mel frame rate), the encoder keeps its first conv and blocks and its last norm and
  posterior conv; the stride-2 stages that are no longer there are dropped.
- ``--latent-dim D`` (more dimensions): the new dimensions' posterior rows start small (means and
  log-variances near 0: the prior) and the decoder's input columns for them start at zero, so the
  grown model decodes the old latents (padded with zeros) exactly as the old model did.

- ``--linear-path`` (per-frame linear encoder and decoder paths, downsample 1): the conv paths'
  outputs start at zero (the posterior means' rows, the decoder's last conv; log-variances start
  at -6) and the linear paths start at zero too; training fits them to a PCA of its training frames
  at its first step, so the grown model starts out as exactly that PCA and the conv trunks (copied)
  learn what it misses.

Train on with the same options as the grown layout (`--downsample`, `--latent-dim`,
`--linear-path`). The PCA of the latents is fitted again when training exports.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sonolatent.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sonolatent.models.vae import MelVAE  # noqa: E402


def _encoder_index(key: str) -> int:
    return int(key.split(".")[1])


def grow(src: MelVAE, downsample: int, latent_dim: int, linear_path: bool = False) -> MelVAE:
    old = src.config
    if latent_dim < old.latent_dim or downsample > old.downsample or (old.linear_path and not linear_path):
        raise SystemExit("grow_vae: only fewer frames per latent frame, more dimensions, a linear path")
    dst = MelVAE(src.mel_config, dataclasses.replace(old, downsample=downsample, latent_dim=latent_dim,
                                                     linear_path=linear_path))
    sd, new = src.state_dict(), dst.state_dict()
    n_old = max(_encoder_index(k) for k in sd if k.startswith("encoder."))
    n_new = max(_encoder_index(k) for k in new if k.startswith("encoder."))
    stage = 3 if old.enc_blocks == 2 else 1 + old.enc_blocks   # conv + the first stage's blocks
    D0, D = old.latent_dim, latent_dim
    torch.manual_seed(0)
    with torch.no_grad():
        for k, v in sd.items():
            if k.startswith("encoder."):
                i, rest = _encoder_index(k), k.split(".", 2)[2]
                j = i if i < stage else n_new - (n_old - i) if i >= n_old - 2 else None
                k = None if j is None else f"encoder.{j}.{rest}"
            if k is None or k not in new:
                continue
            if new[k].shape == v.shape:
                new[k] = v
        post = f"encoder.{n_new}"
        for part in ("weight", "bias"):
            o, g = sd[f"encoder.{n_old}.{part}"], torch.zeros_like(new[f"{post}.{part}"])
            g[:D0], g[D:D + D0] = o[:D0], o[D0:]          # means, then log-variances
            if part == "weight" and D > D0:
                g[D0:D] = 0.01 * torch.randn_like(g[D0:D])
            new[f"{post}.{part}"] = g
        w = torch.zeros_like(new["dec_in.weight"])
        w[:, :D0] = sd["dec_in.weight"]
        new["dec_in.weight"] = w
        if linear_path and not old.linear_path:
            new[f"{post}.weight"].zero_()
            new[f"{post}.bias"][:D] = 0.0
            new[f"{post}.bias"][D:] = -6.0
            new["dec_out.weight"].zero_()
            new["dec_out.bias"].zero_()
    dst.load_state_dict(new)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--downsample", type=int, choices=(1, 2, 4, 8))
    ap.add_argument("--latent-dim", type=int)
    ap.add_argument("--linear-path", action="store_true")
    a = ap.parse_args()
    src, meta = load_checkpoint(a.src, "vae")
    ds = a.downsample or src.config.downsample
    D = a.latent_dim or src.config.latent_dim
    dst = grow(src, ds, D, a.linear_path or src.config.linear_path)
    how = f"downsample {src.config.downsample} -> {ds}, latent_dim {src.config.latent_dim} -> {D}"
    if a.linear_path and not src.config.linear_path:
        how += ", linear path added"
        said = "linear path (fitted at training's first step)"
    else:
        z = torch.randn(1, src.config.latent_dim, 40)
        with torch.no_grad():
            same = src.decode_frames(z) - dst.decode_frames(torch.cat([z, torch.zeros(1, D - z.shape[1], 40)], 1))
        said = f"decoder unchanged on the old latents (largest difference {float(same.abs().max()):.2g})"
    save_checkpoint(a.out, dst, {
        "data": meta["provenance"].get("data"), "steps": 0,
        "grown_from": {"from": a.src, "sha256": meta["provenance"].get("sha256"),
                       "how": f"{how} (scripts/grow_vae.py)"}})
    print(f"wrote {a.out}: downsample {ds}, latent_dim {D}; {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
