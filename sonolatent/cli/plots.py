"""Pictures of the latent space.

``sonolatent map DIR -o map.png [--tsne]``: every sound in a folder (and its
sub-folders) as one point, its mean latent in PCA coordinates 0 and 1 (in
standard deviations) or a t-SNE of the mean latents, coloured by sub-folder,
labelled by file name.

``sonolatent traverse FILE --dim K -o grid.png``: spectrograms of FILE
rendered with its latent trajectory shifted along PCA coordinate K, from
-range to +range standard deviations.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

MAX_TRAVERSE_STEPS = 15


def register(subparsers) -> None:
    # sonolatent.cli.main may already have listed one of the two commands by name (a bare
    # parser for a command not being run), and adds a bare parser after us for a later one
    # when an earlier one is being run; add only what is ours to add.
    have = dict(subparsers.choices)
    running_other = any(getattr(p, "add_help", True) is False for p in have.values())
    if "map" not in have:
        _register_map(subparsers)
    if "traverse" not in have and ("map" in have or not running_other):
        _register_traverse(subparsers)


def _checkpoint_option(p) -> None:
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="model bundle folder with vae/ and vocoder/ (default: checkpoints/default)")


def _register_map(subparsers) -> None:
    p = subparsers.add_parser(
        "map", help="picture a folder of sounds in the latent space",
        description="Place every sound of a folder (recursively) in the latent space: the mean latent of "
                    "each file in PCA coordinates 0/1 (standard deviations), or a t-SNE of the mean "
                    "latents with --tsne; coloured by sub-folder and labelled.",
        epilog="example: sonolatent map patches/samples -o map.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", metavar="DIR", help="folder of sound files")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output PNG")
    p.add_argument("--tsne", action="store_true", help="t-SNE of the mean latents instead of PCA 0/1")
    _checkpoint_option(p)
    p.set_defaults(func=run_map)


def _register_traverse(subparsers) -> None:
    p = subparsers.add_parser(
        "traverse", help="picture spectrograms along one latent coordinate",
        description="Render FILE with its latent trajectory shifted along PCA coordinate K from -range "
                    "to +range standard deviations, and draw the spectrograms side by side.",
        epilog="example: sonolatent traverse flute.wav --dim 0 -o dim0.png --steps 7 --range 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="sound file")
    p.add_argument("--dim", type=int, required=True, metavar="K", help="PCA coordinate (0 = most variance)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output PNG")
    p.add_argument("--steps", type=int, default=7, metavar="N", help=f"pictures (2..{MAX_TRAVERSE_STEPS}) (default: 7)")
    p.add_argument("--range", type=float, default=3.0, metavar="SD",
                   help="largest offset in standard deviations (default: 3)")
    _checkpoint_option(p)
    p.set_defaults(func=run_traverse)


def find_sounds(folder: Path) -> list[Path]:
    from ..audio.io import SUPPORTED_EXTENSIONS

    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def run_map(args) -> int:
    from ..errors import SonolatentError
    from ..render.common import check_output_path

    folder = Path(args.folder)
    if not folder.exists():
        raise SonolatentError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise SonolatentError(f"{folder}: not a folder (map takes a folder of sound files)")
    check_output_path(args.output, "-o", suffixes=(".png",))
    files = find_sounds(folder)
    if not files:
        raise SonolatentError(f"{folder}: no sound files found (looked for .wav, .flac, .ogg, .aiff)")

    import sys

    import numpy as np

    from ..errors import AudioFileError
    from ..models.checkpoint import load_bundle
    from ..render.common import check_source_files, load_source, pca_basis
    from ..render.plots import plot_map

    skipped = []

    def skip(e) -> None:   # one bad file does not sink the map: named, counted, left out
        skipped.append(str(e))
        print(f"sonolatent: warning: skipped {e}", file=sys.stderr, flush=True)

    usable = []
    for f in files:        # what the headers tell, before the model loads
        try:
            check_source_files([f])
            usable.append(f)
        except AudioFileError as e:
            skip(e)

    def enough(n: int) -> None:
        if n == 0:
            raise SonolatentError(f"{folder}: none of its {len(files)} sound files could be used (see the warnings)")
        if args.tsne and n < 3:
            raise SonolatentError(f"--tsne needs at least 3 sounds, {folder} has {n} usable")

    enough(len(usable))
    bundle = load_bundle(args.checkpoint)
    basis = pca_basis(bundle)
    rows, files = [], []
    for f in usable:
        try:
            rows.append(load_source(bundle, f).latents.mean(axis=1))
            files.append(f)
        except AudioFileError as e:   # what only decoding finds (silent, cut short, NaN)
            skip(e)
    enough(len(files))
    means = np.stack(rows)
    coords = basis.to_pca(means.T).T / np.maximum(basis.std, 1e-8)  # (N, D) in standard deviations
    if args.tsne:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (len(files) - 1) / 3.0)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(coords)
        xlabel, ylabel, how = "t-SNE 1", "t-SNE 2", f"t-SNE of mean latents (perplexity {perplexity:g})"
    else:
        xy = coords[:, :2] if coords.shape[1] >= 2 else np.c_[coords[:, 0], np.zeros(len(coords))]
        xlabel, ylabel, how = "PCA 0 (sd)", "PCA 1 (sd)", "mean latent per file, PCA coordinates"
    groups = [str(f.parent.relative_to(folder)) if f.parent != folder else folder.name or "." for f in files]
    plot_map(args.output, xy, [f.stem for f in files], groups, xlabel, ylabel,
             f"{folder}: {len(files)} sounds, {how}")
    left = f"; skipped {len(skipped)} unusable file{'s' * (len(skipped) != 1)}" if skipped else ""
    print(f"wrote {args.output} ({len(files)} sounds, {len(set(groups))} folders{left})")
    return 0


def run_traverse(args) -> int:
    from ..errors import SonolatentError
    from ..render.common import check_output_path

    if not 2 <= args.steps <= MAX_TRAVERSE_STEPS:
        raise SonolatentError(f"--steps: must be 2..{MAX_TRAVERSE_STEPS}, got {args.steps}")
    if not math.isfinite(args.range) or not 0 < args.range <= 10:
        raise SonolatentError(f"--range: must be in (0, 10] standard deviations, got {args.range:g}")
    check_output_path(args.output, "-o", suffixes=(".png",))

    import numpy as np

    from ..latent import to_mel_rate
    from ..models.checkpoint import load_bundle
    from ..render.common import check_source_files, load_source, pca_basis, render_latents
    from ..render.plots import log_mel, plot_traverse

    check_source_files([args.file])   # a bad input is named before the model loads
    bundle = load_bundle(args.checkpoint)
    D = bundle.vae.latent_dim
    if not 0 <= args.dim < D:
        raise SonolatentError(f"--dim: {args.dim} is outside 0..{D - 1} (the model has {D} latent dimensions)")
    src = load_source(bundle, args.file)
    basis = pca_basis(bundle)
    zf = to_mel_rate(src.latents, src.frames, bundle.vae.config.downsample)
    values = np.linspace(-args.range, args.range, args.steps)
    mels = [log_mel(bundle.mel_config, render_latents(bundle, basis.offset(zf, {args.dim: v}))) for v in values]
    plot_traverse(args.output, mels, values, bundle.mel_config.frame_rate, args.dim,
                  f"{Path(args.file).name}: PCA coordinate {args.dim} from {-args.range:+g} to {args.range:+g} sd")
    print(f"wrote {args.output} ({args.steps} steps along PCA {args.dim})")
    return 0
