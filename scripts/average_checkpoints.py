"""Average the weights of several exports of one training run into one checkpoint.

    python scripts/average_checkpoints.py OUT RUN/exports/step-0010000 RUN/exports/step-0012000 ...
    python scripts/average_checkpoints.py OUT --run RUN --from-step 10000

The exports come from ``sonolatent train ... --keep-exports`` (``RUN/exports/step-N``). They must be
of one kind and one layout. A mean of late exports of a run with a decaying learning rate is
usually a little better than its last export (it averages out the last steps' noise); the shipped
checkpoints were made this way. The weights are averaged in float32 and written with
``save_checkpoint`` (the live path's matrices rounded to bfloat16 numbers, as every export is).

A VAE's latent PCA is a function of its weights, so for a VAE give ``--data`` (the run's dataset
folders): the PCA is fitted again over their training clips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sonolatent.errors import SonolatentError
from sonolatent.models.checkpoint import load_checkpoint, save_checkpoint


def average(folders: list[Path]):
    models = [load_checkpoint(f)[0] for f in folders]
    first = models[0]
    for f, m in zip(folders[1:], models[1:]):
        if m.kind != first.kind or m.config != first.config:
            raise SonolatentError(f"{f}: another kind or layout than {folders[0]}")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}
    first.load_state_dict(mean, strict=True)
    return first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="checkpoint folder to write")
    p.add_argument("exports", nargs="*", help="export folders of one run")
    p.add_argument("--run", help="a run folder: take its exports/step-N from --from-step on")
    p.add_argument("--from-step", type=int, default=0, help="with --run: the first step to include")
    p.add_argument("--data", action="append", default=[], help="for a VAE: dataset folders to refit the PCA on")
    args = p.parse_args(argv)
    try:
        folders = [Path(f) for f in args.exports]
        if args.run:
            folders += sorted(d for d in (Path(args.run) / "exports").glob("step-*")
                              if int(d.name.split("-")[1]) >= args.from_step)
        if not folders:
            raise SonolatentError("no exports to average")
        model = average(folders)
        _, meta = load_checkpoint(folders[-1])
        prov = dict(meta.get("provenance") or {})
        for k in ("sha256", "parameters", "created", "git_commit"):
            prov.pop(k, None)
        prov["averaged"] = {"exports": [str(f) for f in folders], "how": "mean of the weights of these exports"}
        if model.kind == "vae":
            if not args.data:
                raise SonolatentError("a VAE needs --data to refit its latent PCA")
            _refit_pca(model, args.data)
        save_checkpoint(args.out, model, prov)
    except SonolatentError as e:
        print(f"average_checkpoints: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: mean of {len(folders)} exports ({folders[0].name} .. {folders[-1].name})")
    return 0


@torch.no_grad()
def _refit_pca(vae, data: list[str], max_clips: int = 1500) -> None:
    import numpy as np

    from sonolatent.audio.io import read_audio
    from sonolatent.audio.mel import MelSpectrogram
    from sonolatent.datasets.manifest import load_manifest

    entries = [(Path(d), e) for d in data for e in load_manifest(d, split="train")]
    pick = np.random.default_rng(0).permutation(len(entries))[:max_clips]
    melspec = MelSpectrogram(vae.mel_config)
    vae.eval()
    lat = []
    for i in pick:
        folder, e = entries[i]
        clip, _ = read_audio(folder / e["path"], vae.mel_config.sample_rate, allow_silent=True, max_seconds=None)
        lat.append(vae.encode(melspec(torch.from_numpy(clip)[None]))[0].T)
    vae.set_pca(torch.cat(lat))


if __name__ == "__main__":
    sys.exit(main())
