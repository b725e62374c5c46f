"""``sonolatent morph A B -o OUT.wav``: render a morph between two sound files.

Both sounds are encoded by the VAE; their latent trajectories are aligned in
time (``--align``) and blended frame by frame (``--interp``) along a curve
(``--curve`` / ``--keyframes``), at a fixed blend (``--at``), or at ``--steps``
evenly spaced blends (one file each); the result is rendered through the same
streaming decoder + vocoder the live engine plays.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

CURVE_NAMES = ("linear", "ease", "hold")
INTERP_NAMES = ("lerp", "slerp")
ALIGN_NAMES = ("stretch", "first", "loop")
MAX_STEPS = 101


def add_output_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``morph`` and ``render``: rate, format, peak, picture, checkpoint."""
    p.add_argument("--sr", type=int, default=None, metavar="HZ",
                   help="output sample rate (default: the model's, 44100)")
    p.add_argument("--format", default="16", metavar="16|24|float", help="WAV sample format (default: 16)")
    p.add_argument("--peak", type=float, default=-1.0, metavar="DB",
                   help="peak-normalise to this level in dBFS (default: -1; never clips)")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="also draw the input spectrograms, the result's, and the blend curves")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="model bundle folder with vae/ and vocoder/ (default: checkpoints/default)")
    from ..engine.safety import add_safety_arguments

    add_safety_arguments(p)


def check_output_options(args) -> None:
    from ..render.common import check_format, check_output_path, check_peak, check_sr

    check_output_path(args.output, "-o")
    args.sr = check_sr(args.sr)
    check_format(args.format)
    check_peak(args.peak)
    if args.plot is not None:
        check_output_path(args.plot, "--plot", suffixes=(".png",))


def write_outputs(jobs) -> None:
    """Run each ``(path, write)`` in order; when one fails (Ctrl-C included), remove the files already
    written, so that a failed command leaves none of its outputs behind. Put the riskiest first."""
    from ..outputs import remove_quietly

    done = []
    try:
        for path, write in jobs:
            write()
            done.append(path)
    except BaseException:
        for path in done:
            remove_quietly(path)
        raise


def load_bundle_arg(args):
    from ..models.checkpoint import load_bundle

    return load_bundle(args.checkpoint)


