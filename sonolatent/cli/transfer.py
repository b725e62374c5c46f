"""``sonolatent transfer IN.wav --to SAMPLE -o OUT.wav [--amount 0..1]``: a recording moved toward a
sample's timbre through the live input's path (the same samples ``serve --input`` plays for it)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import SonolatentError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer", help="move a recording toward a sample's timbre (the live input's path, offline)",
        description="Play IN through the live input's path: streaming mel, causal encoder, noise gate, a blend "
                    "toward SAMPLE's timbre (its mean latent) by --amount, the streaming decoder and vocoder. "
                    "The result keeps IN's timing and pitch contour; it is what 'serve --input' plays for the "
                    "same input with the same settings, written lined up with IN.",
        epilog="example: sonolatent transfer voice.wav --to flute_c5 -o voice-flute.wav --amount 0.7",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="sound file to transform")
    p.add_argument("--to", required=True, metavar="SAMPLE",
                   help="the timbre: a sound file, or a sample name in --samples (e.g. flute_c5)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="output WAV (model rate)")
    p.add_argument("--amount", type=float, default=0.7, metavar="0..1",
                   help="how far toward SAMPLE: 0 the input's own latents, 1 SAMPLE's timbre alone (default 0.7)")
    p.add_argument("--gate", type=float, default=-50.0, metavar="DBFS",
                   help="noise gate threshold on the input level (default -50)")
    p.add_argument("--gain", type=float, default=0.0, metavar="DB", help="input gain before the encoder (default 0)")
    p.add_argument("--samples", default=None, metavar="DIR", help="where sample names resolve (default: patches/samples)")
    p.add_argument("--format", default="float", choices=("16", "24", "float"), help="WAV sample format (default: float)")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="model bundle with a live encoder (default: checkpoints/default)")
    p.set_defaults(func=run)


def _sample(args) -> tuple[Path, str]:
    """The timbre's (folder, name): a file given by path, else a name in the sample folder."""
    from ..engine.slots import resolve_sample
    from .serve import DEFAULT_SAMPLES

    p = Path(args.to)
    if p.is_file():
        return p.resolve().parent, p.name
    root = Path(args.samples) if args.samples else DEFAULT_SAMPLES
    try:
        resolve_sample(root, args.to)
    except SonolatentError as e:
        raise SonolatentError(f"--to {args.to}: no such file, and {e}") from None
    return root, args.to


def run(args) -> int:
    from ..audio.io import read_audio, write_audio
    from ..outputs import check_output_path

    if not (math.isfinite(args.amount) and 0.0 <= args.amount <= 1.0):
        raise SonolatentError(f"--amount {args.amount}: must be 0..1")
    if not (math.isfinite(args.gate) and -120.0 <= args.gate <= 0.0):
        raise SonolatentError(f"--gate {args.gate}: must be -120..0 dBFS")
    if not (math.isfinite(args.gain) and -24.0 <= args.gain <= 24.0):
        raise SonolatentError(f"--gain {args.gain}: must be -24..24 dB")
    check_output_path(args.output, "-o")
    read_audio(args.input, None, allow_silent=True)          # a bad input fails here, before the model loads
    root, name = _sample(args)

    import torch

    from ..engine.slots import SampleCache
    from ..models import load_bundle
    from ..models.synth import StreamingSynth
    from ..render.transfer import transfer

    torch.set_num_threads(1)
    bundle = load_bundle(args.checkpoint)
    if bundle.encoder is None:
        raise SonolatentError(f"{bundle.folder}: this model bundle has no live encoder (encoder/)")
    audio, _ = read_audio(args.input, bundle.sample_rate, allow_silent=True)
    timbre = SampleCache(StreamingSynth(bundle), root).load_timbre(name)
    y = transfer(bundle, audio, timbre, args.amount, gate_db=args.gate, gain_db=args.gain)
    write_audio(args.output, y, bundle.sample_rate, fmt=args.format)
    print(f"{args.output}: {len(y) / bundle.sample_rate:.2f} s at {bundle.sample_rate} Hz "
          f"({args.amount:g} of the way to {name}'s timbre)", flush=True)
    return 0