def format_label(fmt: str) -> str:
    return "32-bit float" if fmt == "float" else f"{fmt}-bit"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "morph",
        help="render a morph between two sound files",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " ").replace("``", "").strip(),
        epilog="examples: sonolatent morph flute.wav cello.wav -o fc.wav --duration 8 --curve ease\n"
               "          sonolatent morph a.wav b.wav -o ab.wav --keyframes 0:0,0.5:0.8,1:1 --plot ab.png\n"
               "          sonolatent morph a.wav b.wav -o ab.wav --steps 5   (writes ab-00.wav .. ab-04.wav)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", metavar="A", help="first sound file (blend 0)")
    p.add_argument("b", metavar="B", help="second sound file (blend 1)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="output WAV file")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="output length in seconds (default: the longer sound; with --align first: A's)")
    g = p.add_argument_group("blend (one of)")
    g.add_argument("--curve", default=None, metavar="|".join(CURVE_NAMES),
                   help="blend from A to B over the duration (default: linear)")
    g.add_argument("--keyframes", default=None, metavar="T:V,...",
                   help="piecewise-linear blend, times and values in 0..1, e.g. 0:0,0.5:0.8,1:1")
    g.add_argument("--at", type=float, default=None, metavar="X", help="a fixed blend in 0..1 throughout")
    g.add_argument("--steps", type=int, default=None, metavar="N",
                   help=f"write N files OUT-00.wav.. at evenly spaced fixed blends (2..{MAX_STEPS})")
    p.add_argument("--interp", default="lerp", metavar="|".join(INTERP_NAMES),
                   help="lerp (straight line) or slerp (great circle around the PCA mean) (default: lerp)")
    p.add_argument("--align", default="stretch", metavar="|".join(ALIGN_NAMES),
                   help="stretch both sounds to the duration, keep A's timing (first), "
                        "or loop the shorter (loop) (default: stretch)")
    add_output_options(p)
    p.set_defaults(func=run)


def step_paths(output: Path, n: int) -> list[Path]:
    width = max(2, len(str(n - 1)))
    return [output.with_name(f"{output.stem}-{k:0{width}d}{output.suffix}") for k in range(n)]


def _check(args):
    """Every option check, before any model is loaded or file written; returns (curve, label, blends)."""
    from ..errors import SonolatentError
    from ..latent.curves import get_curve, parse_keyframes

    if args.interp not in INTERP_NAMES:
        raise SonolatentError(f"--interp: unknown interpolation {args.interp!r} (choose from {', '.join(INTERP_NAMES)})")
    if args.align not in ALIGN_NAMES:
        raise SonolatentError(f"--align: unknown alignment {args.align!r} (choose from {', '.join(ALIGN_NAMES)})")
    if args.duration is not None:
        if not math.isfinite(args.duration) or args.duration <= 0:
            raise SonolatentError(f"--duration: must be a positive number of seconds, got {args.duration:g}")
        if args.duration > 3600:
            raise SonolatentError(f"--duration: {args.duration:g} s is longer than an hour")
        if args.align == "first":
            raise SonolatentError("--duration cannot be combined with --align first (A's length is the duration)")
    chosen = [o for o, v in (("--curve", args.curve), ("--keyframes", args.keyframes), ("--at", args.at),
                             ("--steps", args.steps)) if v is not None]
    if len(chosen) > 1:
        raise SonolatentError(f"{chosen[0]} and {chosen[1]} cannot be combined (give one way to blend)")
    check_output_options(args)
    from ..render.common import check_not_input

    outs = step_paths(Path(args.output), args.steps) if args.steps and args.steps >= 2 else [args.output]
    for o in outs:
        check_not_input(o, [args.a, args.b])
    if args.at is not None:
        if not (math.isfinite(args.at) and 0.0 <= args.at <= 1.0):
            raise SonolatentError(f"--at: the blend must be in 0..1, got {args.at:g}")
        return args.at, f"fixed blend {args.at:g}", None
    if args.steps is not None:
        if not 2 <= args.steps <= MAX_STEPS:
            raise SonolatentError(f"--steps: must be 2..{MAX_STEPS}, got {args.steps}")
        return None, f"{args.steps} steps", [k / (args.steps - 1) for k in range(args.steps)]
    if args.keyframes is not None:
        kf = parse_keyframes(args.keyframes, "--keyframes")
        return kf, f"keyframes {kf}", None
    name = args.curve or "linear"
    return get_curve(name, "--curve"), f"{name} curve", None


def run(args) -> int:
    curve, label, blends = _check(args)
    from ..audio.io import write_audio
    from ..render.common import check_source_files, load_source

    check_source_files([args.a, args.b])   # a bad input is named before the model loads
    from ..render.morph import render_morph

    bundle = load_bundle_arg(args)
    a = load_source(bundle, args.a)
    b = load_source(bundle, args.b)
    out = Path(args.output)
    from ..engine.safety import config_from_args

    kw = dict(duration=args.duration, interp=args.interp, align=args.align, sr=args.sr, peak_db=args.peak,
              safety=config_from_args(args))
    if blends is None:
        results = [render_morph(bundle, a, b, curve, **kw)]
        paths = [out]
    else:
        results = [render_morph(bundle, a, b, x, **kw) for x in blends]
        paths = step_paths(out, len(blends))
    jobs = [(args.plot, lambda: _plot(args, bundle, a, b, results, label))] if args.plot else []
    jobs += [(p, lambda p=p, r=r: write_audio(p, r.audio, r.sample_rate, args.format)) for r, p in zip(results, paths)]
    write_outputs(jobs)   # the picture first: if it fails, no WAV is left behind
    r0 = results[0]
    secs = len(r0.audio) / r0.sample_rate
    what = f"{paths[0]} .. {paths[-1].name}" if len(paths) > 1 else str(paths[0])
    print(f"wrote {what} ({secs:.2f} s{' each' if len(paths) > 1 else ''}, {r0.sample_rate} Hz, "
          f"{format_label(args.format)}; {label}, {args.interp}, align {args.align})")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _plot(args, bundle, a, b, results, label) -> None:
    import numpy as np

    from ..render.plots import log_mel, plot_morph

    mc = bundle.mel_config
    out_mel = np.concatenate([log_mel(mc, r.audio, r.sample_rate) for r in results], axis=1)
    blend = np.concatenate([r.blend for r in results])
    # the picture's frames are the analysis frames of the output; resample the blend to them
    n = out_mel.shape[1]
    blend = np.interp(np.linspace(0, len(blend) - 1, n), np.arange(len(blend)), blend)
    plot_morph(args.plot, [(f"A: {a.path.name}", log_mel(mc, a.audio)), (f"B: {b.path.name}", log_mel(mc, b.audio))],
               (f"morph ({label}, {args.interp}, align {args.align})", out_mel), mc.frame_rate,
               {"blend (0 = A, 1 = B)": blend}, "blend")
